"""One family's ERROR never hides or stops another's verdict."""
import json
import re
import sys
from pathlib import Path

import pytest

from archval.emitter import Config, emit
from archval.harness import ROOT
from archval.harness.cli import main
from archval.harness.core import fixtures
from archval.harness.core.case import run_case

BREAKS_ON = Path(__file__).parent / "emitters" / "breaks_on.py"


def protocol_says(what: str) -> str:
    """The record's words docs/emitter-protocol.md's table gives for what the graph does."""
    row = next(line for line in (ROOT / "docs" / "emitter-protocol.md").read_text().splitlines()
               if line.startswith(f"| {what} |"))
    return re.fullmatch(r"\| .+? \| `(.*)` \|", row).group(1)


@pytest.mark.parametrize("mode,message", [
    ("exit", "the emitter exited with 1: breaks_on: refusing on purpose"),
    ("garbage", "does not parse"),
    ("nothing", "wrote nothing"),
    ("rename", "@main argument 'model.final_norm.weight' names neither an input of this graph (tokens, positions, "
               "real_len) nor a tensor of the checkpoint; did you mean 'model.norm.weight'?"),
])
def test_broken_emitter_is_that_familys_error_only(tmp_path, capsys, mode, message):
    code = main(["--family", "qwen3", "--family", "olmo2", "--reports", str(tmp_path),
                 "--emitter", f"{sys.executable} {BREAKS_ON} qwen3 {mode}"])
    out = capsys.readouterr().out
    records = {r["family"]: r for r in json.loads((tmp_path / "summary.json").read_text())["records"]}
    assert code == 1 and "RESULT: FAIL" in out
    assert records["qwen3"]["verdict"] == "ERROR" and message in records["qwen3"]["message"]
    assert records["olmo2"]["verdict"] == "PASS"


def test_compile_error_is_reported_with_the_compilers_words():
    """custom_call parses as StableHLO, so only the compiler can refuse it."""
    fixture = fixtures.load("llama")
    text = emit(Config.from_json(fixture.config_path))
    broken = re.sub(r"stablehlo\.rsqrt (%\w+) : (\S+)",
                    r"stablehlo.custom_call @not_a_real_target(\1) : (\2) -> \2", text, count=1)
    assert broken != text
    record = run_case(fixture, texts={"prefill": broken})
    assert record.verdict == "ERROR"
    assert "iree-compile exited" in record.message, record.message


def test_decode_cache_too_small_for_the_continuation_is_an_error():
    fixture = fixtures.load("llama")
    small = emit(Config.from_json(fixture.config_path), "decode", capacity=20)
    record = run_case(fixture, "decode", texts={"decode": small})
    assert record.verdict == "ERROR"
    assert protocol_says("a cache too small for the continuation") in record.message


def test_prefill_bucket_too_small_for_the_prompt_is_an_error_of_stage_case_in_the_protocols_words():
    """The protocol's table and reliability.md's list of stages say what this record says."""
    fixture = fixtures.load("llama")
    short = emit(Config.from_json(fixture.config_path), "prefill", bucket=8)
    record = run_case(fixture, "prefill", texts={"prefill": short}, xla=False)
    assert record.verdict == "ERROR"
    assert record.message == f"stage 'case': {protocol_says('a bucket shorter than the prompt')}"
    stages = (ROOT / "docs" / "reliability.md").read_text().split("**Failing closed.**")[1].split("is an errored")[0]
    assert "`case`" in stages


def test_fixture_whose_decode_never_outgrows_the_window_is_refused(tmp_path, monkeypatch):
    case = tmp_path / "gemma2"
    case.mkdir()
    config = json.loads((fixtures.FIXTURES_DIR / "gemma2" / "config.json").read_text())
    (case / "config.json").write_text(json.dumps({**config, "sliding_window": 40}))
    (case / "fixture.json").write_text(json.dumps({"seed": 1, "prompt_len": 13}))
    monkeypatch.setattr(fixtures, "FIXTURES_DIR", tmp_path)
    with pytest.raises(fixtures.FixtureError, match="decode_steps' = 16 with prompt_len 13 never takes the cache "
                                                     "past config.json's sliding_window 40"):
        fixtures.load("gemma2")


def test_unknown_family_is_a_usage_error(capsys):
    assert main(["--family", "no-such-family"]) == 2
    assert "--family no-such-family: no such fixture" in capsys.readouterr().err


def test_out_of_vocabulary_prompt_is_refused_before_running(monkeypatch):
    fixture = fixtures.load("llama")
    monkeypatch.setattr(type(fixture), "prompt", lambda self: __import__("numpy").array([1, 500], "int32"))
    record = run_case(fixture)
    assert record.verdict == "ERROR" and "outside the vocabulary" in record.message


@pytest.mark.parametrize("spec,expected", [
    ({"seed": 1, "prompt_len": 13, "bound": 0.05}, "field 'bound' = 0.05 is looser than 0.01 without a 'bound_reason'"),
    ({"seed": "one", "prompt_len": 13}, "field 'seed' = \"one\" must be int"),
    ({"seed": 1, "prompt_len": 13, "decode_steps": 0}, "field 'decode_steps' = 0 must be at least 1"),
])
def test_bad_fixture_is_refused_with_one_sentence(tmp_path, monkeypatch, spec, expected):
    case = tmp_path / "llama"
    case.mkdir()
    (case / "config.json").write_text((fixtures.FIXTURES_DIR / "llama" / "config.json").read_text())
    (case / "fixture.json").write_text(json.dumps(spec))
    monkeypatch.setattr(fixtures, "FIXTURES_DIR", tmp_path)
    with pytest.raises(fixtures.FixtureError, match=re.escape(expected)):
        fixtures.load("llama")
