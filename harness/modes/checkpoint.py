"""--checkpoint DIR: a local checkpoint's own weights through the decode case (core/kinds.py: prefill, then
--steps greedy steps, teacher-forced, and the greedy tokens token-exact or near-tie only), the graph emitted
from DIR's config.json at full size and bound to DIR's tensors by their safetensors names.

Everything that can be refused is refused before the heavy part (exit 2, one sentence): the files
(core/checkpoint_files.py), their shapes against config.json, the prompt, and the memory estimate (from the files
and the graphs, emitted first: their arguments' types) against the memory available. The graphs are compiled first, then the oracle runs and is freed before the graph's
weights are read; the three-way comparison with XLA is not run (it would hold a third copy of the weights).
"""
from __future__ import annotations

import shlex

import numpy as np

from ...emitter.config_input import printable
from ..backends import iree
from ..checks import published
from ..checks.finish import finish
from ..core import checkpoint_files as ckpt
from ..core import checkpoint_trust, phases
from ..core.binding import IDENTITY
from ..core.binding_file import load as load_binding
from ..core.case import run_case
from ..core.checkpoint_oracle import CheckpointOracle
from ..core.emitter_protocol import emit
from ..core.graph import GraphError, parse_signature
from ..core.fixtures import DEFAULT_BOUND, Fixture
from ..core.host import cores
from ..core.record import CheckpointFacts
from ..core.summary import RunInfo, command
from . import Options, Outcome, UsageError
from ..present.console import line
from ..present.phase_progress import PHASES, PhaseProgress
from ..present.phase_progress import costs as phase_costs
from ..present.progress import Progress

OPT_LEVEL = "O3"  # IREE's, for full-size weights: each call 8x faster (backends/iree.py)
ARGUMENT_BYTES = {"bf16": 2, "f16": 2, "f64": 8, "i64": 8}  # others: 4 (f32, i32)


def load_tokenizer(checkpoint: ckpt.Checkpoint):
    """The checkpoint's own tokenizer, for --prompt only: never its code. A tokenizer that names Python of its
    own (auto_map) is refused before transformers reads anything, and trust_remote_code=False besides, so that
    transformers can neither import such a file nor ask on stdin whether to; whatever else transformers cannot
    read is one sentence too."""
    shown = printable(str(checkpoint.directory))
    if not checkpoint.tokenizer:
        raise UsageError(f"--prompt: {shown} holds no tokenizer ({', '.join(ckpt.TOKENIZER_FILES)}); give "
                         "--prompt-ids instead")
    code = checkpoint_trust.tokenizer_code(checkpoint.directory, checkpoint.config, UsageError)
    if code:
        raise UsageError(f"--prompt: {code} names Python in the checkpoint for its tokenizer, which archval never "
                         "runs; give --prompt-ids instead")
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(checkpoint.directory, local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - tokenizers, sentencepiece and transformers each raise their own
        raise UsageError(f"--prompt: transformers cannot read the tokenizer in {shown} ({_first_line(e)}); give "
                         "--prompt-ids instead") from None


def _first_line(error: Exception) -> str:
    said = str(error).strip().splitlines()
    return printable(f"{type(error).__name__}: {said[0] if said else 'no message'}")[:300]


def prompt_ids(options: Options, checkpoint: ckpt.Checkpoint, tokenizer) -> list[int]:
    """--prompt-ids, or --prompt through the checkpoint's tokenizer; UsageError naming what is wrong."""
    if options.prompt is not None:
        try:
            ids = [int(t) for t in tokenizer(options.prompt, add_special_tokens=False)["input_ids"]]
        except Exception as e:  # noqa: BLE001 - a tokenizer file that loads can still fail on its first text
            raise UsageError(f"--prompt: the tokenizer in {printable(str(checkpoint.directory))} fails on it "
                             f"({_first_line(e)}); give --prompt-ids instead") from None
        if not ids:
            raise UsageError(f"--prompt {shlex.quote(options.prompt)}: the tokenizer makes no tokens of it")
        given = "--prompt: the tokenizer's"
    else:
        try:
            ids = [int(t) for t in options.prompt_ids.split(",")]
        except ValueError:
            raise UsageError(f"--prompt-ids {shlex.quote(options.prompt_ids)}: not comma-separated integers") from None
        given = "--prompt-ids:"
    vocab = checkpoint.config["vocab_size"]
    outside = [t for t in ids if not 0 <= t < vocab]
    if outside:
        raise UsageError(f"{given} token {outside[0]} is outside the vocabulary [0, {vocab}) of "
                         f"{printable(str(checkpoint.directory / 'config.json'))}")
    return ids


def prepare(options: Options) -> tuple[Fixture, ckpt.Checkpoint, object, ckpt.MemoryEstimate, dict[str, str]]:
    """The checkpoint read and checked, the memory stated, the fixture made; UsageError for what cannot run."""
    if options.steps < 1:
        raise UsageError(f"--steps {options.steps}: must be at least 1")
    if options.graph and set(options.graph) != {"decode"}:
        raise UsageError(f"--graph {next(g for g in options.graph if g != 'decode')}: --checkpoint validates the decode "
                         "graph kind only (its step 0 is the prefill graph's logits)")
    try:
        checkpoint = ckpt.read(options.checkpoint)
        from ...oracles.hf import checkpoint_tensors
        ckpt.check_shapes(checkpoint, checkpoint_tensors(checkpoint.config))
        name = published.label(checkpoint.directory / "config.json")
    except (ckpt.CheckpointError, published.PublishedConfigError) as e:
        raise UsageError(str(e)) from None
    if (options.prompt_ids is None) == (options.prompt is None):
        raise UsageError("--checkpoint needs a prompt: --prompt-ids 1,2,3 or, with a tokenizer in the directory, "
                         "--prompt TEXT (one of the two)")
    tokenizer = None if options.prompt is None else load_tokenizer(checkpoint)  # --prompt-ids needs none: none is read
    prompt = prompt_ids(options, checkpoint, tokenizer)
    strict, sizes = not options.fixed_bound_only, (len(prompt), len(prompt) + options.steps)
    texts = emitted(options.emitter, checkpoint, sizes)
    available = ckpt.available_memory()
    estimate = ckpt.MemoryEstimate.of(checkpoint, strict, graph_bytes(texts), available)
    print(f"== checkpoint {checkpoint.directory}: {checkpoint.config['model_type']}, {checkpoint.parameters():,} "
          f"parameters in {len(checkpoint.files)} safetensors files ({checkpoint.storage()}), "
          f"tokenizer {'yes' if tokenizer else 'not read (--prompt-ids)' if checkpoint.tokenizer else 'none'}",
          flush=True)
    if "auto_map" in checkpoint.config:  # published checkpoints name their own classes too: said, never run
        print(f"note: {printable(str(checkpoint.directory / 'config.json'))}: field 'auto_map' names Python in the "
              f"checkpoint, which archval never runs: the oracle is transformers' own {checkpoint.config['model_type']} "
              "class", flush=True)
    print(f"memory: estimated peak {estimate.describe()}; available "
          + (f"{available / ckpt.GiB:.1f} GiB" if available is not None else "unknown"), flush=True)
    if available is not None and estimate.needed > available:
        raise UsageError(f"--checkpoint {checkpoint.directory}: the run needs an estimated "
                         f"{estimate.needed / ckpt.GiB:.1f} GiB but {available / ckpt.GiB:.1f} GiB is available"
                         + ("" if options.fixed_bound_only else " (--fixed-bound-only skips the f64 oracle)"))
    replay = " ".join([command(), "--checkpoint", shlex.quote(str(options.checkpoint)), "--prompt-ids",
                       ",".join(map(str, prompt)), "--steps", str(options.steps)])
    fixture = Fixture(
        name=name, config_path=checkpoint.directory / "config.json", config=checkpoint.config, seed=0,
        prompt_len=len(prompt), bound=DEFAULT_BOUND, bound_reason=None,
        purpose=f"the checkpoint {checkpoint.directory}: its own weights ({checkpoint.storage()} storage)",
        mutants=(), decode_steps=options.steps, replay=replay, prompt_ids=tuple(prompt),
        sizes=sizes, oracle=CheckpointOracle(checkpoint, np.array(prompt), options.steps, strict, estimate.held))
    return fixture, checkpoint, tokenizer, estimate, texts


def emitted(emitter, checkpoint: ckpt.Checkpoint, sizes: tuple[int, int]) -> dict[str, str]:
    """The prefill and decode graphs, emitted before the estimate (their weight arguments' types are the
    graph's memory); none where the emitter fails: the case emits again and records why."""
    try:
        return {kind: emit(emitter, checkpoint.directory / "config.json", kind, sizes=sizes)
                for kind in ("prefill", "decode")}
    except Exception:  # noqa: BLE001 - whatever it is, the case's own emit stage meets it again and says it
        return {}


def graph_bytes(texts: dict[str, str]) -> int | None:
    """The bytes of the larger graph's arguments as its @main takes them (the weights, and inputs beside them);
    None without graphs, or where one does not parse (the case says why)."""
    try:
        return max(sum(int(np.prod(a.shape)) * ARGUMENT_BYTES.get(a.dtype, 4) for a in
                       parse_signature(text).functions["main"].args) for text in texts.values()) if texts else None
    except (GraphError, KeyError):
        return None


def run(options: Options, info: RunInfo) -> Outcome:
    fixture, checkpoint, tokenizer, estimate, texts = prepare(options)
    options.claim()
    threads = iree.use_threads(cores())  # one case, in this process: every core it may use runs the graph
    print(f"== numerical: oracle (transformers loads the checkpoint: eager attention, f32 compute) vs IREE, prefill "
          f"of {fixture.prompt_len} tokens and {fixture.decode_steps} decode steps, IREE threads: {threads}, "
          f"--iree-opt-level={OPT_LEVEL} (no XLA three-way: it would hold a third copy of the weights)", flush=True)
    binding = load_binding(options.binding) if options.binding else IDENTITY
    progress = Progress(list(PHASES), 1, phase_costs(checkpoint.parameters(), options.steps), unit="phases",
                        quiet=options.quiet)
    with progress, phases.listening(PhaseProgress(progress, options.steps)), iree.opt_level(OPT_LEVEL):
        record = run_case(fixture, "decode", texts=dict(texts), emitter=options.emitter, xla=False,
                          strict_bound=not options.fixed_bound_only, binding=binding)
    texts = _texts(tokenizer, fixture, record)
    weights = fixture.oracle.run().weights if record.oracle else None  # read by the graph, as it took them
    facts = CheckpointFacts(str(options.checkpoint), len(checkpoint.files), checkpoint.storage(),
                            checkpoint.parameters(), estimate.peak, *texts, weights.bytes_read() if weights else None)
    finish([record], fixture, options.emitter, binding, checkpoint=facts)
    print(line(record), flush=True)
    if weights:
        print(f"    graph weights: {weights.bytes_read():,} bytes, as its arguments take them", flush=True)
    if texts[0] is not None:
        for label, text in zip(("prompt", "oracle", "graph"), texts):
            print(f"    {label + ':':<8}{text!r}")
    return Outcome(True, [record])


def _texts(tokenizer, fixture: Fixture, record) -> tuple[str | None, str | None, str | None]:
    """(the prompt, the oracle's continuation, the graph's) as text; Nones without a tokenizer, and for the
    continuations where the case ended before comparing them."""
    if tokenizer is None:
        return None, None, None
    prompt = tokenizer.decode(list(fixture.prompt_ids))
    if record.decode is None:
        return prompt, None, None
    timeline = record.decode.timeline
    return (prompt, tokenizer.decode([s.oracle_token for s in timeline]),
            tokenizer.decode([s.graph_token for s in timeline]))
