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

from harness.core import compare, oracle_cache
from harness.core.emitters import CaseError
from harness.core.fixtures import Fixture
from harness.core.record import BlockResult

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.core.case import Case

BLOCK_BOUND = 1e-4  # fp32 noise of one block is ~1e-6; routing or mixing bugs move it by >1e-1
_ROUTED_LAYER = re.compile(r"model\.layers\.(\d+)\.mlp\.")


class GraphKind:
    """One kind of graph an emitter writes and how a case of it is judged."""
    name: str  # what the emitter is asked for: --graph NAME
    emits: tuple[str, ...]  # the graphs a case compiles, in order (decode starts from prefill's caches)
    signed = False  # the structural goldens record it (checks/structural.py)
    every_family = True  # every family has it; else applies() decides
    metric = "max |Δlogit|"  # what max_abs_diff measures, as the reports label it
    strict = False  # also judged against the fp32-vs-fp64 oracle noise (core/noise.py)
    three_way = False  # also run on the reference backends (core/triangulate.py)

    def applies(self, fixture: Fixture) -> bool:
        return True

    def bound(self, fixture: Fixture) -> float:
        return fixture.bound

    def checks(self) -> tuple[str, ...]:
        """The checks judge() adds: a case that ends without one of them ran short of its purpose."""
        raise NotImplementedError

    def prepare(self, case: Case) -> None:
        """Refuses inputs no graph can be fed, before anything is emitted."""

    def expected(self, case: Case) -> np.ndarray:
        """The oracle's side."""
        raise NotImplementedError

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        """The graph's side on one backend, fed what the oracle was fed."""
        raise NotImplementedError

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        """Fills the record's parts and adds its checks."""
        raise NotImplementedError

    def fp64(self, case: Case, rows: int) -> np.ndarray:
        """The oracle's side in fp64 (the strict bound's noise floor)."""
        raise NotImplementedError


def prefill_inputs(fixture: Fixture, bucket: int) -> dict[str, np.ndarray]:
    """What a prefill graph is fed: the prompt padded to the bucket at slots 0..bucket-1, the prompt's
    positions (apart from its slots: Fixture.prompt_positions) and the padding's (its slots), its real length.
    Every position stays below the bucket, so a RoPE table of as many rows as the graph has tokens suffices."""
    prompt, positions = fixture.prompt(), fixture.prompt_positions()
    if positions.max() >= bucket:
        raise CaseError(f"the prompt's positions reach {int(positions.max())}, past the graph's prefill bucket "
                        f"{bucket}: the bucket must hold prompt_len {len(prompt)} and the positions' gap")
    tokens, slots = np.zeros(bucket, np.int32), np.arange(bucket, dtype=np.int32)
    tokens[: len(prompt)], slots[: len(prompt)] = prompt, positions
    return {"tokens": tokens, "positions": slots, "real_len": np.array(len(prompt), np.int32)}


def decode_inputs(token: int, position: int, slot: int, caches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What one decode step is fed: the token, its position (RoPE's), its cache slot (cache_len: where its key
    and value go, and how many slots the masks let it see), and the caches."""
    return {"token": np.array(token, np.int32), "position": np.array(position, np.int32),
            "cache_len": np.array(slot, np.int32), "k_cache": caches[0], "v_cache": caches[1]}


class LogitKind(GraphKind):
    """Kinds that end in logits, compared row by row with the oracle's (fp32, eager attention)."""
    strict = three_way = True

    def prepare(self, case: Case) -> None:
        prompt, vocab = case.fixture.prompt(), case.fixture.config["vocab_size"]
        outside = prompt[(prompt < 0) | (prompt >= vocab)]
        if outside.size:  # IREE's gather would clamp silently
            raise CaseError(f"prompt token {int(outside[0])} is outside the vocabulary [0, {vocab})")

    def fp64(self, case: Case, rows: int) -> np.ndarray:
        return oracle_cache.fp64_logits(case.fixture, case.oracle().tokens)[:rows]

    def prefill(self, case: Case, backend: Backend) -> list[np.ndarray]:
        """The prefill graph on the prompt: (logits, *caches)."""
        module = case.module("prefill", backend)
        return case.call(module, backend, prefill_inputs(case.fixture, module.main.arg("tokens").shape[0]))


class Prefill(LogitKind):
    """The prompt at once: the logits of its last token."""
    name, emits, signed = "prefill", ("prefill",), True

    def checks(self) -> tuple[str, ...]:
        return ("finite", "bound", "argmax")

    def expected(self, case: Case) -> np.ndarray:
        return case.oracle().logits[:1]

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        return np.asarray(self.prefill(case, backend)[0], np.float32).reshape(1, -1)

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        c = compare.compare_logits(expected[0], actual[0])
        record = case.record
        record.max_abs_diff = c.max_abs_diff
        record.logits = c.result(int(case.fixture.prompt_positions()[-1]), expected[0], actual[0], record.bound)
        record.checks += compare.logit_checks(c, record.bound)


class Decode(LogitKind):
    """Greedy decode through the KV cache, teacher-forced with the oracle's tokens: step s feeds the
    oracle's token s-1 at cache slot prompt_len + s - 1 and its position (Fixture.decode_positions, past
    the slot), starting from prefill's caches."""
    name, emits, signed = "decode", ("prefill", "decode"), True

    def checks(self) -> tuple[str, ...]:
        return ("finite", "bound", "greedy tokens")

    def expected(self, case: Case) -> np.ndarray:
        return case.oracle().logits

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        prefill_logits, *prefill_caches = self.prefill(case, backend)
        decoder = case.module("decode", backend)
        tokens, prompt_len = case.oracle().tokens, len(case.fixture.prompt())
        k_spec = decoder.main.arg("k_cache")
        capacity, steps = k_spec.shape[1], len(tokens) - 1
        positions = case.fixture.decode_positions()
        if prompt_len + steps > capacity or positions.max() >= capacity:
            raise CaseError(f"prompt_len {prompt_len} + {steps} decode steps need {prompt_len + steps} cache slots "
                            f"and positions up to {int(positions.max())}, but the decode graph's k_cache holds "
                            f"{capacity}")
        if len(prefill_caches) != 2:
            raise CaseError(f"the prefill graph returns {1 + len(prefill_caches)} results; decode needs "
                            "(logits, k_cache, v_cache)")
        caches = []
        for cache in prefill_caches:  # the prefill bucket, padding slots and all, starts the decode cache
            full = np.zeros(k_spec.shape, np.float32)
            if cache.shape[0] != full.shape[0] or cache.shape[2:] != full.shape[2:] or cache.shape[1] > capacity:
                raise CaseError(f"the prefill graph's cache is f32{list(cache.shape)} but the decode graph's "
                                f"is f32{list(k_spec.shape)}")
            full[:, : cache.shape[1]] = cache
            caches.append(full)
        logits = [prefill_logits]
        for s in range(1, steps + 1):
            step_logits, *caches = case.call(decoder, backend, decode_inputs(tokens[s - 1], positions[s - 1],
                                                                             prompt_len + s - 1, caches))
            logits.append(step_logits)
        return np.stack([np.asarray(x, np.float32).reshape(-1) for x in logits])

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        fixture, record = case.fixture, case.record
        positions = np.concatenate([fixture.prompt_positions()[-1:], fixture.decode_positions()])
        d = compare.compare_steps(expected, actual, positions[: len(expected)], record.bound)
        record.max_abs_diff = d.steps[d.worst_step].max_abs_diff
        record.logits, record.decode = d.results(expected, actual)
        record.checks += compare.decode_checks(d)


def hidden_states(fixture: Fixture, tokens: int, width: int) -> np.ndarray:
    """The seeded hidden states a block check feeds."""
    return np.random.default_rng([fixture.seed, 0xB10C]).standard_normal((tokens, width)).astype(np.float32)


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

    def checks(self) -> tuple[str, ...]:
        return ("finite", "bound")

    def inputs(self, case: Case) -> tuple[int, dict[str, np.ndarray]]:
        """(the layer the graph's weights name, what it is fed)."""
        main = case.graph("moe_block").functions["main"]
        layers = {int(m.group(1)) for a in main.args if (m := _ROUTED_LAYER.match(a.name))}
        if len(layers) != 1:
            raise CaseError(f"the moe_block graph's weights name {len(layers)} layers ({sorted(layers)}), not one")
        return layers.pop(), {"hidden": hidden_states(case.fixture, *main.arg("hidden").shape)}

    def expected(self, case: Case) -> np.ndarray:
        layer, inputs = self.inputs(case)
        with case.stage("oracle"):
            block = oracle_cache.moe_block(case.fixture, layer, inputs["hidden"])
        case.record.block = BlockResult(layer, len(inputs["hidden"]), block.router_margin, block.expert_sets, 0, 0)
        return block.output

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        (out,) = case.call(case.module("moe_block", backend), backend, self.inputs(case)[1])
        return out

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        record, block = case.record, case.record.block
        diff = np.nan_to_num(np.abs(np.asarray(actual, np.float64) - expected), nan=np.inf)
        block.nonfinite, block.worst_token = int((~np.isfinite(actual)).sum()), int(diff.max(axis=1).argmax())
        record.max_abs_diff = float(diff.max())
        record.check("finite", "compare", not block.nonfinite, f"block output holds {block.nonfinite} NaN/Inf values",
                     block.nonfinite, 0)
        record.check("bound", "compare", record.max_abs_diff <= record.bound,
                     f"max |Δ| of layer {block.layer}'s MoE block = {record.max_abs_diff:.3e} at token "
                     f"{block.worst_token} exceeds the block bound {record.bound:.1e}", record.max_abs_diff,
                     record.bound)


KINDS: dict[str, GraphKind] = {k.name: k for k in (Prefill(), Decode(), MoeBlock())}


def applicable(fixture: Fixture) -> list[GraphKind]:
    """The kinds a family has, in registry order."""
    return [k for k in KINDS.values() if k.every_family or k.applies(fixture)]


def signed() -> tuple[str, ...]:
    """The kinds whose graphs the structural goldens record."""
    return tuple(k.name for k in KINDS.values() if k.signed)


def order(graph: str) -> int:
    """A graph kind's place in the registry: the order records and reports list kinds in."""
    return list(KINDS).index(graph) if graph in KINDS else len(KINDS)

