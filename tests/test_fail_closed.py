"""The verdict fails closed: a fault injected in any stage of a case is that case's ERROR, naming the stage,
never a PASS left standing by the checks that ran before it (nor a FAIL: what they said is kept in the message).

Stages: emit, parse, inputs, oracle, compile, load, bind, run, compare, oracle_fp64, strict_bound, xla_compile,
xla_run (and a broken jax), localisation, report. Non-finite references are ERRORs, never an arithmetic
exception. (A check a kind meant to run that did not: tests/test_kinds.py; the verdict from the checks:
tests/test_record.py.)
"""
import dataclasses
import json
import sys
import types

import numpy as np
import pytest

from archval.emitter import Config, emit
from archval.harness.backends import xla as xla_backend
from archval.harness.backends.base import BackendError
from archval.harness.checks import mutants
from archval.harness.core import cache, fixtures, noise, summary, triangulate
from archval.harness.core.case import new_record, run_case
from archval.harness.core.messages import MAX_CHARS, clip, clip_record
from archval.harness.core.record import ERRORED, Localisation, StructuralBrief
from archval.harness.pool import workers
from archval.harness.present.console import line

LLAMA = fixtures.load("llama")


class Injected(RuntimeError):
    pass


def boom(*args, **kwargs):
    raise Injected("injected fault")


def error_stage(record) -> str | None:
    return next((c.stage for c in record.checks if c.status == ERRORED), None)


@pytest.fixture(scope="module")
def texts():
    config = Config.from_json(LLAMA.config_path)
    return {g: emit(config, g) for g in ("prefill", "decode")}


@pytest.fixture(scope="module")
def baselines(texts):
    """Each graph's record without a fault: a PASS, so that any other verdict below is the fault's."""
    return {g: run_case(LLAMA, g, texts=dict(texts)) for g in ("prefill", "decode")}


@pytest.fixture
def xla_uncached(monkeypatch):
    """XLA's logits are a cached reference: computed afresh here, so that the injected fault is reached."""
    monkeypatch.setattr("archval.harness.core.reference.cache", types.SimpleNamespace(
        cache_dir=cache.cache_dir, key=cache.key, stored_arrays=lambda path, compute: (*compute(), False)))


# (stage named in the record, what to break, whether a comparison had judged the case before it)
FAULTS = [
    ("emit", "archval.harness.core.case.emit", False),
    ("parse", "archval.harness.core.case.parse_signature", False),
    ("inputs", "archval.harness.core.kinds.LogitKind.prepare", False),
    ("compile", "archval.harness.backends.iree.compile_text", False),
    ("load", "archval.harness.backends.iree.IreeModule.__init__", False),
    ("protocol", "archval.harness.core.kinds.prefill_results", False),
    ("oracle", "archval.harness.core.case.oracle_run", False),
    ("bind", "archval.harness.core.case.bind", False),
    ("run", "archval.harness.backends.iree.IreeModule.execute", False),
    ("compare", "archval.harness.core.compare.compare_logits", False),
    ("oracle_fp64", "archval.harness.core.oracle_cache.fp64_logits", True),
    ("strict_bound", "archval.harness.core.noise.assess", True),
    ("xla_compile", "archval.harness.backends.xla.XlaModule.__init__", True),
    ("xla_run", "archval.harness.backends.xla.XlaModule.execute", True),
]


@pytest.mark.parametrize("graph", ["prefill", "decode"])
@pytest.mark.parametrize("stage,target,judged", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_fault_in_any_stage_is_that_cases_error_naming_the_stage(monkeypatch, texts, baselines, xla_uncached, graph,
                                                                    stage, target, judged):
    assert baselines[graph].verdict == "PASS", line(baselines[graph])  # without the fault it passes
    monkeypatch.setattr(target, boom)
    record = run_case(LLAMA, graph, texts=None if stage == "emit" else dict(texts))
    assert record.verdict == "ERROR" and error_stage(record) == stage, line(record)
    assert record.message.startswith(f"stage '{stage}': unexpected Injected: injected fault"), record.message
    assert ("(until then: PASS" in record.message) == judged, record.message
    assert "ERROR" in line(record) and f"stage '{stage}'" in line(record)


def test_a_broken_jax_install_is_an_error_not_a_silent_pass(monkeypatch, texts, xla_uncached):
    def no_jax():
        raise ImportError("No module named 'jaxlib'")
    monkeypatch.setattr(xla_backend, "client", no_jax)
    record = run_case(LLAMA, "prefill", texts=dict(texts))
    assert record.verdict == "ERROR" and error_stage(record) == "xla_compile"
    assert record.xla == triangulate.unavailable("unexpected ImportError: No module named 'jaxlib'")
    assert "xla ERROR" in line(record)


def test_a_backend_error_of_xla_is_an_error_too(monkeypatch, texts, xla_uncached):
    def refuses(self, main, text):
        raise BackendError("XLA could not compile the module: on purpose")
    monkeypatch.setattr(xla_backend.XlaModule, "__init__", refuses)
    record = run_case(LLAMA, "prefill", texts=dict(texts))
    assert record.verdict == "ERROR" and record.xla.error == "XLA could not compile the module: on purpose"
    assert record.message == ("stage 'xla_compile': XLA could not compile the module: on purpose "
                              "(until then: PASS)")


def test_a_failing_fp64_oracle_never_passes_a_graph_the_strict_bound_fails(monkeypatch):
    """The issue's case: a slip within the fixed bound, far beyond the strict one (scores 0.1% too large; since
    the quiet tokens, epsilon 10x fails the fixed bound too). With the fp64 oracle failing it must not be PASS
    (the fixed bound alone would pass it)."""
    texts = mutants.MUTANTS["attn_scale_permille"].texts(LLAMA.config_path)
    assert run_case(LLAMA, texts=dict(texts), xla=False).verdict == "FAIL"
    monkeypatch.setattr("archval.harness.core.oracle_cache.fp64_logits", boom)
    record = run_case(LLAMA, texts=dict(texts), xla=False)
    assert record.verdict == "ERROR" and error_stage(record) == "oracle_fp64"
    assert "(until then: PASS" in record.message


@pytest.mark.parametrize("floor", [0.0, float("nan"), float("inf")])
def test_a_floor_that_is_zero_or_not_finite_is_an_error_not_a_division(monkeypatch, texts, floor):
    with pytest.raises(noise.NoiseFloorError, match="no strict bound can be derived"):
        noise.assess(np.array([1e-5]), np.array([floor]))
    monkeypatch.setattr(noise, "step_floors", lambda fp32, fp64: np.full(len(np.atleast_2d(fp32)), floor))
    record = run_case(LLAMA, texts=dict(texts), xla=False)
    assert record.verdict == "ERROR" and error_stage(record) == "strict_bound"
    assert f"the fp32 noise floor is {floor}" in record.message and "unexpected" not in record.message


@pytest.mark.parametrize("where", ["fp32", "fp64"])
def test_a_reference_holding_nan_is_an_error(monkeypatch, texts, where):
    """rms_norm_eps: Infinity and the like: the oracle itself cannot be trusted, so nothing is judged."""
    from archval.harness.core import case
    if where == "fp32":
        real = case.oracle_run

        def poisoned(fixture):
            run = real(fixture)
            return dataclasses.replace(run, logits=np.full_like(run.logits, np.nan))
        monkeypatch.setattr(case, "oracle_run", poisoned)
    else:
        monkeypatch.setattr("archval.harness.core.oracle_cache.fp64_logits", lambda fixture, tokens: np.full((17, 96), np.inf))
    record = run_case(LLAMA, texts=dict(texts), xla=False)
    assert record.verdict == "ERROR", line(record)
    assert error_stage(record) == ("oracle" if where == "fp32" else "oracle_fp64")
    assert f"the oracle's {where} logits hold" in record.message and "cannot be judged" in record.message


def test_a_skipped_check_says_so_in_the_record_and_the_line(texts):
    record = run_case(LLAMA, texts=dict(texts), xla=False, strict_bound=False)
    assert record.verdict == "PASS" and record.skipped == {"strict_bound": "not asked for", "xla": "not asked for"}
    assert "[skipped: strict bound, xla]" in line(record)
    assert run_case(LLAMA, texts=dict(texts)).skipped == {}


# -- the stages after the cases: localisation (of a failing prefill graph) and the report --------

def test_a_failing_localisation_is_an_error_not_a_fail_left_standing(monkeypatch):
    """A failing prefill's localisation (any emitter is asked for its taps) that raises: the FAIL does not stand."""
    monkeypatch.setattr("archval.harness.checks.localise.localise", boom)
    alter = (sys.executable, "-m", "archval.altered_emitter", "--alter")
    [prefill] = workers.validate(workers.Task("llama", emitter=alter, graphs=["prefill"])).records
    assert prefill.verdict == "ERROR" and error_stage(prefill) == "localisation", line(prefill)
    assert prefill.message.startswith("stage 'localisation': Injected: injected fault (until then: FAIL")
    assert prefill.localisation.error == "Injected: injected fault"


def test_a_page_that_cannot_be_written_makes_its_familys_records_errors(monkeypatch, tmp_path):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("archval.harness.present.publish.write_atomic", full_disk)
    run = summary.run_info("pytest", ["pytest"], None)
    done = workers.validate(workers.Task("llama", reports=tmp_path, run=run))
    assert done.problems == ["llama.html not written: OSError: [Errno 28] No space left on device"]
    for record in done.records:
        assert record.verdict == "ERROR" and error_stage(record) == "report", line(record)
        assert record.message == ("stage 'report': llama.html not written: OSError: [Errno 28] No space left on "
                                  "device (until then: PASS)")
    assert not list(tmp_path.iterdir())


def test_messages_are_clipped_in_one_place_keeping_both_ends():
    long = "start " + "x" * 10 ** 6 + " end"
    clipped = clip(long)
    assert len(clipped) < MAX_CHARS + 60 and clipped.startswith("start x") and clipped.endswith("x end")
    assert clip("short") == "short"
    record = new_record(LLAMA, "prefill")
    record.errored("emit", long)
    record.xla = triangulate.unavailable(long)
    record.localisation = Localisation(long, None, [], None, "")
    record.structural = StructuralBrief("ERROR", [long], None, 0, None, None, None)
    clip_record(record)
    assert max(len(record.message), len(record.xla.error), len(record.localisation.error),
               len(record.structural.detail[0])) < MAX_CHARS + 60


def test_the_issues_published_config_with_an_infinite_epsilon_never_passes(tmp_path, capsys):
    """rms_norm_eps: Infinity made the noise floor zero and noise.assess divide by it: PASS, exit 0. Refused
    as input (exit 2) or an ERROR of its cases (exit 1): never a PASS."""
    from archval.harness.cli import main
    config = json.loads((fixtures.FIXTURES_DIR / "real" / "Llama-3.2-1B" / "config.json").read_text())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({**config, "rms_norm_eps": float("inf")}))
    code = main(["--config", str(tmp_path / "model" / "config.json"), "--reports", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code in (1, 2) and "RESULT: PASS" not in out and "Traceback" not in out + err, out[-2000:] + err
    if code == 1:
        _, records = summary.read(tmp_path / "r" / "summary.json")
        assert records and {r.verdict for r in records} <= {"ERROR", "FAIL"}


def test_a_task_that_raises_outside_every_stage_is_its_familys_error_only(monkeypatch):
    """A bug in the worker's own code (outside run_case) reached the gate as a traceback after the run;
    now it is that family's ERROR and the others are taken as they are."""
    from concurrent.futures import ThreadPoolExecutor

    def validate(task):
        if task.name == "qwen3":
            raise Injected("worker code broke")
        records = [new_record(task.fixture(), g) for g in ("prefill", "decode")]
        for record in records:
            record.check("bound", "compare", True)
        return workers.Done(task.name, records, set(), [])
    monkeypatch.setattr(workers, "validate", validate)
    with ThreadPoolExecutor(2) as pool:
        done = {d.name: d for d in workers.run_all(pool, [workers.Task("llama"), workers.Task("qwen3")])}
    verdicts = {(r.family, r.graph): r.verdict for d in done.values() for r in d.records}
    assert verdicts == {("llama", "prefill"): "PASS", ("llama", "decode"): "PASS",
                        ("qwen3", "prefill"): "ERROR", ("qwen3", "decode"): "ERROR"}
    assert done["qwen3"].records[0].message == "stage 'worker': unexpected Injected: worker code broke"
    assert done["qwen3"].problems == ["qwen3.html not written: its worker raised Injected"]
