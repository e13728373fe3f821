"""The record: its verdict derives from its checks (PASS only when every check meant to run ran and
passed), it reads back what it writes, and summary.json validates against the published schema, which
is generated from the types and up to date."""
import dataclasses
import json
import os
import types
import typing

import jsonschema
import pytest

from archval.harness.cli import main
from archval.harness.core import record as r
from archval.harness.core import schema, summary, typed
from archval.harness.core.record import Check, Record

SCHEMA = json.loads(schema.SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@pytest.mark.parametrize("statuses,verdict", [
    ([], r.ERROR),  # nothing checked is no pass
    ([r.PASSED], r.PASS),
    ([r.PASSED, r.FAILED], r.FAIL),
    ([r.PASSED, r.NOT_RUN], r.ERROR),  # meant to run and did not
    ([r.FAILED, r.ERRORED], r.ERROR),
    ([r.REFUSED, r.NOT_RUN], r.UNSUPPORTED),  # the emitter's exit 2 is why the rest did not run
    ([r.PASSED, r.REFUSED, r.NOT_RUN], r.UNSUPPORTED),  # decode: prefill emitted, decode refused
    ([r.REFUSED, r.ERRORED], r.ERROR),
    ([r.REFUSED, r.FAILED], r.FAIL),
])
def test_the_verdict_derives_from_the_checks(statuses, verdict):
    assert r.verdict_of([Check(f"c{i}", "compare", s) for i, s in enumerate(statuses)]) == verdict


def test_the_message_is_the_first_error_then_the_first_failure_then_the_notes():
    checks = [Check("a", "compare", r.PASSED, "a near tie"), Check("b", "compare", r.FAILED, "over the bound"),
              Check("c", "emit", r.ERRORED, "the emitter exited with 1")]
    assert r.message_of(checks) == "the emitter exited with 1"
    assert r.message_of(checks[:2]) == "over the bound"
    assert r.message_of(checks[:1]) == "a near tie"


def test_the_fixed_verdict_leaves_out_the_strict_bound_only():
    record = Record("llama", "llama", "prefill", 1e-2, "replay", _example(r.FixtureFacts), checks=[])
    assert record.fixed_verdict is None
    record.check("bound", "compare", True)
    record.check(r.STRICT, "oracle_fp64", False, "over the strict bound")
    assert (record.verdict, record.fixed_verdict) == (r.FAIL, r.PASS)


def _example(tp):
    """A value of every type the record holds, with every optional part present."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        hints = typed.hints_of(tp)
        return tp(**{f.name: _example(hints[f.name]) for f in dataclasses.fields(tp)})
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return args[0]
    if origin is list:
        return [_example(args[0])]
    if origin is tuple:
        return tuple(_example(a) for a in args)
    if origin is dict:
        return {"key": _example(args[1])}
    return {str: "text", int: 3, float: 0.25, bool: True, typing.Any: [1, "x"]}[tp]


def test_every_field_of_a_full_record_is_in_the_schema_and_reads_back():
    full = summary.Summary(summary.SCHEMA_VERSION, _example(summary.RunInfo), [_example(Record)])
    written = typed.to_json(full)
    VALIDATOR.validate(written)
    assert typed.to_json(typed.from_json(summary.Summary, json.loads(json.dumps(written)))) == written


def test_the_published_schema_and_its_page_are_generated_from_the_types():
    assert schema.main(["--check"]) == 0, "run python -m archval.harness.core.schema"


def test_a_gate_summary_validates_and_is_readable_by_anyone(tmp_path, capsys):
    """A routed family: prefill, decode and the MoE block, structural briefs and the built-in flags."""
    previous = os.umask(0o022)
    try:
        assert main(["--family", "olmoe", "--reports", str(tmp_path), "--jobs", "1"]) == 0, capsys.readouterr().out
    finally:
        os.umask(previous)
    found = json.loads((tmp_path / "summary.json").read_text())
    VALIDATOR.validate(found)
    assert found["schema_version"] == 1 and found["run"]["mode"] == "gate"
    assert [(x["graph"], x["verdict"]) for x in found["records"]] == [
        ("prefill", "PASS"), ("decode", "PASS"), ("moe_block", "PASS")]
    for name in ("summary.json", "summary.csv", "index.html", "olmoe.html"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    _, records = summary.read(tmp_path / "summary.json")
    assert [x.to_json() for x in records] == found["records"]


def test_summary_csv_carries_model_type_seed_and_localisation(tmp_path):
    from archval.harness.present.index import rows
    table = rows([_example(Record)])
    assert table[["model_type", "seed", "localisation"]].values.tolist() == [["text", 3, "text"]]
