"""The three-way comparison's run: the case's texts and inputs on the reference backend (XLA CPU), its
logits cached like the oracle's (core/cache.py), and core/triangulate.py's verdict of who is the odd one out."""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from ..backends.xla import XLA
from . import cache, triangulate

if TYPE_CHECKING:
    from .case import Case


REFERENCES = (XLA,)  # the same text again, to say whose a disagreement is (core/triangulate.py)


def three_way(case: Case, expected: np.ndarray, actual: np.ndarray, bound: float) -> None:
    """record.xla: the same texts and inputs on the reference backend. Its figures never decide the verdict;
    its failure (a compile or run error, a broken jax) is raised: a check meant to run that did not. Its logits are a reference, like the oracle's: cached by (its texts and build, the inputs)."""
    (backend,) = REFERENCES
    with case.stage(backend.name, timed=False):  # the innermost stage names a failure: xla_compile, xla_run
        texts = [backend.cache_key(case.texts[name]) for name in case.kind.emits]
        path = cache.cache_dir() / (f"{cache.key(f'{backend.name} logits', *texts, inputs_digest(case))}"
                                    f".{backend.name}-logits")
        found, _, hit = cache.stored_arrays(path, lambda: ({"logits": case.kind.actual(case, backend)}, {}))
        case.record.xla = triangulate.triangulate(expected, actual, found["logits"], bound, hit)


def inputs_digest(case: Case) -> str:
    """What the graphs are fed: every weight and how the binding makes arguments of them, the prompt and the
    teacher-forced tokens."""
    oracle, h = case.oracle(), hashlib.sha256()
    h.update(repr((sorted(case.binding.inputs.items()), [s for _, _, s in case.binding.weights])).encode())
    for name, value in sorted(oracle.weights.items()):
        h.update(f"{name}:{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    for array in (case.fixture.prompt(), oracle.tokens):
        h.update(np.asarray(array, np.int64).tobytes())
    return h.hexdigest()

