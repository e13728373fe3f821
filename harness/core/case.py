"""One case, end to end, for every graph kind: emit -> parse -> compile -> oracle -> bind by name ->
run -> compare; then the strict bound and the three-way comparison where the kind has them, and the repro bundle.
What follows a case (localisation, goldens, flags, reports) is checks/finish.py's.

run_case never raises: whatever goes wrong becomes an errored check named after its stage (its message says
`stage 'NAME': ...` and, where checks had been judged before it, what they said; an emitter's refusal, exit 2, a
refused one), and every check the kind meant to run that did not is recorded as not run, so the verdict
(core/record.py) can only be PASS when everything meant to run ran and passed. The three-way comparison is a check
meant to run too: XLA failing (a broken jax included) is the case's ERROR. A family's cases share one dict of
texts, so that each graph kind is emitted once (a failed or refused emission too: it is not tried again).
"""
from __future__ import annotations

import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np

from ..backends.base import Backend, BackendError, Module
from ..backends.iree import IREE
from . import contained_process, noise, phases, precision, reference, triangulate
from .binding import IDENTITY, Binding
from .bundle import Bundles
from .emitter_protocol import (DEFAULT_EMITTER, PRE_EMITTED, CaseError, EmitterRefused, described,
                                          emit)
from .fixtures import Fixture
from .graph import FunctionSignature, GraphError, GraphSignature, bind, parse_signature
from .kinds import KINDS, GraphKind, tokens_only
from .messages import clip_record
from .oracle_cache import OracleRun
from .oracle_cache import run as oracle_run
from .record import (EVERY_WEIGHT, FAIL, NOT_RUN, PASS, STRICT, Check, OracleFacts, PublishedFacts,
                                        Record, verdict_of)
from .summary import command

SUBJECT = IREE  # the backend the verdict judges: the oracle against it


def replay_command(fixture: Fixture, graph: str, emitter=DEFAULT_EMITTER, strict_bound: bool = True,
                   binding: Binding = IDENTITY) -> str:
    """The command line, run from the project root, that runs exactly this case again: the family (or the
    published config, or the graph folder, as given), the graph kind, the emitter (shell-quoted) and its
    --emit-timeout where set, the binding file and --fixed-bound-only where the case was judged without the strict
    bound. Not carried: the rest of the environment (the emitter's variables, ARCHVAL_CACHE_DIR), and --reports."""
    words = [fixture.replay or f"{command()} --family {shlex.quote(fixture.name)}", f"--graph {graph}"]
    if tuple(emitter) not in (DEFAULT_EMITTER, PRE_EMITTED):
        words.append(f"--emitter {shlex.quote(shlex.join(emitter))}")
        words += contained_process.replay_options()
    if binding.path:
        words.append(f"--binding {shlex.quote(binding.path)}")
    words += [f"--dtype {fixture.dtype}"] * bool(fixture.dtype) + ["--fixed-bound-only"] * (not strict_bound)
    return " ".join(words)


def new_record(fixture: Fixture, graph: str, emitter=DEFAULT_EMITTER, strict_bound: bool = True,
               binding: Binding = IDENTITY) -> Record:
    """A case's record before anything is judged (with no checks, an ERROR)."""
    return Record(family=fixture.name, model_type=fixture.model_type, graph=graph,
                  bound=KINDS[graph].bound(fixture) if graph in KINDS else fixture.bound,
                  replay=replay_command(fixture, graph, emitter, strict_bound, binding), fixture=fixture.facts(),
                  emitter=described(emitter))


def error_record(fixture: Fixture, graph: str, stage: str, message: str, emitter=DEFAULT_EMITTER,
                 published: PublishedFacts | None = None) -> Record:
    """A case that could not be run at all (its worker died, its published config could not be prepared)."""
    return clip_record(failed(replace(new_record(fixture, graph, emitter), published=published), stage, message))


def describe(error: BaseException) -> str:
    """An exception in one sentence: a known problem in its own words, anything else named as unexpected."""
    if isinstance(error, (CaseError, GraphError, BackendError, noise.NoiseFloorError)):
        return str(error)
    return f"unexpected {type(error).__name__}: {error}"


def failed(record: Record, stage: str, error: BaseException | str) -> Record:
    """The record an ERROR at stage, whatever its checks said before (a check that did not run to its end
    never leaves a PASS or a FAIL standing); the message names the stage and keeps what they said."""
    before = verdict_of(record.checks) if record.checks else None
    said = record.message if before in (PASS, FAIL) else ""
    message = f"stage '{stage}': {error if isinstance(error, str) else describe(error)}"
    if before in (PASS, FAIL):
        message += f" (until then: {before}{', ' + said if said else ''})"
    record.errored(stage, message)
    return record


@dataclass
class Call:
    """One call of a graph's @main on the subject backend: what it was fed and what it returned."""
    graph: str
    main: FunctionSignature
    inputs: dict[str, np.ndarray]  # the arguments that are not weights
    results: list[np.ndarray]


@dataclass
class Case:
    """One fixture and graph kind being validated: what the kind's steps share, made once each."""
    fixture: Fixture
    kind: GraphKind
    emitter: tuple[str, ...]
    texts: dict  # graph kind -> StableHLO text, given or emitted (or the exception its emission raised)
    record: Record
    binding: Binding = IDENTITY  # the graphs' names -> the protocol's inputs and the checkpoint's tensors
    failed_stage: str | None = None
    calls: list[Call] = field(default_factory=list)  # the subject backend's calls, in order (what a bundle replays)
    _graphs: dict[str, GraphSignature] = field(default_factory=dict)
    _modules: dict[tuple[str, str], Module] = field(default_factory=dict)
    _weights: dict[str, tuple] = field(default_factory=dict)  # graph kind -> (its weights by argument, tensors read)
    _oracle: OracleRun | None = None
    subject = SUBJECT  # what kinds run besides the case's own calls (a serving kind's isolation runs)

    @contextmanager
    def stage(self, name: str, timed: bool = True):
        """Adds the block's wall time to timings[name] and names the stage of an exception raised in it."""
        start = time.perf_counter()
        phases.entered(name)
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
            if isinstance(self.texts.get(name), Exception):  # emitted for an earlier case of the family, and failed
                with self.stage("emit", timed=False):
                    raise self.texts[name]
            if name not in self.texts:
                with self.stage("emit"):
                    try:
                        f = self.fixture
                        self.texts[name] = emit(self.emitter, f.config_path, name, sizes=f.sizes, dtype=f.dtype)
                    except Exception as e:
                        self.texts[name] = e
                        raise
            with self.stage("parse", timed=False):
                signature = parse_signature(self.texts[name])
                if "main" not in signature.functions:
                    raise CaseError(f"the {name} graph has no func.func @main")
                self._graphs[name] = self.binding.protocol_names(signature, name)
        return self._graphs[name]

    def graph_weights(self, name: str) -> tuple[dict, dict[str, list[str]]]:
        """(the graph's weight arguments' values by their names, the checkpoint tensors each reads): the
        checkpoint's tensors through the binding."""
        if name not in self._weights:
            main = self.graph(name).functions["main"]
            with self.stage("bind", timed=False):
                self._weights[name] = self.binding.graph_weights(main, self.oracle().weights, self.fixture.attribute)
        return self._weights[name]

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
                require_finite(self._oracle.logits, "the oracle's fp32 logits")
            self.record.cache_hit["oracle"] = self._oracle.cached
            self.record.oracle = OracleFacts(self._oracle.class_name, self._oracle.mapping, [])
        return self._oracle

    def call(self, module: Module, backend: Backend, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        graph = next(name for (name, b), m in self._modules.items() if m is module)
        weights = self.graph_weights(graph)[0]
        with self.stage("bind", timed=False):
            args = bind(module.main, weights, inputs, self.binding.path)
        with self.stage(backend.run_stage):
            results = module.execute(args, inputs)
        if backend is SUBJECT:
            self.calls.append(Call(graph, module.main, inputs, results))
        return results


def require_finite(values: np.ndarray, what: str) -> None:
    """A reference with NaN/Inf cannot judge anything: the case is an ERROR, not a FAIL or a PASS."""
    bad = int((~np.isfinite(np.asarray(values))).sum())
    if bad:
        raise CaseError(f"{what} hold {bad} NaN/Inf values: the case cannot be judged (is every float of the "
                        "config finite and in range?)")


def run_case(fixture: Fixture, graph: str = "prefill", texts: dict | None = None,
             emitter=DEFAULT_EMITTER, xla: bool = True, strict_bound: bool = True,
             bundles: Bundles | None = None, binding: Binding = IDENTITY) -> Record:
    """Validate one fixture and graph kind; never raises. texts: graph kind -> StableHLO text already emitted (a
    decode case runs the prefill graph too), what is emitted here added to it (a family's cases emit each kind once).
    xla: also run the text on the reference backends (XLA CPU) and record the three-way comparison.
    strict_bound: also require the error within noise.STRICT_FACTOR x the fp32 noise floor (an fp64
    oracle run); False judges by the fixed bound alone. A check not asked for is in record.skipped.
    bundles: where the case's repro bundle goes when it wants one (core/bundle.py); None: no bundle.
    binding: how the graphs' argument names map onto the protocol's inputs and the checkpoint's tensors
    (core/binding.py; IDENTITY: by their own names). Graphs that return tokens are judged token by token, and
    neither the strict bound nor XLA applies (record.skipped says so)."""
    kind = KINDS[graph]
    case = Case(fixture, kind, tuple(emitter), {} if texts is None else texts,
                new_record(fixture, graph, emitter, strict_bound, binding), binding)
    record = case.record
    record.skipped = {name: "not asked for" for name, meant, on in (("strict_bound", kind.strict, strict_bound),
                                                                   ("xla", kind.three_way, xla)) if meant and not on}
    expected = actual = reduced = None  # what a bundle holds of the two sides; a bf16 graph's floors
    try:
        with case.stage("inputs", timed=False):
            kind.prepare(case)
        for name in kind.emits:  # what the emitter and the compiler can get wrong, before the oracle runs
            case.module(name, SUBJECT)
        with case.stage("protocol", timed=False):
            record.abi = kind.protocol(case)
        unread = case.oracle().unread_fields
        if unread:  # the comparison still runs and is shown, but no side of it can be blamed or passed
            record.errored("oracle", f"the oracle ({case.oracle().class_name}) never reads the config's "
                                     f"{', '.join(unread)}: a graph that implements them is not what it computes, so "
                                     "this comparison cannot judge the graph (UNVERIFIED, docs/binding.md)")
            record.skipped["xla"] = f"the oracle never reads {', '.join(unread)}: no side of it can be blamed"
        if tokens_only(record):
            record.skipped |= {name: "the graphs return tokens, not logits" for name, meant, on in (
                ("strict_bound", kind.strict, strict_bound), ("xla", kind.three_way, xla)) if meant and on}
        expected = kind.expected(case)
        with case.stage("oracle", timed=False):
            require_finite(expected, "the oracle's fp32 logits" if kind.strict else f"the oracle's {kind.name} output")
        reduced = precision.prepare(case, expected)
        actual = kind.actual(case, SUBJECT)
        with case.stage("compare", timed=False):
            kind.judge(case, expected, actual)
        with case.stage("bind", timed=False):
            _judge_weights_taken(case)
        if (strict_bound or reduced is not None) and kind.strict and not tokens_only(record):
            with case.stage("oracle_fp64"):
                fp64 = kind.fp64(case, len(expected))
                require_finite(fp64, "the oracle's fp64 logits")
            with case.stage("strict_bound", timed=False):  # a bf16 graph's derived bound takes the strict one's place
                errors = noise.step_errors(expected, actual)
                record.noise = noise.assess(errors, noise.step_floors(expected, fp64)) if reduced is None else \
                    precision.assess(errors, reduced)
                step = record.noise.step
                where = (f" at step {step} (position {record.decode.timeline[step].position})" if record.decode
                         else f" at position {fixture.prompt_positions()[step - len(errors)]}" if len(errors) > 1
                         else "")
                record.checks.append(noise.strict_check(float(errors[step]), record.noise, record.bound, where)
                                     if reduced is None else precision.check(float(errors[step]), record.noise, where))
        if xla and kind.three_way and not tokens_only(record) and "xla" not in record.skipped:
            # the pairs' differences are maxima over every step, so each is held to the noisiest step's bound
            run_bound = record.noise.strict_factor * max(record.noise.floors) if record.noise else record.bound
            bound = min(record.bound, run_bound)
            try:
                reference.three_way(case, expected, actual, bound)
            except Exception as e:  # said in its part of the record, and the case's ERROR
                record.xla = triangulate.unavailable(describe(e))
                raise
    except EmitterRefused as e:
        record.refused(case.failed_stage or "emit", str(e))
    except Exception as e:  # noqa: BLE001 - one family's crash must never stop the others
        failed(record, case.failed_stage or "case", e)
    meant = (kind.checks(record) + ((EVERY_WEIGHT,) if kind.takes_every_weight else ())
             + ((STRICT,) if (strict_bound or reduced is not None) and kind.strict and not tokens_only(record) else ()))
    ran = {c.name for c in record.checks}
    record.checks += [Check(name, "compare", NOT_RUN) for name in meant if name not in ran]
    if bundles is not None and bundles.wanted(record):
        record.bundle = bundles.write(case, expected, actual)
    return clip_record(record)


def _judge_weights_taken(case: Case) -> None:
    """Records the checkpoint's tensors a graph does not take; for a whole forward each one is a FAIL by
    name: a graph that ignores a weight computes another model, however close its logits come."""
    weights, unused = set(case.oracle().weights), {}
    for name in case.kind.emits:
        taken = {tensor for read in case.graph_weights(name)[1].values() for tensor in read}
        unused |= {tensor: name for tensor in sorted(weights - taken) if tensor not in unused}
    case.record.oracle.unused_tensors = sorted(unused)
    if case.kind.takes_every_weight:
        listed = ", ".join(f"'{tensor}' ({graph})" for tensor, graph in list(unused.items())[:5])
        more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
        case.record.check(EVERY_WEIGHT, "bind", not unused, f"the graph takes no argument for {len(unused)} tensor(s) "
                          f"of the checkpoint: {listed}{more}")
