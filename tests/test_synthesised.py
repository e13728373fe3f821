"""Fixtures synthesised for a model type archval has none for (harness/modes/synthesised.py): the same bytes every
time, refused with the census's sentence where the census refuses the type, and a case on one judged as any
fixture's: PASS for a right graph, FAIL for a wrong one (the built-in emitter run as another emitter's command,
on a synthesised config of a type it implements; the altered_emitter's first RMSNorm as the wrong graph)."""
import subprocess
import sys

import pytest

from archval.harness import ROOT
from archval.harness.cli import main
from archval.harness.core.case import run_case
from archval.harness.modes import synthesised

ALTERED = ROOT / "archval" / "altered_emitter.py"


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    return synthesised.prepare("qwen3", tmp_path_factory.mktemp("synthesised"))


def test_a_synthesised_fixture_is_the_same_bytes_every_time(qwen3, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHVAL_CACHE_DIR", str(tmp_path / "cold"))  # synthesised and examined again, not read back
    again = synthesised.prepare("qwen3", tmp_path)
    for name in ("config.json", "fixture.json"):
        assert (again.config_path.parent / name).read_bytes() == (qwen3.config_path.parent / name).read_bytes()
    assert (again.prompt() == qwen3.prompt()).all() and again.name == "qwen3" and again.seed == qwen3.seed
    # the prompt and decode rules of the committed fixtures: positions apart from slots, quiet rows
    assert (qwen3.prompt_positions() != range(qwen3.prompt_len)).any()
    assert set(qwen3.prompt()[::-4].tolist()) <= {0, 1}
    assert "sliding 2/4 layers" in qwen3.purpose and "window 5" in qwen3.purpose


def test_the_census_verdict_is_examined_once_per_machine(qwen3, monkeypatch):
    def examine_again(*args, **kwargs):
        raise AssertionError("examined again although the cache directory holds the verdict")
    monkeypatch.setattr(synthesised.census, "isolated", examine_again)
    assert synthesised.examined("qwen3").usable and synthesised.examined("qwen3").config == qwen3.config


@pytest.mark.parametrize("alter,verdict", [(False, "PASS"), (True, "FAIL")])
def test_a_case_on_a_synthesised_fixture_passes_a_right_graph_and_fails_a_wrong_one(qwen3, alter, verdict):
    emitter = (sys.executable, str(ALTERED), *(["--alter"] if alter else []))
    record = run_case(qwen3, "prefill", emitter=emitter, xla=False)
    assert record.verdict == verdict, record.message
    assert (record.max_abs_diff > 3 * record.bound) == alter  # the wrong graph by far more than its bound


def test_a_type_the_census_refuses_is_refused_with_its_sentence(capsys):
    assert main(["--family", "mamba", "--emitter", f"{sys.executable} {ALTERED}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --family model type 'mamba' has no fixture, and none can be synthesised: "
                          "MambaForCausalLM.forward takes no position_ids"), err
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_name_that_is_no_model_type_is_refused_without_synthesising(capsys):
    assert main(["--family", "no-such-type"]) == 2
    assert "--family no-such-type: no such fixture family" in capsys.readouterr().err


@pytest.mark.parametrize("selection,outcome", [
    (["-k", "cohere2_moe"], "2 skipped"),  # collected and run through the emitter, which refuses it (its exit 2)
    (["-m", "family_mamba"], "-k/-m: model type 'mamba' has no fixture, and none can be synthesised: "
                             "MambaForCausalLM.forward takes no position_ids"),
])
def test_pytest_selects_a_model_type_with_no_fixture_as_the_gate_does(selection, outcome):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-rs",
                           "--emitter", f"{sys.executable} {ALTERED}", *selection, "tests/test_differential.py"],
                          capture_output=True, text=True, cwd=ROOT)
    said = proc.stdout + proc.stderr
    assert outcome in said, said[-3000:]
    if selection[0] == "-k":
        assert "UNSUPPORTED: " in said and "cohere2_moe/config.json: field 'model_type'" in said, said[-3000:]
    else:
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR and "Traceback" not in said, said[-3000:]


def test_a_config_of_a_type_the_built_in_emitter_lacks_is_read_by_transformers_class(qwen3, tmp_path, capsys):
    """--config --as-is (and --graphs) take a config of any model type, typed by transformers' own config class: the
    built-in emitter refuses the type (UNSUPPORTED), a field of the wrong type is refused in one sentence (exit 2)."""
    import json
    config = {**json.loads(qwen3.config_path.read_text()), "model_type": "ministral"}
    given = tmp_path / "ministral" / "config.json"
    given.parent.mkdir()
    given.write_text(json.dumps(config))
    code = main(["--config", str(given), "--as-is", "--graph", "prefill", "--reports", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert code == 1 and "as given, typed by transformers' MinistralConfig" in out, out
    assert "UNSUPPORTED" in out and "not a supported family" in out, out
    given.write_text(json.dumps({**config, "hidden_size": "wide"}))
    assert main(["--config", str(given), "--as-is"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "field 'hidden_size' = \"wide\": transformers' MinistralConfig takes int here."), "one sentence"
