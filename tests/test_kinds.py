"""Adding a graph kind is one registry entry plus its emitter's code: a test-only kind, the final RMSNorm
alone (tests/emitters/final_norm.py writes its graph), runs through run_case, the console, the pages,
the index and the schema without a change anywhere else; and a kind that skips a check it meant to
run cannot pass."""
import json
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from archval.harness.backends.base import Backend
from archval.harness.core import fixtures, kinds, summary
from archval.harness.core.case import Case, run_case
from archval.harness.core.inputs import hidden_states
from archval.harness.core.kinds import KINDS, GraphKind
from archval.harness.present import console
from archval.harness.present.publish import publish

EMITTER = (sys.executable, str(Path(__file__).parent / "emitters" / "final_norm.py"))
SCHEMA = json.loads((Path(__file__).parent.parent / "docs" / "summary.schema.json").read_text())


class FinalNorm(GraphKind):
    """The final RMSNorm on seeded hidden states, against the same norm in fp64 on the oracle's weight."""
    name, emits, every_family, metric = "final_norm", ("final_norm",), False, "max |Δ|"

    def applies(self, fixture):
        return not fixture.config.get("tie_word_embeddings")  # any family with model.norm.weight would do

    def bound(self, fixture):
        return 1e-5

    def checks(self, record):
        return ("finite", "bound")

    def inputs(self, case: Case) -> dict:
        main = case.graph(self.emits[0]).functions["main"]
        return {"hidden": hidden_states(case.fixture, *main.arg("hidden").shape)}

    def expected(self, case: Case) -> np.ndarray:
        x, weight = self.inputs(case)["hidden"].astype(np.float64), case.oracle().weights["model.norm.weight"]
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + case.fixture.config["rms_norm_eps"]) * weight

    def actual(self, case: Case, backend: Backend) -> np.ndarray:
        (out,) = case.call(case.module(self.emits[0], backend), backend, self.inputs(case))
        return out

    def judge(self, case: Case, expected: np.ndarray, actual: np.ndarray) -> None:
        record = case.record
        record.max_abs_diff = float(np.nan_to_num(np.abs(actual - expected), nan=np.inf).max())
        record.check("finite", "compare", bool(np.isfinite(actual).all()), "the output holds NaN/Inf")
        record.check("bound", "compare", record.max_abs_diff <= record.bound,
                     f"max |Δ| = {record.max_abs_diff:.3e} exceeds the bound {record.bound:.0e}", record.max_abs_diff,
                     record.bound)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(KINDS, "final_norm", FinalNorm())


def test_a_new_kind_is_one_registry_entry_and_its_emitter(registered, tmp_path):
    fixture = fixtures.load("llama")
    assert [k.name for k in kinds.applicable(fixture)][-1] == "final_norm"
    passing = run_case(fixture, "final_norm", emitter=EMITTER)
    assert passing.verdict == "PASS", console.line(passing)
    assert passing.max_abs_diff < 1e-5 and [c.name for c in passing.checks] == ["finite", "bound"]
    broken = run_case(fixture, "final_norm", emitter=(*EMITTER, "--eps-times", "1e5"))
    assert broken.verdict == "FAIL" and "exceeds the bound 1e-05" in broken.message, console.line(broken)
    assert console.line(broken).startswith("llama                final_norm max|Δ|")

    run = summary.run_info("pytest", ["pytest"], " ".join(EMITTER))
    said = publish([passing, broken], run, tmp_path)
    assert said == [f"reports: {tmp_path / 'index.html'} and a page per family"]
    page = (tmp_path / "llama.html").read_text()
    assert 'id="final_norm"' in page and "exceeds the bound 1e-05" in page
    assert "final_norm" in (tmp_path / "index.html").read_text()
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads((tmp_path / "summary.json").read_text()))


def test_the_emitter_refusing_a_kind_is_that_cases_unsupported(registered):
    record = run_case(fixtures.load("llama"), "prefill", emitter=EMITTER)
    assert record.verdict == "UNSUPPORTED" and "writes the final_norm graph only" in record.message
    assert [(c.name, c.status) for c in record.checks][0] == ("emit", "refused")
    assert {c.status for c in record.checks[1:]} == {"not run"}


class Forgetful(FinalNorm):
    """Judges without adding its bound check: the case must not pass on what it skipped."""
    name = "forgetful"  # run on the final_norm graph (emits, inherited)

    def judge(self, case, expected, actual):
        case.record.check("finite", "compare", True)


def test_a_check_meant_to_run_that_did_not_is_an_error(monkeypatch):
    monkeypatch.setitem(KINDS, "forgetful", Forgetful())
    record = run_case(fixtures.load("llama"), "forgetful", emitter=EMITTER)
    assert record.verdict == "ERROR", console.line(record)
    assert [(c.name, c.status) for c in record.checks] == [("finite", "passed"), ("bound", "not run")]
