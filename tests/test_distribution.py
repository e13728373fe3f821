"""archval as an installed tool: a wheel built from this checkout, installed into a fresh virtual environment
outside it, gives the `archval` command (--version, a family validated with the fixtures it ships) and the
pytest plugin a downstream emitter repository runs archval's cases with, PASS and FAIL alike.

Nothing is downloaded: the wheel is built without build isolation and installed without dependencies
into a venv that sees this environment's site-packages through a .pth file (whose own .pth files, this
checkout's editable install among them, are not run: the fresh venv imports archval from the wheel).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from archval.harness import ROOT

# README's installed path begins with its set-up, which the `installed` fixture does offline
SETUP = ("python3 -m venv", "pip install")
SOURCES = ("archval", "harness", "emitter", "oracles", "fixtures", "pyproject.toml", "README.md")
INSTALLED = ("harness", "emitter", "oracles", "fixtures")  # as archval.harness, ...


def run(argv: list, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(the fresh venv's bin directory, the environment to run it in)."""
    tmp = tmp_path_factory.mktemp("distribution")
    source = tmp / "source"  # a copy: the build leaves build/ and *.egg-info behind, never in the checkout
    source.mkdir()
    for name in SOURCES:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(
            ROOT / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (ROOT / name).is_dir() else {}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_XDIST_WORKER")}
    built = run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                 "-w", tmp / "dist"], source, env)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp / "dist").glob("archval-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    assert made.returncode == 0, made.stderr
    site = Path(run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    tmp, env).stdout.strip())
    (site / "archval-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "-q",
                     wheel], tmp, env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    for tool in ("iree-compile", "iree-run-module"):  # where pip puts the tools of the dependencies it installs
        (venv / "bin" / tool).symlink_to(Path(sys.executable).parent / tool)
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    return venv / "bin", env, shipped


def test_the_setups_editable_install_prints_no_warning_wall(tmp_path):
    """validate_arch.sh's pip_install as --setup runs it on a fresh clone (here offline: no dependencies, no build
    isolation, this environment's pip and setuptools) says nothing: setuptools' "Please be careful with folders
    in your working directory" note on pyproject.toml's package-dir mapping is left out."""
    source = tmp_path / "source"
    source.mkdir()
    for name in (*SOURCES, "validate_arch.sh"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_XDIST_WORKER")}
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env).returncode == 0
    site = Path(run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    tmp_path, env).stdout.strip())
    (site / "archval-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # pip, setuptools
    function = re.search(r"^pip_install\(\) \{$.*?^\}$", (ROOT / "validate_arch.sh").read_text(), re.S | re.M)[0]
    proc = run(["bash", "-c", f"{function}\nvenv={venv}\npip_install --no-deps --no-build-isolation -e ."], source, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout + proc.stderr == "", proc.stdout + proc.stderr


def test_the_wheel_holds_every_module_and_fixture_of_the_checkout_under_one_namespace(installed):
    """pyproject.toml lists the packages by hand (their folders are renamed into archval/): a new folder
    of modules, or a fixture file of a new kind, that the list or the globs miss fails here."""
    *_, shipped = installed
    ours = {f"archval/{path.relative_to(ROOT)}" for name in INSTALLED for path in (ROOT / name).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts}
    ours |= {f"archval/{path.name}" for path in (ROOT / "archval").glob("*.py")}
    assert sorted(ours - shipped) == []
    top_level = {name.split("/")[0] for name in shipped if not name.startswith("archval-")}
    assert top_level == {"archval"}


def test_the_wheel_gives_the_archval_command_with_its_fixtures(installed, tmp_path):
    bin_dir, env, _ = installed
    where = run([bin_dir / "python", "-c", "import archval.harness, archval.fixtures; print(archval.harness.__file__)"],
                tmp_path, env)
    assert str(bin_dir.parent) in where.stdout, where  # the wheel's, not this checkout's
    version = run([bin_dir / "archval", "--version"], tmp_path, env)
    assert version.returncode == 0 and version.stdout.strip() == "archval 0.1.0", version
    gate = run([bin_dir / "archval", "--family", "llama", "--jobs", "1"], tmp_path, env)
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    assert gate.stdout.rstrip().endswith("RESULT: PASS") and "2 passed, 0 failed, 0 errors" in gate.stdout
    assert (tmp_path / "reports" / "llama.html").is_file()  # the reports land where it runs
    said = json.loads((tmp_path / "reports" / "summary.json").read_text())  # no validate_arch.sh outside a checkout
    assert said["run"]["command"].startswith("archval --family llama")
    assert {r["replay"] for r in said["records"]} == {f"archval --family llama --graph {g}" for g in ("prefill", "decode")}


@pytest.mark.parametrize("alter,said", [(False, "2 passed, 6 skipped"), (True, "2 failed, 6 skipped")])
def test_a_downstream_project_runs_archvals_cases_with_the_plugin(installed, tmp_path, alter, said):
    bin_dir, env, _ = installed
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "my-emitter"\nversion = "0"\n')
    emitter = f"{bin_dir / 'python'} -m archval.altered_emitter" + (" --alter" if alter else "")
    proc = run([bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider", "--archval-emitter", emitter,
                "-m", "family_llama", "-n", "auto", "--archval-reports", tmp_path / "reports"], tmp_path, env)
    assert proc.returncode == (1 if alter else 0), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert said in proc.stdout.splitlines()[-1], proc.stdout[-3000:]
    assert "FAILED ::test_case[llama-prefill]" in proc.stdout or not alter  # archval's suite, outside the project
    assert (tmp_path / "reports" / "junit.xml").is_file()
    records = {r["graph"]: r for r in json.loads((tmp_path / "reports" / "summary.json").read_text())["records"]}
    if alter:  # as the gate: the failing prefill localised, each failing case's repro bundle written
        assert records["prefill"]["localisation"]["summary"].startswith("first divergence: layer 0 attention")
        assert all((tmp_path / "reports" / r["bundle"] / "run.sh").is_file() for r in records.values())
    else:
        assert all(r["bundle"] is None and r["localisation"] is None for r in records.values())


def test_pre_emitted_graphs_and_a_binding_with_the_installed_tool_and_plugin(installed, tmp_path):
    """--graphs and --binding from the wheel: the command and the plugin PASS a folder of token-returning graphs in
    a serving emitter's names, and the replay lines name the installed command."""
    bin_dir, env, _ = installed
    folder = tmp_path / "graphs" / "tiny-llama"
    folder.mkdir(parents=True)
    shutil.copy2(ROOT / "fixtures" / "llama" / "config.json", folder / "config.json")
    binding = shutil.copy2(ROOT / "tests" / "emitters" / "params.toml", tmp_path / "binding.toml")
    for graph in ("prefill", "decode"):  # emitted here, with this checkout's test emitter
        emitted = run([sys.executable, ROOT / "tests" / "emitters" / "conventions.py", "--tokens", "--config",
                       folder / "config.json", "--graph", graph, "--out", folder / f"{graph}.mlir"], ROOT, os.environ)
        assert emitted.returncode == 0, emitted.stderr
    gate = run([bin_dir / "archval", "--graphs", "graphs", "--binding", "binding.toml", "--jobs", "1"], tmp_path, env)
    assert gate.returncode == 0 and "2 passed, 0 failed" in gate.stdout, gate.stdout[-3000:] + gate.stderr[-3000:]
    said = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert {r["replay"] for r in said["records"]} == {
        f"archval --graphs graphs --family tiny-llama --graph {g} --binding binding.toml" for g in ("prefill", "decode")}
    proc = run([bin_dir / "python", "-m", "pytest", "-p", "no:cacheprovider", "--archval-graphs", "graphs",
                "--archval-binding", "binding.toml"], tmp_path, env)
    assert proc.returncode == 0 and "2 passed, 6 skipped" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


def installed_path() -> list[tuple[str, int]]:
    """README's commands for an installed archval after its set-up, each with the exit status its comment
    says (`(exit 1)`), else 0."""
    block = (ROOT / "README.md").read_text().split("```sh installed\n")[1].split("```")[0]
    found = []
    for line in block.splitlines():
        command, _, comment = (part.strip() for part in line.partition("  #"))
        if not command.startswith(SETUP):
            status = re.search(r"\(exit (\d)\)", comment)
            found.append((command, int(status[1]) if status else 0))
    return found


def test_the_readmes_installed_path_runs_as_it_says(installed, tmp_path):
    """A newcomer with the wheel and no checkout, typing README's commands: a PASS, a FAIL and its page, its
    bundle run by IREE's tools alone, a checkpoint built and validated; never a traceback."""
    _, env, _ = installed
    commands = installed_path()
    assert len(commands) == 5, commands
    made = {"--alter": "reports/llama.html", "run.sh": "reports/bundles/llama-prefill/out/call0-prefill-result0.npy",
            "make-checkpoint": "ckpt-llama/tokenizer.json", "--checkpoint": "reports/ckpt-llama.html"}
    for command, status in commands:
        proc = run(["bash", "-c", command], tmp_path, env)
        said = proc.stdout[-3000:] + proc.stderr[-3000:]
        assert proc.returncode == status and "Traceback" not in proc.stderr, (command, said)
        assert all((tmp_path / path).is_file() for word, path in made.items() if word in command), (command, said)


def test_an_installed_tools_errors_name_nothing_of_a_checkout(installed, tmp_path):
    """One sentence and exit 2 for a bad family, to archval and to make-checkpoint, naming no fixtures/ folder
    (the installed user has none)."""
    bin_dir, env, _ = installed
    for argv in (["--family", "nope"], ["make-checkpoint", "--family", "nope", "--out", "ckpt"]):
        proc = run([bin_dir / "archval", *argv], tmp_path, env)
        assert proc.returncode == 2 and proc.stdout == "", proc
        assert proc.stderr.startswith("error: --family nope: no ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "fixtures/" not in proc.stderr and "llama" in proc.stderr, proc.stderr
