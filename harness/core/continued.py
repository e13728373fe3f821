"""The serving graph kinds, validated on request (--graph): prefill_chunked (the prompt in chunks, each continuing
the cache at its offset: prefix caching, long prompts), decode_verify (speculative verification: K draft tokens in
one call, a logits row each) and prefill_embeddings (prefill fed HF's inputs_embeds instead of token ids).

Each is a mixin here over the kind it extends (core/kinds.py registers PrefillChunked(Chunked, Prefill), ...: the
kinds import this module, never the other way round), and is judged as that kind is (the bound, the strict bound,
XLA), against the oracle fed the same: prefill_chunked against transformers fed the same chunks through its own
cache (which agrees with its one-shot prompt logits to fp32 noise), decode_verify against the oracle's single decode
steps (the decode case's own expectation), prefill_embeddings against transformers fed the same inputs_embeds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import oracle_cache
from .abi import EVERY, LOGITS, PROTOCOL, TOKEN, decode_caches, prefill_results
from .emitter_protocol import CaseError
from .inputs import chunk_inputs, chunk_starts, embedding_inputs, start_caches, verify_inputs
from .record import EVERY_WEIGHT, AbiVariant, Record

if TYPE_CHECKING:
    from ..backends.base import Backend
    from .case import Case
    from .graph import FunctionSignature, TensorSpec


def continued_results(main: FunctionSignature, case: Case, graph: str) -> tuple[str, tuple[TensorSpec, ...]]:
    """(STACKED or PER_LAYER, the cache arguments) of a graph that continues a cache with several tokens: it takes
    tokens i32[T] and the caches, and returns the logits of every one of its tokens f32[T, V], then the caches in
    the order it takes them; CaseError naming what does not fit."""
    variant, caches = decode_caches(main, case.fixture, graph)
    width, vocab, results = main.arg("tokens").shape[0], case.fixture.attribute("vocab_size"), main.results
    if not results or (results[0].dtype, results[0].shape) != ("f32", (width, vocab)):
        first = f"{results[0].dtype}{list(results[0].shape)}" if results else "nothing"
        raise CaseError(f"the {graph} graph's first result is {first}; the protocol wants the logits of each of its "
                        f"{width} tokens, f32[{width}, {vocab}] ({PROTOCOL}#serving-graph-kinds)")
    if [(r.shape, r.dtype) for r in results[1:]] != [(c.shape, c.dtype) for c in caches]:
        raise CaseError(f"the {graph} graph returns {len(results) - 1} results after its logits; the protocol wants "
                        f"its {len(caches)} caches, in the order, shape and type it takes them ({PROTOCOL}#results)")
    return variant, caches


class Chunked:
    """The prompt in chunks (inputs.chunk_starts), each a call that continues the caches the last one returned at
    cache_len = the chunk's first slot; every real token's logits compared with the oracle's, fed the same chunks."""
    name, emits, signed, on_request = "prefill_chunked", ("prefill_chunked",), False, True

    def protocol(self, case: Case) -> AbiVariant:
        return AbiVariant(continued_results(case.graph(self.name).functions["main"], case, self.name)[0], EVERY)

    def expected(self, case: Case) -> np.ndarray:
        with case.stage("oracle"):
            return oracle_cache.chunked_logits(case.fixture, chunk_starts(case.fixture))

    def fp64(self, case: Case, rows: int) -> np.ndarray:
        return oracle_cache.chunked_logits(case.fixture, chunk_starts(case.fixture), "float64")

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        module = case.module(self.name, backend)
        _, specs = decode_caches(module.main, case.fixture, self.name)
        width, capacity = module.main.arg("tokens").shape[0], specs[0].shape[len(specs[0].shape) - 3]
        caches, rows = {spec.name: np.zeros(spec.shape, np.float32) for spec in specs}, []
        starts = chunk_starts(case.fixture)
        for start, end in zip(starts, [*starts[1:], len(case.fixture.prompt())]):
            logits, *returned = case.call(module, backend, chunk_inputs(case.fixture, start, end, width, capacity,
                                                                        caches))
            caches = dict(zip(caches, returned))
            rows.append(np.asarray(logits, np.float32)[: end - start])
        return np.concatenate(rows)


class Verifying:
    """Speculative verification: after the prompt's prefill, the oracle's decode tokens fed K at a time (K read from
    the graph), each call at cache_len = the first one's slot and continuing the caches the last call returned;
    row k is compared with the oracle's single decode step that fed the same token at the same slot and position.
    Step 0 is the prefill graph's logits, as in decode."""
    name, emits, signed, on_request = "decode_verify", ("prefill", "decode_verify"), False, True

    def protocol(self, case: Case) -> AbiVariant:
        variant, _ = continued_results(case.graph(self.name).functions["main"], case, self.name)
        layout = prefill_results(case.graph("prefill").functions["main"], case.fixture)
        if layout.count - 1 != 2 * (1 if variant == "stacked" else case.fixture.attribute("num_hidden_layers")):
            raise CaseError(f"the prefill graph returns {layout.count - 1} caches but the {self.name} graph takes "
                            f"{variant} caches")
        return AbiVariant(variant, layout.logits, LOGITS)

    def calls(self, case: Case) -> tuple[int, int]:
        """(K, the calls): as many whole calls of K tokens as the decode steps hold."""
        width = case.graph(self.name).functions["main"].arg("tokens").shape[0]
        steps = len(case.oracle().tokens) - 1
        if width > steps:
            raise CaseError(f"the {self.name} graph takes {width} tokens, more than the fixture's {steps} decode "
                            "steps")
        return width, steps // width

    def expected(self, case: Case) -> np.ndarray:
        width, calls = self.calls(case)
        return case.oracle().logits[: 1 + width * calls]

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        prefill_logits, prefill_caches = self.prefill(case, backend)
        module = case.module(self.name, backend)
        _, specs = decode_caches(module.main, case.fixture, self.name)
        (width, calls), capacity = self.calls(case), specs[0].shape[len(specs[0].shape) - 3]
        tokens, positions = case.oracle().tokens, case.fixture.decode_positions()
        prompt_len, verified = len(case.fixture.prompt()), width * calls
        if prompt_len + verified > capacity or positions.max() >= capacity:
            raise CaseError(f"prompt_len {prompt_len} + {verified} verified tokens need {prompt_len + verified} cache "
                            f"slots and positions up to {int(positions.max())}, but the {self.name} graph's "
                            f"{specs[0].name} holds {capacity}")
        caches, rows = start_caches(prefill_caches, specs, self.name), [prefill_logits[-1]]
        for call in range(calls):
            at = slice(call * width, (call + 1) * width)  # steps at.start + 1 .. at.stop, fed the tokens before them
            fed = verify_inputs(tokens[at], positions[at], prompt_len + at.start, caches)
            logits, *returned = case.call(module, backend, fed)
            caches = dict(zip(caches, returned))
            rows += list(np.asarray(logits, np.float32))
        if case.record.abi.logits == TOKEN:  # a prefill graph that returns its token: the case compares tokens
            return np.array([int(np.argmax(x)) if np.ndim(x) else int(x) for x in rows], np.int64)
        return np.stack([np.asarray(x, np.float32).reshape(-1) for x in rows])


class FromEmbeddings:
    """Prefill fed the prompt's inputs_embeds (the oracle's input embedding module's output, padding rows zero)
    instead of its tokens, against transformers fed the same inputs_embeds. A whole forward but for the embedding
    table, which such a graph need not take (a tied head reads it still)."""
    name, emits, signed, on_request = "prefill_embeddings", ("prefill_embeddings",), False, True
    takes_every_weight = False  # judged here, the embedding table excepted

    def checks(self, record: Record) -> tuple[str, ...]:
        return super().checks(record) + (EVERY_WEIGHT,)

    def protocol(self, case: Case) -> AbiVariant:
        layout = prefill_results(case.graph(self.name).functions["main"], case.fixture)
        return AbiVariant(layout.caches, layout.logits)

    def every_position(self, case: Case) -> bool:
        return prefill_results(case.graph(self.name).functions["main"], case.fixture).logits == EVERY

    def expected(self, case: Case) -> np.ndarray:
        with case.stage("oracle"):
            logits = oracle_cache.embedded(case.fixture).logits
        return logits if self.every_position(case) else logits[-1:]

    def fp64(self, case: Case, rows: int) -> np.ndarray:
        return oracle_cache.embedded(case.fixture, "float64").logits[-rows:]

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        module = case.module(self.name, backend)
        with case.stage("oracle"):
            embeddings = oracle_cache.embedded(case.fixture).embeddings
        first, *_ = case.call(module, backend, embedding_inputs(case.fixture, embeddings,
                                                                module.main.arg("embeddings").shape[0]))
        if prefill_results(module.main, case.fixture).logits == TOKEN:
            return np.asarray(first, np.int64).reshape(1)
        logits = np.asarray(first, np.float32)
        return logits[None] if logits.ndim == 1 else logits[: len(case.fixture.prompt())]

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        super().judge(case, expected, actual)
        with case.stage("bind", timed=False):
            taken = {t for read in case.graph_weights(self.name)[1].values() for t in read}
            table = oracle_cache.embedded(case.fixture).table
            untaken = sorted(set(case.oracle().weights) - taken - {table})
            case.record.check(EVERY_WEIGHT, "bind", not untaken, f"the graph takes no argument for {len(untaken)} "
                              f"tensor(s) of the checkpoint besides the embedding table {table}: "
                              f"{', '.join(untaken[:5])}{' and more' if len(untaken) > 5 else ''}")
