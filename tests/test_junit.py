"""junit.xml: every record a testcase CI systems read (validated against the common JUnit schema,
tests/data/junit.xsd), a FAIL a <failure> and an ERROR an <error> with the reason and the replay."""
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from archval.harness.core import summary
from archval.harness.core.record import Check, FixtureFacts, MutantFacts, Record
from archval.harness.present import junit
from archval.harness.present.publish import publish

SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "data" / "junit.xsd")
FACTS = FixtureFacts("fixtures/x/config.json", "test", "-", 0, [1, 2], 3, 1e-2, None)


def record(family: str, graph: str, status: str, message: str = "", mutant: str | None = None) -> Record:
    r = Record(family=family, model_type="llama", graph=graph, bound=1e-2,
               replay=f"./validate_arch.sh --family {family}", fixture=FACTS, timings={"run": 0.25, "compile": 1.5})
    r.checks.append(Check("bound", "compare", status, message))
    r.mutant = mutant and MutantFacts(mutant, "a slip")
    return r


RECORDS = [record("llama", "prefill", "passed"), record("llama", "decode", "failed", "max |Δlogit| = 7.3 > 1e-2"),
           record("gemma<&>", "prefill", "errored", 'iree-compile exited with 1: "x" < 3 & done'),
           record("qwen2", "prefill", "failed", "killed", mutant="no_rope"),
           record("mimo", "decode", "refused", "mimo's multi-token heads are not implemented")]


def test_junit_xml_is_valid_against_the_common_schema_and_lists_every_record(tmp_path):
    publish(RECORDS, summary.run_info("gate", ["validate_arch.sh"], None), tmp_path)
    text = (tmp_path / "junit.xml").read_text()
    SCHEMA.validate(text)
    suite = ET.fromstring(text).find("testsuite")
    cases = [(c.get("classname"), c.get("name")) for c in suite.iter("testcase")]
    assert cases == [("archval.llama", "prefill"), ("archval.llama", "decode"), ("archval.gemma<&>", "prefill"),
                     ("archval.qwen2.no_rope", "prefill"), ("archval.mimo", "decode")]
    assert [suite.get(k) for k in ("tests", "failures", "errors", "skipped")] == ["5", "2", "1", "1"]
    assert float(suite.get("time")) == pytest.approx(5 * 1.75)


def test_a_failure_carries_its_reason_and_replay_and_a_pass_nothing():
    passed, failed, errored, _, refused = ET.fromstring(junit.render(RECORDS, summary.run_info("gate", [], None))).iter(
        "testcase")
    assert list(passed) == []
    [failure] = list(failed)
    assert failure.tag == "failure"
    assert failure.get("message") == "max |Δlogit| = 7.3 > 1e-2 (replay: ./validate_arch.sh --family llama)"
    assert "replay: ./validate_arch.sh --family llama" in failure.text
    [error] = list(errored)
    assert error.tag == "error" and error.get("message").startswith('iree-compile exited with 1: "x" < 3 & done')
    [skipped] = list(refused)
    assert skipped.tag == "skipped" and skipped.get("message").startswith("mimo's multi-token heads")


def test_the_schema_refuses_what_ci_systems_cannot_read():
    """The schema is no rubber stamp: a testcase without a name, or an unknown outcome, is refused."""
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate('<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
                        '<testcase classname="x"/></testsuite></testsuites>')
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        SCHEMA.validate('<testsuites><testsuite name="a" tests="1" failures="0" errors="0">'
                        '<testcase classname="x" name="y"><broken/></testcase></testsuite></testsuites>')
