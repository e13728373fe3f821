"""The graph kinds: what each one validates, one registry entry each.

Like llama.cpp's test-backend-ops test_case, a kind owns its identity (the name the emitter
is asked for), its inputs, the oracle's side, the graph's side on any backend, and how the
two are compared and with what bound. core/case.py runs every kind the same way: emit and
compile the graphs the kind names, compute both sides, let the kind judge them, then the
strict bound and the three-way comparison where the kind has them. Adding a kind is one
entry in KINDS plus the emitter's code for its graph (tests/test_kinds.py adds one); the
reports show whatever parts of the record it fills.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from . import compare, oracle_cache
from .abi import (EVERY, LAST, LATENT_STACKED, STACKED, TOKEN, decode_caches, decode_results,
                                      prefill_results)
from .batched import SERVING_KINDS
from .continued import Chunked, FromEmbeddings, Verifying
from .emitter_protocol import CaseError
from .fixtures import Fixture
from .inputs import decode_inputs, hidden_states, prefill_inputs, start_caches
from .record import AbiVariant, BlockResult, Record

if TYPE_CHECKING:
    from ..backends.base import Backend
    from .case import Case

BLOCK_BOUND = 1e-4  # fp32 noise of one block is ~1e-6; routing or mixing bugs move it by >1e-1
_ROUTED_LAYER = re.compile(r"model\.layers\.(\d+)\.")  # also Mixtral's block_sparse_moe


class GraphKind:
    """One kind of graph an emitter writes and how a case of it is judged."""
    name: str  # what the emitter is asked for: --graph NAME
    emits: tuple[str, ...]  # the graphs a case compiles, in order (decode starts from prefill's caches)
    signed = False  # the structural goldens record it (checks/structural.py)
    every_family = True  # every family has it; else applies() decides
    metric = "max |Δlogit|"  # what max_abs_diff measures, as the reports label it
    strict = False  # also judged against the fp32-vs-fp64 oracle noise (core/noise.py)
    three_way = False  # also run on the reference backends (core/triangulate.py)
    takes_every_weight = False  # a whole forward: each graph must take every tensor of the checkpoint
    on_request = False  # run only where --graph names it (not in the default gate)

    def applies(self, fixture: Fixture) -> bool:
        return True

    def bound(self, fixture: Fixture) -> float:
        return fixture.bound

    def checks(self, record: Record) -> tuple[str, ...]:
        """The checks judge() adds (for the ABI variant the record found): a case that ends without one of them
        ran short of its purpose."""
        raise NotImplementedError

    def prepare(self, case: Case) -> None:
        """Refuses inputs no graph can be fed, before anything is emitted."""

    def protocol(self, case: Case) -> AbiVariant | None:
        """Each graph the case compiled checked against the protocol on its own, the kind's own graph first
        (CaseError naming what does not fit); the ABI variant they use."""
        return None

    def expected(self, case: Case) -> np.ndarray:
        """The oracle's side."""
        raise NotImplementedError

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        """The graph's side on one backend, fed what the oracle was fed."""
        raise NotImplementedError

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        """Fills the record's parts and adds its checks."""
        raise NotImplementedError

    def fp64(self, case: Case, rows: int, dtype: str = "float64") -> np.ndarray:
        """The oracle's side in fp64 (the strict bound's noise floor), or in another torch dtype (bfloat16: a
        reduced-precision graph's noise, core/precision.py)."""
        raise NotImplementedError


def tokens_only(record: Record) -> bool:
    """Whether the case's graphs return greedy tokens (i32[]) where logits would be compared."""
    return record.abi is not None and TOKEN in (record.abi.logits, record.abi.decode)


class LogitKind(GraphKind):
    """Kinds that end in logits, compared row by row with the oracle's (fp32, eager attention)."""
    strict = three_way = takes_every_weight = True

    def prepare(self, case: Case) -> None:
        prompt, vocab = case.fixture.prompt(), case.fixture.vocab_size
        outside = prompt[(prompt < 0) | (prompt >= vocab)]
        if outside.size:  # IREE's gather would clamp silently
            raise CaseError(f"prompt token {int(outside[0])} is outside the vocabulary [0, {vocab})")

    def fp64(self, case: Case, rows: int, dtype: str = "float64") -> np.ndarray:
        tokens = case.oracle().tokens
        if dtype == "float64":
            return oracle_cache.fp64_logits(case.fixture, tokens)[:rows]
        return oracle_cache.teacher_forced_logits(case.fixture, tokens, dtype)[:rows]

    def prefill(self, case: Case, backend: Backend) -> tuple[np.ndarray, list[np.ndarray]]:
        """The prefill graph on the prompt: (its logits [rows, V]: the last real token's, or every real
        token's, as the graph returns them; or its token [1]; its caches, in the order the decode graph takes
        them)."""
        module = case.module("prefill", backend)
        layout = prefill_results(module.main, case.fixture)
        prompt = case.fixture.prompt()
        first, *caches = case.call(module, backend, prefill_inputs(case.fixture, module.main.arg("tokens").shape[0]))
        if layout.logits == TOKEN:
            return np.asarray(first, np.int64).reshape(1), caches
        logits = np.asarray(first, np.float32)
        return (logits[None] if layout.logits == LAST else logits[: len(prompt)]), caches


class Prefill(LogitKind):
    """The prompt at once: the logits of its last token, or of every token where the graph returns them all."""
    name, emits, signed = "prefill", ("prefill",), True

    def checks(self, record: Record) -> tuple[str, ...]:
        return ("argmax",) if tokens_only(record) else ("finite", "bound", "argmax")

    def protocol(self, case: Case) -> AbiVariant:
        layout = prefill_results(case.graph("prefill").functions["main"], case.fixture)
        return AbiVariant(layout.caches, layout.logits)

    def every_position(self, case: Case) -> bool:
        return prefill_results(case.graph("prefill").functions["main"], case.fixture).logits == EVERY

    def expected(self, case: Case) -> np.ndarray:
        if self.every_position(case):
            with case.stage("oracle"):
                return oracle_cache.prompt_logits(case.fixture)
        return case.oracle().logits[:1]

    def fp64(self, case: Case, rows: int, dtype: str = "float64") -> np.ndarray:
        if self.every_position(case):
            return oracle_cache.prompt_logits(case.fixture, dtype)
        return super().fp64(case, rows, dtype)

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        return self.prefill(case, backend)[0]

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        record = case.record
        positions = case.fixture.prompt_positions()[-len(expected):]  # the last token's, or every token's
        if tokens_only(record):
            record.tokens = compare.compare_tokens(expected, actual, positions, record.bound)
            record.checks += compare.token_checks(record.tokens, "argmax")
            return
        rows = compare.compare_steps(expected, actual, positions, record.bound)
        record.max_abs_diff = rows.steps[rows.worst_step].max_abs_diff
        record.logits = rows.results(expected, actual)[0]
        record.checks += compare.position_checks(rows)


class Decode(LogitKind):
    """Greedy decode through the KV cache, teacher-forced with the oracle's tokens: step s feeds the
    oracle's token s-1 at cache slot prompt_len + s - 1 and its position (Fixture.decode_positions, past
    the slot), starting from prefill's caches."""
    name, emits, signed = "decode", ("prefill", "decode"), True

    def checks(self, record: Record) -> tuple[str, ...]:
        return ("greedy tokens",) if tokens_only(record) else ("finite", "bound", "greedy tokens")

    def protocol(self, case: Case) -> AbiVariant:
        fixture = case.fixture
        decoder = case.graph("decode").functions["main"]
        returns = decode_results(decoder, fixture)  # the case's own graph first: its problem, not prefill's
        caches, specs = decode_caches(decoder, fixture)
        layout = prefill_results(case.graph("prefill").functions["main"], fixture)
        if layout.count - 1 != len(specs):
            raise CaseError(f"the prefill graph returns {layout.count - 1} caches but the decode graph takes "
                            f"{len(specs)}")
        return AbiVariant(caches, layout.logits, returns)

    def expected(self, case: Case) -> np.ndarray:
        return case.oracle().logits

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        prefill_logits, prefill_caches = self.prefill(case, backend)
        decoder = case.module("decode", backend)
        variant, specs = decode_caches(decoder.main, case.fixture)
        tokens, prompt_len = case.oracle().tokens, len(case.fixture.prompt())
        slot_axis = 1 if variant in (STACKED, LATENT_STACKED) else 0  # [L, S, ...] or [S, ...]
        capacity, steps = specs[0].shape[slot_axis], len(tokens) - 1
        positions = case.fixture.decode_positions()
        if prompt_len + steps > capacity or positions.max() >= capacity:
            raise CaseError(f"prompt_len {prompt_len} + {steps} decode steps need {prompt_len + steps} cache slots "
                            f"and positions up to {int(positions.max())}, but the decode graph's {specs[0].name} "
                            f"holds {capacity}")
        caches = start_caches(prefill_caches, specs)
        outputs = [prefill_logits[-1]]
        for s in range(1, steps + 1):
            step_output, *returned = case.call(decoder, backend, decode_inputs(tokens[s - 1], positions[s - 1],
                                                                               prompt_len + s - 1, caches))
            caches = dict(zip(caches, returned))
            outputs.append(step_output)
        if tokens_only(case.record):  # where one graph returns tokens, the case compares tokens throughout
            return np.array([int(np.argmax(x)) if np.ndim(x) else int(x) for x in outputs], np.int64)
        return np.stack([np.asarray(x, np.float32).reshape(-1) for x in outputs])

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        fixture, record = case.fixture, case.record
        positions = np.concatenate([fixture.prompt_positions()[-1:], fixture.decode_positions()])
        if tokens_only(record):
            record.tokens = compare.compare_tokens(expected, actual, positions[: len(expected)], record.bound)
            record.checks += compare.token_checks(record.tokens, "greedy tokens")
            return
        d = compare.compare_steps(expected, actual, positions[: len(expected)], record.bound)
        record.max_abs_diff = d.steps[d.worst_step].max_abs_diff
        record.logits, record.decode = d.results(expected, actual)
        record.checks += compare.decode_checks(d)


class MoeBlock(GraphKind):
    """The first routed layer's MoE block alone, on seeded hidden states, against the oracle's block,
    at a bound near fp32 noise: a routing bug shows in the logits only as "the logits differ", here
    it is localised to the block. The layer is read from the graph's argument names."""
    name, emits, every_family, metric = "moe_block", ("moe_block",), False, "max |Δ|"

    def applies(self, fixture: Fixture) -> bool:
        """Whether the oracle (not the emitter: its bug must not skip the check) routes any layer."""
        return bool(oracle_cache.run(fixture).routed_layers)

    def bound(self, fixture: Fixture) -> float:
        return BLOCK_BOUND

    def checks(self, record: Record) -> tuple[str, ...]:
        return ("finite", "bound")

    def inputs(self, case: Case) -> tuple[int, dict[str, np.ndarray]]:
        """(the layer the graph's weights name, what it is fed)."""
        main = case.graph("moe_block").functions["main"]
        read = case.graph_weights("moe_block")[1]  # the checkpoint tensors behind the graph's own names
        layers = {int(m.group(1)) for names in read.values() for n in names if (m := _ROUTED_LAYER.match(n))}
        if len(layers) != 1:
            raise CaseError(f"the moe_block graph's weights name {len(layers)} layers ({sorted(layers)}), not one")
        return layers.pop(), {"hidden": hidden_states(case.fixture, *main.arg("hidden").shape)}

    def expected(self, case: Case) -> np.ndarray:
        layer, inputs = self.inputs(case)
        with case.stage("oracle"):
            return oracle_cache.moe_block(case.fixture, layer, inputs["hidden"]).output

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        (out,) = case.call(case.module("moe_block", backend), backend, self.inputs(case)[1])
        return out

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        layer, inputs = self.inputs(case)
        oracle = oracle_cache.moe_block(case.fixture, layer, inputs["hidden"])  # expected's, from the cache
        diff = np.nan_to_num(np.abs(np.asarray(actual, np.float64) - expected), nan=np.inf)
        record = case.record
        record.block = block = BlockResult(layer, len(inputs["hidden"]), oracle.router_margin, oracle.expert_sets,
                                           int(diff.max(axis=1).argmax()), int((~np.isfinite(actual)).sum()))
        record.max_abs_diff = float(diff.max())
        record.check("finite", "compare", not block.nonfinite, f"block output holds {block.nonfinite} NaN/Inf values",
                     block.nonfinite, 0)
        record.check("bound", "compare", record.max_abs_diff <= record.bound,
                     f"max |Δ| of layer {block.layer}'s MoE block = {record.max_abs_diff:.3e} at token "
                     f"{block.worst_token} exceeds the block bound {record.bound:.1e}", record.max_abs_diff,
                     record.bound)


class PrefillChunked(Chunked, Prefill): ...  # core/continued.py's serving kinds, validated on request: its
class DecodeVerify(Verifying, Decode): ...  # mixins over prefill and decode
class PrefillEmbeddings(FromEmbeddings, Prefill): ...


KINDS: dict[str, GraphKind] = {k.name: k for k in (Prefill(), Decode(), MoeBlock(), PrefillChunked(), DecodeVerify(),
                                                   PrefillEmbeddings(), *SERVING_KINDS)}


def selected(kind: GraphKind, graphs) -> bool:
    """Whether a run that names these graph kinds (none: the default) runs kind: an on-request kind only if named."""
    return kind.name in graphs if graphs else not kind.on_request


def applicable(fixture: Fixture) -> list[GraphKind]:
    """The kinds a family has, in registry order."""
    return [k for k in KINDS.values() if k.every_family or k.applies(fixture)]


def signed() -> tuple[str, ...]:
    """The kinds whose graphs the structural goldens record."""
    return tuple(k.name for k in KINDS.values() if k.signed)


def order(graph: str) -> int:
    """A graph kind's place in the registry: the order records and reports list kinds in."""
    return list(KINDS).index(graph) if graph in KINDS else len(KINDS)

