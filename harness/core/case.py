"""One case, end to end, for every graph kind: emit -> parse -> compile -> oracle -> bind by name ->
run -> compare; then the strict bound and the three-way comparison where the kind has them.

run_case never raises: whatever goes wrong becomes an errored check named after its stage,
and every check the kind meant to run that did not is recorded as not run, so the verdict
(core/record.py) can only be PASS when everything meant to run ran and passed.
"""
from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from harness.backends import REFERENCES, SUBJECT
from harness.backends.base import Backend, BackendError, Module
from harness.core import cache, noise, triangulate
from harness.core.emitters import DEFAULT_EMITTER, CaseError, emit
from harness.core.fixtures import Fixture
from harness.core.graph import GraphError, GraphSignature, parse_signature
from harness.core.kinds import KINDS, GraphKind
from harness.core.oracle_cache import OracleRun
from harness.core.oracle_cache import run as oracle_run
from harness.core.record import NOT_RUN, STRICT, Check, OracleFacts, Record, ThreeWay


def replay_command(fixture: Fixture) -> str:
    return fixture.replay or f"./validate_arch.sh --family {fixture.name}"


def new_record(fixture: Fixture, graph: str) -> Record:
    """A case's record before anything is judged (with no checks, an ERROR)."""
    return Record(family=fixture.name, model_type=fixture.model_type, graph=graph,
                  bound=KINDS[graph].bound(fixture) if graph in KINDS else fixture.bound,
                  replay=replay_command(fixture), fixture=fixture.facts())


def error_record(fixture: Fixture, graph: str, stage: str, message: str) -> Record:
    """A case that could not be run at all (its worker died, its published config could not be prepared)."""
    record = new_record(fixture, graph)
    record.errored(stage, message)
    return record


@dataclass
class Case:
    """One fixture and graph kind being validated: what the kind's steps share, made once each."""
    fixture: Fixture
    kind: GraphKind
    emitter: tuple[str, ...]
    texts: dict[str, str]  # graph kind -> StableHLO text, given or emitted
    record: Record
    failed_stage: str | None = None
    _graphs: dict[str, GraphSignature] = field(default_factory=dict)
    _modules: dict[tuple[str, str], Module] = field(default_factory=dict)
    _oracle: OracleRun | None = None

    @contextmanager
    def stage(self, name: str, timed: bool = True):
        """Adds the block's wall time to timings[name] and names the stage of an exception raised in it."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failed_stage = self.failed_stage or name
            raise
        finally:
            if timed:
                timings = self.record.timings
                timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 4)

    def graph(self, name: str) -> GraphSignature:
        if name not in self._graphs:
            if name not in self.texts:
                with self.stage("emit"):
                    self.texts[name] = emit(self.emitter, self.fixture.config_path, name)
            with self.stage("parse", timed=False):
                self._graphs[name] = parse_signature(self.texts[name])
                if "main" not in self._graphs[name].functions:
                    raise CaseError(f"the {name} graph has no func.func @main")
        return self._graphs[name]

    def module(self, name: str, backend: Backend) -> Module:
        """The graph compiled and loaded by backend, once per case."""
        if (name, backend.name) not in self._modules:
            graph = self.graph(name)  # emitted and parsed first: the text is then in self.texts
            module = backend.load(self.texts[name], graph, self.stage)
            self._modules[name, backend.name] = module
            if backend is SUBJECT:
                self.record.cache_hit["compile"] = self.record.cache_hit.get("compile", True) and module.cache_hit
        return self._modules[name, backend.name]

    def oracle(self) -> OracleRun:
        if self._oracle is None:
            with self.stage("oracle"):
                self._oracle = oracle_run(self.fixture)
            self.record.cache_hit["oracle"] = self._oracle.cached
            self.record.oracle = OracleFacts(self._oracle.class_name, self._oracle.mapping, [])
        return self._oracle

    def call(self, module: Module, backend: Backend, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        weights = self.oracle().weights
        with self.stage(backend.run_stage):
            return module.call(weights, inputs)


def run_case(fixture: Fixture, graph: str = "prefill", texts: dict[str, str] | None = None,
             emitter=DEFAULT_EMITTER, xla: bool = True, strict_bound: bool = True) -> Record:
    """Validate one fixture and graph kind; never raises.
    texts: graph kind -> StableHLO text already emitted (a decode case runs the prefill graph too).
    xla: also run the text on the reference backends (XLA CPU) and record the three-way comparison.
    strict_bound: also require the error within noise.STRICT_FACTOR x the fp32 noise floor (an fp64
    oracle run); False judges by the fixed bound alone."""
    kind = KINDS[graph]
    case = Case(fixture, kind, tuple(emitter), dict(texts or {}), new_record(fixture, graph))
    record = case.record
    try:
        with case.stage("inputs", timed=False):
            kind.prepare(case)
        for name in kind.emits:  # what the emitter and the compiler can get wrong, before the oracle runs
            case.module(name, SUBJECT)
        expected = kind.expected(case)
        actual = kind.actual(case, SUBJECT)
        with case.stage("compare", timed=False):
            kind.judge(case, expected, actual)
        used = {a.name for name in kind.emits for a in case.graph(name).functions["main"].args}
        record.oracle.unused_tensors = sorted(set(case.oracle().weights) - used)
        if strict_bound and kind.strict:
            with case.stage("oracle_fp64"):
                fp64 = kind.fp64(case, len(expected))
            errors = noise.step_errors(expected, actual)
            record.noise = noise.assess(errors, noise.step_floors(expected, fp64))
            step = record.noise.step
            where = (f" at step {step} (position {record.decode.timeline[step].position})" if record.decode else "")
            record.checks.append(noise.strict_check(float(errors[step]), record.noise, record.bound, where))
        if xla and kind.three_way:
            # the pairs' differences are maxima over every step, so each is held to the noisiest step's bound
            run_bound = record.noise.strict_factor * max(record.noise.floors) if record.noise else record.bound
            bound = min(record.bound, run_bound)
            record.xla = _three_way(case, expected, actual, bound)
    except (CaseError, GraphError, BackendError) as e:
        record.errored(case.failed_stage or "case", str(e))
    except Exception as e:  # noqa: BLE001 - one family's crash must never stop the others
        record.errored(case.failed_stage or "case", f"unexpected {type(e).__name__}: {e}")
    meant = kind.checks() + ((STRICT,) if strict_bound and kind.strict else ())
    ran = {c.name for c in record.checks}
    record.checks += [Check(name, "compare", NOT_RUN) for name in meant if name not in ran]
    return record


def _three_way(case: Case, expected: np.ndarray, actual: np.ndarray, bound: float) -> ThreeWay:
    """The same texts and inputs on the reference backend; its failure is reported there, never the case's
    verdict. Its logits are a reference, like the oracle's: cached by (its texts and build, the inputs)."""
    (backend,) = REFERENCES
    texts = [backend.cache_key(case.texts[name]) for name in case.kind.emits]
    path = cache.cache_dir() / (f"{cache.key(f'{backend.name} logits', *texts, _inputs_digest(case))}"
                                f".{backend.name}-logits")
    try:
        found, _, hit = cache.stored_arrays(path, lambda: ({"logits": case.kind.actual(case, backend)}, {}))
    except (CaseError, GraphError, BackendError) as e:
        return triangulate.failed(str(e))
    return triangulate.triangulate(expected, actual, found["logits"], bound, hit)


def _inputs_digest(case: Case) -> str:
    """What the graphs are fed: every weight, the prompt and the teacher-forced tokens."""
    oracle, h = case.oracle(), hashlib.sha256()
    for name, value in sorted(oracle.weights.items()):
        h.update(f"{name}:{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    for array in (case.fixture.prompt(), oracle.tokens):
        h.update(np.asarray(array, np.int64).tobytes())
    return h.hexdigest()

