"""Selecting cases with pytest: a registered marker per family and graph kind that selects exactly, -k that
selects a family by its name exactly, and -n auto that stays serial when a selection holds one family."""
import subprocess
import sys
from types import SimpleNamespace

from archval.harness import ROOT
from archval.harness.core import fixtures
from archval.harness.core.kinds import KINDS
from archval.harness.pytest_selection import auto_workers as plugin_auto_workers, marker


def pytest_run(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_every_family_and_graph_kind_has_a_registered_marker():
    said = pytest_run("--markers")
    for name in fixtures.names():
        assert f"@pytest.mark.{marker('family', name)}: the cases of the {name} fixture family" in said
    for kind in KINDS:
        assert f"@pytest.mark.graph_{kind}: the cases of the {kind} graph kind" in said


def test_a_family_marker_selects_exactly_that_familys_cases():
    said = pytest_run("--collect-only", "-q", "-m", "family_llama and graph_decode", "tests/test_differential.py",
                      "tests/test_structural.py")
    ids = [line for line in said.splitlines() if "::" in line]
    assert ids == ["tests/test_differential.py::test_decode_matches_oracle_token_for_token[llama]",
                   "tests/test_structural.py::test_signature_matches_golden[llama-decode]"]


CASE_FILES = ("tests/test_differential.py", "tests/test_structural.py", "tests/test_blocks.py")


def families_selected(keyword: str) -> set[str]:
    """The families of the family cases `-k keyword` selects (a case id is test[family] or test[family-...])."""
    said = pytest_run("--collect-only", "-q", "-k", keyword, *CASE_FILES)
    ids = [line.split("[", 1)[1].rstrip("]") for line in said.splitlines() if "::" in line and "[" in line]
    return {max(named, key=len) for i in ids if (named := [n for n in fixtures.names() if i == n or i.startswith(f"{n}-")])}


def test_k_with_a_familys_name_selects_exactly_that_family():
    """pytest's -k matches substrings: without the plugin these four would take llama-llama3-rope, gemma2 and
    gemma3, olmo3-yarn and qwen3_moe as well."""
    for name in ("llama", "gemma", "olmo3", "qwen3"):
        assert families_selected(name) == {name}
    assert families_selected("llama or gemma2") == {"llama", "gemma2"}
    assert families_selected("llama3") == {"llama-llama3-rope"}  # not a family's name: pytest's substring match
    assert "llama-llama3-rope" in families_selected("not llama")


def test_k_keeps_pytests_meaning_for_the_rest():
    said = pytest_run("--collect-only", "-q", "-k", "llama and decode and golden", *CASE_FILES)
    assert [line for line in said.splitlines() if "::" in line] == [
        "tests/test_structural.py::test_signature_matches_golden[llama-decode]",
        # a published config's case is no family's: "llama" is a substring of its id, as pytest matches
        "tests/test_structural.py::test_signature_matches_golden[real/Llama-3.1-8B-decode]",
        "tests/test_structural.py::test_signature_matches_golden[real/Llama-3.2-1B-decode]"]


def auto_workers(keyword: str = "", markexpr: str = ""):
    options = {"keyword": keyword, "markexpr": markexpr}
    return plugin_auto_workers(SimpleNamespace(getoption=options.__getitem__))


def test_auto_workers_are_none_for_one_family_and_xdists_choice_otherwise():
    assert auto_workers(markexpr="family_olmo2") == 0
    assert auto_workers(keyword="olmo2") == 0
    assert auto_workers(keyword="compare") == 0  # no family: a small selection of unit tests
    assert auto_workers(keyword="llama") == 0  # exactly llama (-k matches a family's name exactly)
    assert auto_workers(keyword="llama3") == 0  # llama-llama3-rope
    assert auto_workers(keyword="llama or gemma") is None
    assert auto_workers(markexpr="family_llama or family_gemma") is None
    assert auto_workers(keyword="not olmo2") is None
    assert auto_workers() is None


def test_the_suite_is_collected_by_its_module_name_in_a_project_with_a_harness_package_of_its_own(tmp_path):
    """By its path, pytest would import archval's suite from this (editable) checkout as a top-level
    `harness.pytest_suite`, which collides with the project's own `harness` and puts the checkout on sys.path."""
    import os
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-emitter"\nversion = "0"\n')
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "__init__.py").write_text("MINE = True\n")
    (tmp_path / "conftest.py").write_text(
        "import sys\n"
        "def pytest_collection_finish(session):\n"
        "    import harness\n"
        "    assert harness.MINE, harness.__file__\n"
        f"    assert {str(ROOT)!r} not in sys.path\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q",
                           "--archval-emitter", f"{sys.executable} {ROOT / 'archval' / 'altered_emitter.py'}",
                           "-m", "family_llama and graph_prefill"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"})
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_k_sees_what_other_collection_hooks_add(tmp_path):
    """-k is applied after every other plugin's and conftest's pytest_collection_modifyitems, as pytest's own."""
    import os
    (tmp_path / "conftest.py").write_text(
        "import pytest\n"
        "def pytest_collection_modifyitems(items):\n"
        "    for item in items:\n"
        "        if item.name.endswith('[gemma]'):\n"
        "            item.add_marker(pytest.mark.heavy)\n")
    (tmp_path / "test_families.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('family', ['llama', 'gemma', 'gemma2'])\n"
        "def test_family(family):\n    pass\n"
        "def test_plain_heavy():\n    pass\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "--collect-only",
                           "-q", "-k", "heavy and not llama"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"})
    assert [line for line in proc.stdout.splitlines() if "::" in line] == [
        "test_families.py::test_family[gemma]", "test_families.py::test_plain_heavy"], proc.stdout + proc.stderr


def project_pytest(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """pytest in a downstream project of one test of its own (archval's plugin loaded, its suite not in it), with
    this checkout's archval (a worktree's, not the one the environment's editable install names)."""
    import os
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-emitter"\nversion = "0"\n')
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    pass\n")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**{k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"},
                               "PYTHONPATH": str(ROOT)})


def test_without_an_emitter_archvals_cases_are_not_collected_and_help_and_a_selection_say_so(tmp_path):
    """--help does not promise the built-in emitter by default; `-m family_llama` (or `-k llama`) alone says why
    nothing of archval's was collected instead of a bare `1 deselected`; a selection of the project's own tests
    says nothing."""
    helped = project_pytest(tmp_path, "--help").stdout
    option = " ".join(helped.split("--archval-emitter=CMD")[1].split("--archval-")[0].split())
    assert "collected only with it" in option and "default" not in option, option
    for selection in (["-m", "family_llama"], ["-m", "graph_decode and not slow"], ["-k", "llama"]):
        proc = project_pytest(tmp_path, *selection)
        assert "1 deselected" in proc.stdout and "archval: no archval case was collected: its cases are collected " \
            "only with --archval-emitter CMD" in proc.stdout, proc.stdout[-2000:]
    assert "archval:" not in project_pytest(tmp_path, "-k", "mine").stdout


def test_a_kind_a_family_lacks_is_skipped_saying_why(tmp_path):
    proc = project_pytest(tmp_path, "-rs", "--archval-emitter", f"{sys.executable} -m archval.altered_emitter",
                          "-m", "family_llama and graph_moe_block")
    assert "1 skipped" in proc.stdout, proc.stdout[-2000:]
    assert ("llama has no moe_block graph: it checks a mixture-of-experts block, and llama's oracle routes no layer "
            "through experts") in " ".join(proc.stdout.split()), proc.stdout[-2000:]
