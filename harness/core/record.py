"""The record of one case: the checks it had to pass, how each came out, and what the reports show.

Every run mode produces records and every presentation reads them; nothing else travels
between the two. The verdict is not stored but derived from the checks: PASS only when
there were checks and every one of them ran and passed; ERROR when one could not be run
(an earlier stage failed) or raised; FAIL when one ran and failed; UNSUPPORTED when the
emitter refused the config (exit 2, the protocol's "not this family"), which is what left
the rest not run. A case therefore cannot pass by skipping what it was meant to check. core/case.py builds records; the JSON form and
its published schema (docs/summary.schema.json) come from these types (core/typed.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .typed import from_json, to_json

PASS, FAIL, ERROR, UNSUPPORTED = "PASS", "FAIL", "ERROR", "UNSUPPORTED"
VERDICTS = (FAIL, ERROR, UNSUPPORTED, PASS)  # the order rows are listed in, failing first
PASSED, FAILED, ERRORED, REFUSED, NOT_RUN = "passed", "failed", "errored", "refused", "not run"
Status = Literal["passed", "failed", "errored", "refused", "not run"]
Verdict = Literal["PASS", "FAIL", "ERROR", "UNSUPPORTED"]
STRICT = "strict bound"  # the check --fixed-bound-only leaves out (fixed_verdict: the verdict without it)
EVERY_WEIGHT = "every weight taken"  # a whole forward's graph takes each tensor of the checkpoint


@dataclass
class Check:
    """One judgement the case had to pass, and how it came out."""
    name: str  # what is judged: a metric against its bound, or a stage that had to succeed
    stage: str  # where it ran: emit, compile, run, oracle, compare, ...
    status: Status  # passed, failed, errored (it raised), refused (the emitter's exit 2), not run (an earlier stage
    # failed or refused)
    message: str = ""  # why it failed or errored; for a pass, a note worth reading (a near-tie flip)
    value: float | None = None  # the measured value, where the check compares one with a bound
    bound: float | None = None  # the bound it was held to


def verdict_of(checks: list[Check]) -> str:
    statuses = {c.status for c in checks}
    if not checks or ERRORED in statuses:
        return ERROR
    if REFUSED in statuses:  # what it left not run is explained; nothing it emitted may have failed
        return FAIL if FAILED in statuses else UNSUPPORTED
    if NOT_RUN in statuses:
        return ERROR
    return FAIL if FAILED in statuses else PASS


def message_of(checks: list[Check]) -> str:
    if not checks:
        return "nothing was checked"
    for status in (ERRORED, FAILED, REFUSED, NOT_RUN):
        found = next((c.message for c in checks if c.status == status and c.message), None)
        if found:
            return found
    return "; ".join(c.message for c in checks if c.message)


@dataclass
class FixtureFacts:
    """The fixture the case ran on: what the page shows about it."""
    config_path: str  # the family's config.json, relative to the project when inside it
    purpose: str  # why the fixture exists
    dims: str  # vocab, hidden, intermediate, layers, heads, kv heads, head_dim
    seed: int  # seeds the weights and the prompt
    prompt: list[int]  # the prompt's token ids
    decode_steps: int  # greedy steps a decode case takes
    bound: float  # the fixed bound of the family's logits
    bound_reason: str | None  # why that bound is looser than the default, when it is
    not_exercised: list[str] = field(default_factory=list)  # a config taken as given: the features of it that
    # this case cannot reach (a window longer than the prompt and the steps), in words


@dataclass
class LogitsResult:
    """Logit-producing kinds (prefill, decode): the comparison at one position."""
    position: int  # the compared position: the prompt's last token, or decode's worst step
    worst_index: int  # vocabulary index of the largest |Δlogit| there
    oracle_argmax: int  # the oracle's top token there
    graph_argmax: int  # the graph's top token there
    oracle_top2_gap: float  # the oracle's top-1 minus top-2 logit there
    nonfinite: int  # NaN/Inf in the graph's logits, over every compared step
    argmax_match: bool  # prefill: the top tokens agree; decode: they agree at every step
    near_tie_flip: bool  # a top-1 swap explained by an error within the bound (the oracle's gap within 2x it)
    oracle_top_k: list[tuple[int, float]]  # the oracle's highest logits there: [index, logit], highest first
    graph_top_k: list[tuple[int, float]]  # the graph's highest logits there: [index, logit], highest first
    oracle_logits: list[float]  # the oracle's full logit vector there
    graph_logits: list[float]  # the graph's full logit vector there


@dataclass
class AbiVariant:
    """Logit kinds: which of the protocol's ABI variants the graphs used (docs/emitter-protocol.md#abi-variants)."""
    caches: Literal["stacked", "per layer", "latent stacked", "latent per layer"]  # k_cache, v_cache [L, S, n_kv, D],
    # or k_cache.i, v_cache.i [S, n_kv, D]; latent attention's kv_latent, k_rope [L, S, r], or kv_latent.i, k_rope.i
    logits: Literal["last position", "every position", "token"]  # prefill's: f32[V] of the last real token, f32[Lp, V],
    # or that token's greedy token, i32[]
    decode: Literal["logits", "token"] | None = None  # decode's first result: f32[V] or the greedy token i32[]


@dataclass
class Step:
    """One step of a teacher-forced decode (step 0 is the prompt's last token)."""
    step: int  # the step
    position: int  # the token position it computes
    oracle_token: int  # the oracle's greedy token
    graph_token: int  # the graph's greedy token
    max_abs_diff: float  # max |Δlogit| at this step
    oracle_top2_gap: float  # the oracle's top-1 minus top-2 logit at this step
    oracle_top_k: list[tuple[int, float]]  # the oracle's highest logits: [index, logit], highest first
    graph_top_k: list[tuple[int, float]]  # the graph's highest logits: [index, logit], highest first


@dataclass
class DecodeResult:
    """decode: the continuation step by step."""
    steps: int  # decode steps taken (the timeline has one more: the prompt's last token)
    worst_step: int  # the step with the largest error (non-finite first)
    first_divergence: int | None  # the first step whose greedy token differs, if any
    divergence: str | None  # that divergence: near-tie flip, or failure
    timeline: list[Step]  # every step


@dataclass
class TokenStep:
    """One compared token of a graph that returns tokens (i32[]), not logits."""
    step: int  # 0: the prompt's last token; decode's steps after it
    position: int  # the token position it computes
    oracle_token: int  # the oracle's greedy token
    graph_token: int  # the graph's token
    shortfall: float | None  # the oracle's top logit minus its logit of the graph's token (0: the same token; null:
    # a token outside the vocabulary)


@dataclass
class TokenResult:
    """Graphs that return the greedy token instead of logits: each token against the oracle's logits, tie-aware.
    No logit error can be measured, so neither the bound, the strict bound nor the three-way comparison applies."""
    steps: list[TokenStep]  # every compared token, in step order
    first_divergence: int | None  # the first step whose token differs from the oracle's
    tie_bound: float  # a different token passes as a near tie when its shortfall is within this (2 x the bound)


@dataclass
class BlockResult:
    """moe_block: one routed layer's MoE block on seeded hidden states."""
    layer: int  # the routed layer the block graph takes
    tokens: int  # hidden states fed
    router_margin: float  # smallest gap between a token's k-th and (k+1)-th router probability
    expert_sets: int  # distinct expert sets the oracle chose
    worst_token: int  # the token with the largest |Δ|
    nonfinite: int  # NaN/Inf in the block's output


@dataclass
class BatchRow:
    """One sequence of a serving graph's batch, against its own oracle run."""
    row: int  # its index in the batch
    prompt_len: int  # its prompt's tokens (prefilled by the family's prefill graph)
    steps: int  # decode steps it ran; a padding row after them
    last_slot: int  # cache_len of its last step
    past_window: bool | None  # whether its last query slot reaches past the family's smallest sliding window (null:
    # the family has none)
    max_abs_diff: float  # over its steps
    worst_step: int  # the step of that error (0: its first decode step)
    first_divergence: int | None  # the first step whose graph argmax differs from the oracle's (0: the first)
    blocks: list[int] | None  # decode_paged: the pool blocks its block table names, in logical order


@dataclass
class BatchResult:
    """decode_batched and decode_paged: B sequences stepped together, each row judged against its own oracle run,
    and the rows' isolation: changing one row, or making it a padding row, must leave every other row's logits bit
    for bit as they were."""
    size: int  # B, read from the graph's token input
    rows: list[BatchRow]
    worst_row: int  # the row of the headline error
    isolated_row: int | None  # the row changed and padded by the isolation runs (null: one row, nothing to isolate)
    changed_max_diff: float | None  # max |Δ| of the other rows' logits when that row's inputs and cache changed
    padded_max_diff: float | None  # the same when that row was a padding row throughout
    block_size: int | None  # decode_paged: slots per block (null: dense caches)
    shared_blocks: int | None  # decode_paged: row 0's blocks that row 1's table names too


@dataclass
class NoiseResult:
    """The strict bound, judged step by step: each compared step's error against the oracle's own fp32-vs-fp64
    noise at that step. The fields describe the step that judged the case (the largest ratio)."""
    noise_floor: float  # max |fp32 oracle - fp64 oracle| at the judging step
    noise_ratio: float  # the judging step's max |Δlogit| / its noise floor: the largest over the steps
    strict_factor: float  # the strict bound is this many noise floors
    strict_bound: float  # strict_factor x noise_floor, the judging step's bound
    step: int  # the judging step (0: the prompt's last token; decode's steps after it)
    floors: list[float]  # every compared step's noise floor, in step order


@dataclass
class ThreeWay:
    """The same text on a second compiler (XLA CPU): which of oracle, IREE and XLA is the odd one out."""
    error: str | None  # XLA's failure; the other fields are then null
    oracle_iree: float | None  # max |Δlogit| between each pair, over every compared step
    oracle_xla: float | None  # (oracle_iree, oracle_xla, iree_xla)
    iree_xla: float | None  # (the same)
    bound: float | None  # each pair's bound: the one the verdict used
    argmax_match: bool | None  # XLA's top tokens agree with the oracle's at every compared step
    verdict: str | None  # who is the odd one out (checks/triangulate.py)
    cache_hit: bool | None  # XLA's logits read from the cache directory


@dataclass
class Tap:
    """One debug tap of the localisation: a layer's sub-block output against the oracle's."""
    layer: int  # the layer
    point: str  # attention, mlp or layer (its output)
    max_abs_diff: float  # max |Δ| over the prompt's tokens
    noise_floor: float  # the tap's fp32-vs-fp64 oracle noise
    noise_ratio: float  # max_abs_diff / noise_floor


@dataclass
class Localisation:
    """Which layer and sub-block of a failing prefill graph leaves the noise floor first (from the emitter's
    taps); for a failing decode, only the summary: decode only, when its own step 0 (the prefill graph) agrees."""
    error: str | None  # why the localisation could not be made; the other fields are then empty
    first: Tap | None  # the first tap over strict_factor x its floor (none: the final norm or head)
    taps: list[Tap]  # every tap, in forward order
    strict_factor: float | None  # the threshold, in noise floors
    summary: str  # the finding in one sentence, or why it is not available (the emitter gave no taps)


@dataclass
class StructuralBrief:
    """The graph's structural signature against its golden (the built-in emitter's)."""
    status: str  # match, DRIFT, MISSING-GOLDEN, refused (as recorded), ERROR
    detail: list[str]  # what drifted, in words
    sha256: str | None  # of the emitted text
    args: int  # @main's argument count
    results: list[tuple[list[int], str]] | None  # @main's result shapes and element types
    ops: dict[str, int] | None  # @main's op histogram
    golden_ops: dict[str, int] | None  # the golden's op histogram, beside it


@dataclass
class OracleFacts:
    """Which oracle answered and what the graph took of it."""
    class_name: str  # the transformers class
    mapping: str  # how checkpoint names map onto its names: identity, or the stand-in's mapping
    unused_tensors: list[str]  # tensors of the checkpoint the graph does not take (for prefill and decode a FAIL)


@dataclass
class PublishedFacts:
    """A --config run: the published config and how it was shrunk."""
    config: str  # the path as given
    layers: list[int]  # the layers kept
    kept: list[str]  # the architectural choices kept, in words
    shrunk: dict[str, list[Any]]  # field: [published value, shrunk value]
    seed: int  # the seed taken (an MoE config must route decisively)
    router_margin: float | None  # the smallest router logit gap at that seed; null for a dense model


@dataclass
class CheckpointFacts:
    """A --checkpoint run: the local checkpoint whose weights both sides took, and what it said."""
    directory: str  # the checkpoint directory, as given
    files: int  # safetensors files read
    storage: str  # the storage dtypes (upcast to f32 for the graph unless it takes them narrow; f32 for the oracle)
    parameters: int  # tensor elements in the files
    estimated_peak: int  # bytes: the memory estimate stated before the run
    prompt_text: str | None  # the prompt as text, through the checkpoint's tokenizer; null without one
    oracle_text: str | None  # the oracle's greedy continuation, decoded
    graph_text: str | None  # the graph's greedy tokens at each teacher-forced step, decoded
    graph_weight_bytes: int | None = None  # bytes of the weights handed to the graph, as its arguments take them
    # (f32, or bf16/f16 as stored: half); null where the case ended before binding them


@dataclass
class MutantFacts:
    """A deliberately broken graph (checks/mutants.py) the case must FAIL."""
    name: str  # the mutant
    description: str  # the slip, in words
    changes_graph: bool = True  # false: the mutant leaves this family's graph as it was (nothing to run)
    killed: bool | None = None  # the mutation self-test: FAIL under the verdict in force (or refused, below)
    refused: bool | None = None  # ERROR as the mutant expects: a graph no correct harness runs (Mutant.refused_as)
    fixed_killed: bool | None = None  # FAIL under the fixed bound alone
    equivalent: bool | None = None  # its exact effect is within the strict bound: no fp32 check can see it
    exact_effect: float | None = None  # fp64 oracle with the slip against without it
    margin: float | None = None  # detection margin: killed at this many times the bound that judged it
    judged_by: str | None = None  # that check (the failed one with the largest value / bound)


@dataclass
class Record:
    """One case: a family (or published config), a graph kind, and everything judged about it."""
    DERIVED = ("verdict", "message", "fixed_verdict")

    family: str  # the fixture (or shrunk published config)
    model_type: str  # its config's model_type
    graph: str  # the graph kind (core/kinds.py)
    bound: float  # the fixed bound the error is held to
    replay: str  # the command that runs exactly this case again, from the project root (the environment not carried)
    fixture: FixtureFacts  # the fixture, as the page shows it
    emitter: str | None = None  # the emitter whose graphs were judged: its command, or the built-in one (null: a
    # record written before this field)
    checks: list[Check] = field(default_factory=list)  # everything judged; the verdict derives from them
    max_abs_diff: float | None = None  # the headline error; null when nothing was compared
    logits: LogitsResult | None = None  # logit kinds: the comparison at the compared position
    abi: AbiVariant | None = None  # logit kinds: the ABI variant the graphs used
    decode: DecodeResult | None = None  # decode: the continuation, step by step
    tokens: TokenResult | None = None  # graphs that return tokens, not logits: the tokens, step by step
    block: BlockResult | None = None  # moe_block: the block check
    batch: BatchResult | None = None  # decode_batched, decode_paged: every row and the isolation runs
    noise: NoiseResult | None = None  # the strict bound, where judged (a bf16 graph: its derived bound)
    compute: str = "f32"  # what the graph's matmuls compute in (core/precision.py): bf16 is held to a derived bound
    xla: ThreeWay | None = None  # the three-way comparison, where run
    localisation: Localisation | None = None  # a failing prefill: where, from the taps; a failing decode: decode only
    structural: StructuralBrief | None = None  # against the golden, where checked
    oracle: OracleFacts | None = None  # the oracle that answered
    emitter_flags: list[tuple[str, str]] | None = None  # the built-in emitter's parsed Config (its records only)
    published: PublishedFacts | None = None  # a --config run's published config
    checkpoint: CheckpointFacts | None = None  # a --checkpoint run's checkpoint
    mutant: MutantFacts | None = None  # a deliberately broken graph
    skipped: dict[str, str] = field(default_factory=dict)  # checks not asked for (strict_bound, xla): why
    bundle: str | None = None  # its repro bundle's folder under the reports (FAIL, ERROR; all: --bundle all)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    cache_hit: dict[str, bool] = field(default_factory=dict)  # compile, oracle: read from the cache directory

    @property
    def verdict(self) -> Verdict:
        """PASS only if every check ran and passed; ERROR if one could not run; UNSUPPORTED if the emitter
        refused the config; else FAIL."""
        return verdict_of(self.checks)

    @property
    def message(self) -> str:
        """The first error's or failure's reason; for a PASS, the notes of its checks."""
        return message_of(self.checks)

    @property
    def fixed_verdict(self) -> Verdict | None:
        """The verdict under the fixed bound alone; null where the strict bound was not judged."""
        if not any(c.name == STRICT for c in self.checks):
            return None
        return verdict_of([c for c in self.checks if c.name != STRICT])

    def check(self, name: str, stage: str, passed: bool, message: str = "", value: float | None = None,
              bound: float | None = None) -> None:
        """Adds a check that ran; message: why it failed (a pass carries none)."""
        self.checks.append(Check(name, stage, PASSED if passed else FAILED, "" if passed else message, value, bound))

    def errored(self, stage: str, message: str) -> None:
        self.checks.append(Check(stage, stage, ERRORED, message))

    def refused(self, stage: str, sentence: str) -> None:
        """The emitter refused the config (exit 2) with this sentence."""
        self.checks.append(Check(stage, stage, REFUSED, sentence))

    def to_json(self) -> dict:
        return to_json(self)

    @classmethod
    def from_json(cls, value: dict, where: str = "record") -> Record:
        return from_json(cls, value, where)
