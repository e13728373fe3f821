"""junit.xml: the records as JUnit XML, so that CI systems show archval's results as their own tests.

One testsuite for the run, one testcase per record: classname archval.<family> (a mutant's:
archval.<family>.<mutant>), name the graph kind. A FAIL is a <failure>, an ERROR an <error>, each
with the reason and the replay line in its message and the console's full account in its text; an
UNSUPPORTED (the emitter refused the family) is <skipped> with the emitter's sentence.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..core.record import ERROR, FAIL, UNSUPPORTED, Record
from ..core.summary import RunInfo
from .console import counts, line

OUTCOME = {FAIL: "failure", ERROR: "error", UNSUPPORTED: "skipped"}


def classname(r: Record) -> str:
    return f"archval.{r.family}" + (f".{r.mutant.name}" if r.mutant else "")


def testcase(r: Record) -> ET.Element:
    case = ET.Element("testcase", classname=classname(r), name=r.graph, time=f"{sum(r.timings.values()):.3f}")
    if r.verdict in OUTCOME:
        outcome = ET.SubElement(case, OUTCOME[r.verdict], type=r.verdict,
                                message=f"{r.message} (replay: {r.replay})")
        outcome.text = line(r) + (f"\n    repro bundle: {r.bundle}" if r.bundle else "")
    return case


def render(records: list[Record], run: RunInfo) -> str:
    said = counts(records)
    suite = ET.Element("testsuite", name="archval", tests=str(len(records)),
                       failures=str(sum(r.verdict == FAIL for r in records)),
                       errors=str(sum(r.verdict == ERROR for r in records)),
                       skipped=str(sum(r.verdict == UNSUPPORTED for r in records)),
                       time=f"{sum(sum(r.timings.values()) for r in records):.3f}",
                       timestamp=run.started)
    properties = ET.SubElement(suite, "properties")
    for name, value in (("command", run.command), ("emitter", run.emitter), ("result", said)):
        ET.SubElement(properties, "property", name=name, value=value)
    suite.extend(testcase(r) for r in records)
    root = ET.Element("testsuites", name="archval", tests=suite.get("tests"), failures=suite.get("failures"),
                      errors=suite.get("errors"), skipped=suite.get("skipped"), time=suite.get("time"))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
