"""Fixtures synthesised for a model type archval has none for (harness/modes/synthesised.py): the same bytes every
time, refused with the census's sentence where the census refuses the type, and a case on one judged as any
fixture's: PASS for a right graph, FAIL for a wrong one (the built-in emitter run as another emitter's command,
on a synthesised config of a type it implements; the altered_emitter's first RMSNorm as the wrong graph)."""
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


def test_a_synthesised_fixture_is_the_same_bytes_every_time(qwen3, tmp_path):
    again = synthesised.prepare("qwen3", tmp_path)
    for name in ("config.json", "fixture.json"):
        assert (again.config_path.parent / name).read_bytes() == (qwen3.config_path.parent / name).read_bytes()
    assert (again.prompt() == qwen3.prompt()).all() and again.name == "qwen3" and again.seed == qwen3.seed
    # the prompt and decode rules of the committed fixtures: positions apart from slots, quiet rows
    assert (qwen3.prompt_positions() != range(qwen3.prompt_len)).any()
    assert set(qwen3.prompt()[::-4].tolist()) <= {0, 1}
    assert "sliding 2/4 layers" in qwen3.purpose and "window 5" in qwen3.purpose


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
