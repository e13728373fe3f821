"""Every command the docs show runs, so the docs cannot drift.

README.md and docs/*.md are read for fenced ```sh and ```console blocks. Each command is run
here, in a copy of the project (so that no run writes into this checkout's reports/), as
validate_arch.sh runs it once .venv exists: `./validate_arch.sh ARGS` is `python -m archval
ARGS` and `.venv/bin/python` is this interpreter. A console block's output must be what the
command prints, measured numbers aside (masked; the counts of cases passed, failed... are
kept: KEPT) and where the block says `...` (any lines).
A block marked `slow` (the whole gate, the whole suite, every published config, the long
fuzz, all mutants) is too long for the suite: its commands must still be accepted by their
program's options, and SLOW says what runs each of them instead.

Figures: every deterministic count the docs quote (fixtures, model types, published configs, mutant kinds and
cases, census counts) is held to what `python -m archval.harness.modes.counts` computes (COUNTS below), so it
fails when one changes; a measured one (a time) is left free, but its paragraph or table must say when, at which
commit and on which machine it was measured (MEASURED).
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from archval.harness import ROOT
from archval.harness.cli import check_options, parser
from archval.harness.modes import counts as computed

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a slow command (as shown) -> what runs it instead
SLOW = {
    "./validate_arch.sh": "every case of the gate: tests/test_differential.py, test_blocks.py, test_structural.py",
    "./validate_arch.sh --setup && .venv/bin/python -m pytest -n auto": ".ci/run: this suite",
    "./validate_arch.sh --mutants": "tests/test_mutation.py (every mutant kind, and --mutants on one family)",
    "./validate_arch.sh --jobs 2 $(for f in fixtures/real/*/config.json; do printf -- '--config %s ' \"$f\"; done)":
        "tests/test_published.py, all of them with ARCHVAL_ALL_PUBLISHED=1",
    "ARCHVAL_ALL_PUBLISHED=1 .venv/bin/python -m pytest tests/test_published.py -k every":
        "tests/test_published.py::test_every_published_config_passes_after_shrinking",
    "ARCHVAL_ALL_PUBLISHED=1 .venv/bin/python -m pytest -n auto tests/test_published.py -k every":
        ".ci/run, every push: its own step",
    "ARCHVAL_FUZZ=long ARCHVAL_FUZZ_EXAMPLES=25 .venv/bin/python -m pytest -n 2 tests/test_fuzz.py":
        ".ci/run scheduled, nightly; tests/test_fuzz.py with its CI budget in every run",
    "./validate_arch.sh --shard $i/4 --reports shard-$i": "tests/test_shard.py (--shard, structural and numerical)",
    "./validate_arch.sh --merge shard-1 shard-2 shard-3 shard-4 --reports reports": "tests/test_shard.py (--merge)",
    **{f".venv/bin/python bench/checkpoint_bench.py {shape}": "tests/test_checkpoint.py: the same path on tiny "
       "checkpoints; the figures at scale are measured by hand (minutes, up to 16 GiB)" for shape in (
        "--hidden 2048 --layers 16 --intermediate 8192 --vocab 32000 --heads 32 --kv-heads 8 --keep ckpt-1b",
        "--hidden 3072 --layers 28 --intermediate 8192 --vocab 32000 --heads 24 --kv-heads 8 --keep ckpt-3b "
        "--archval-only",
        "--hidden 4096 --layers 32 --intermediate 11008 --vocab 32000 --heads 32 --kv-heads 32 --keep ckpt-7b "
        "--weights bf16 --archval-only")},
}
COPIED = ("archval", "harness", "emitter", "oracles", "fixtures", "tests", "examples", "bench", "docs", "pyproject.toml",
          "validate_arch.sh")


@dataclass
class Command:
    where: str  # file:line
    text: str  # as shown
    slow: bool
    output: list[str] | None  # a console block's expected output


def commands() -> list[Command]:
    found = []
    for path in DOCS:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = re.fullmatch(r"```(sh|console)( slow)?", lines[i])
            if not fence:
                i += 1
                continue
            end = lines.index("```", i + 1)
            body, where = lines[i + 1:end], f"{path.relative_to(ROOT)}:{i + 1}"
            if fence.group(1) == "sh":
                found += [Command(where, strip_comment(line), bool(fence.group(2)), None)
                          for line in body if line.strip() and not line.startswith("#")]
            else:
                starts = [k for k, line in enumerate(body) if line.startswith("$ ")] + [len(body)]
                found += [Command(where, body[a][2:], bool(fence.group(2)), body[a + 1:b])
                          for a, b in zip(starts, starts[1:])]
            i = end + 1
    return found


def strip_comment(line: str) -> str:
    """The command without a trailing `# ...` comment."""
    return re.sub(r"\s+#\s.*$", "", line).strip()


COMMANDS = commands()


def argv(command: str, python: str, cwd: Path) -> list[list[str]]:
    """The argv of each command of a `&&` chain, expanded by bash as a shell would (quotes, $i = 1, globs),
    as validate_arch.sh runs it once .venv exists."""
    chains = []
    for part in command.split("&&"):
        expanded = subprocess.run(["bash", "-c", f"i=1; set -- {part}; printf '%s\\0' \"$@\""], cwd=cwd,
                                  capture_output=True, text=True, check=True).stdout
        words = [w.replace(".venv/bin/python", python) for w in expanded.split("\0")[:-1]]
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # environment assignments
            words.pop(0)
        if words[0] == "./validate_arch.sh":
            words = [python, "-m", "archval", *words[1:]]
        chains.append(words)
    return chains


def test_every_slow_command_says_what_runs_it_instead_and_nothing_else_is_slow():
    assert {c.text for c in COMMANDS if c.slow} == set(SLOW)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.slow], ids=lambda c: c.where)
def test_a_slow_command_is_accepted_by_its_program(command):
    for words in argv(command.text, sys.executable, ROOT):
        if words[1:3] == ["-m", "archval"]:
            if words[3:] != ["--setup"]:  # validate_arch.sh's own option: set up and stop
                check_options(parser().parse_args(words[3:]))
        elif words[1:3] == ["-m", "pytest"]:
            options = [w for w, before in zip(words[3:], ["", *words[3:]]) if w != "-n" and before != "-n"]
            proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", *options],
                                  cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        elif words[1].startswith("bench/"):  # a benchmark's own argument parser
            spec = importlib.util.spec_from_file_location("bench_script", ROOT / words[1])
            script = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(script)
            script.parser().parse_args(words[2:])
        else:
            raise AssertionError(f"{command.where}: nothing checks {words[0]}")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project, so that a command's reports/ is its own."""
    copy = tmp_path_factory.mktemp("project")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        else:
            shutil.copy2(source, copy / name)
    return copy


# Counts a run prints that depend on nothing measured: how many cases passed, failed, ... and were signed.
KEPT = re.compile(r"\b\d+(?= (passed|failed|errors?|unsupported)\b)|(?<=structural: )\d+/\d+")
AS_LETTERS, AS_DIGITS = str.maketrans("0123456789", "abcdefghij"), str.maketrans("abcdefghij", "0123456789")


def masked(text: str, root: Path) -> str:
    """Numbers masked but the counts KEPT, whitespace runs collapsed, the project's path left out, and this
    interpreter named as the docs name it (argv() ran it for .venv/bin/python: a replay line repeats it)."""
    text = text.replace(f"{root}/", "").replace(sys.executable, ".venv/bin/python")
    text = KEPT.sub(lambda m: f"<{m.group(0).translate(AS_LETTERS)}>", text)
    text = re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", text)
    return " ".join(re.sub(r"<([a-j/]+)>", lambda m: m.group(1).translate(AS_DIGITS), text).split())


def matches(expected: list[str], actual: list[str]) -> bool:
    """Each run of expected lines between `...` lines is a run of the actual ones, in order; no `...` at an
    end means the output starts (or ends) there."""
    segments, current = [], []
    for line in expected + ["..."]:
        if line.strip() == "...":
            segments.append(current)
            current = []
        else:
            current.append(line)
    at = 0
    for k, segment in enumerate(segments):
        if not segment:
            continue
        starts = [s for s in range(at, len(actual) - len(segment) + 1) if actual[s:s + len(segment)] == segment]
        if not starts or (k == 0 and starts[0] != 0):
            return False
        at = starts[0] + len(segment)
    return at == len(actual) or not segments[-1]


def run_as_shown(command: Command, project: Path):
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("PYTEST_XDIST_WORKER", None)
    expect_fail = command.output is not None and "RESULT: FAIL" in command.output
    for words in argv(command.text, sys.executable, project):
        proc = subprocess.run(words, cwd=project, env=env, capture_output=True, text=True, timeout=900)
        said = proc.stdout + proc.stderr
        assert proc.returncode == (1 if expect_fail else 0), f"{command.where}: {command.text}\n{said[-3000:]}"
    if command.output is not None:
        actual = [masked(line, project) for line in proc.stdout.splitlines()]
        expected = [masked(line, project) for line in command.output]
        assert matches(expected, actual), f"{command.where}: {command.text} printed\n{proc.stdout}"


DOCS_WITH_COMMANDS = sorted({c.where.split(":")[0] for c in COMMANDS if not c.slow})


@pytest.mark.parametrize("doc", DOCS_WITH_COMMANDS)
def test_the_commands_of_a_doc_run_as_shown(doc, project):
    """In order, top to bottom, in one copy of the project: a command may use what one above it made
    (docs/checkpoints.md validates the checkpoint its first command builds)."""
    for command in COMMANDS:
        if not command.slow and command.where.startswith(f"{doc}:"):
            run_as_shown(command, project)


# Each quoted count: (doc, the phrase, its numbers named as harness/modes/counts.py names them, spaces as _).
COUNTS = [
    ("README.md", r"(?P<fixture_model_types>\d+) model types from (?P<fixtures>\d+) fixtures, and "
                  r"(?P<published_configs>\d+) published configs"),
    ("docs/published-configs.md", r"for all (?P<published_configs>\d+) published configs, as published"),
    ("docs/published-configs.md", r"All (?P<published_configs>\d+) published configs, after shrinking, PASS "
                                  r"\((?P<published_cases>\d+) cases: prefill and decode each, and the block check "
                                  r"of the (?P<published_MoE_configs>\d+) MoE ones"),
    ("docs/structural-goldens.md", r"the published configs of (?P<published_configs>\d+) checkpoints"),
    ("docs/structural-goldens.md", r"All (?P<published_configs>\d+) are signed today"),
    ("docs/structural-goldens.md", r"over all (?P<structural_cases>\d+) cases and both graphs "
                                   r"\((?P<structural_signatures>\d+) signatures\)"),
    ("docs/diagnosis.md", r"The catalogue now holds (?P<mutant_cases>\d+) cases of (?P<mutant_kinds>\d+) mutant kinds "
                          r"on the (?P<fixtures>\d+) fixtures"),
    ("docs/diagnosis.md", r"window_by_position` fails on all (?P<windowed_fixtures>\d+) fixtures with sliding"),
    ("docs/census.md", r"\*\*\d+ of (?P<census_decoder_only_types>\d+)\*\* decoder-only model types usable; "
                       r"(?P<census_types_not_decoder_only>\d+) causal-LM types are not decoder-only"),
    ("docs/sharding-and-ci.md", r"the (?P<published_configs>\d+) published configs, shrunk"),
]


@pytest.fixture(scope="module")
def counts() -> dict[str, int]:
    return {name.replace(" ", "_").replace("-", "_"): value for name, value in computed.counts().items()}


def prose(doc: str) -> str:
    """A doc's text with its line breaks as spaces (a phrase may wrap)."""
    return " ".join((ROOT / doc).read_text().split())


@pytest.mark.parametrize("doc,phrase", COUNTS, ids=[f"{d}:{p[:30]}" for d, p in COUNTS])
def test_a_quoted_count_is_what_the_code_computes(doc, phrase, counts):
    found = list(re.finditer(phrase, prose(doc)))
    assert found, f"{doc} no longer says /{phrase}/: quote the count again, or drop it from COUNTS"
    wrong = [f"{name} {quoted} (computed: {counts[name]})" for match in found
             for name, quoted in match.groupdict().items() if int(quoted) != counts[name]]
    assert not wrong, (f"{doc}: stale counts: {', '.join(wrong)}; .venv/bin/python -m archval.harness.modes.counts "
                       "prints them all")


def test_the_census_count_is_its_tables_rows():
    """The census's usable count is generated with its table (modes/census.py); the two must agree."""
    text = (ROOT / "docs/census.md").read_text()
    usable, total = map(int, re.search(r"\*\*(\d+) of (\d+)\*\*", text).groups())
    rows = [line for line in text.splitlines() if re.match(r"\| [\w-]+ \| (yes|no) \|", line)]
    assert (usable, total) == (sum("| yes |" in row for row in rows), len(rows))


TIMING = re.compile(r"(?<![\w.])~?\d+(\.\d+)?\s?(s|ms|min|minutes|seconds|hours?)\b")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
COMMIT = re.compile(r"\b(commit:?|at|by) [0-9a-f]{7,40}\b")
MACHINE = re.compile(r"AMD EPYC|2-core|2 cores")
# Times that are settings, limits or a message's example ("running: llama 42s"), not measurements.
NOT_MEASURED = re.compile(r"(default|within|after|every|up to) \d+ s\b|`[-$\w]+`,? \(?\d+ s\b|\b\d+s\b")


def paragraphs(doc: Path) -> list[str]:
    """A doc's paragraphs, a table joined to the paragraph before it (its caption); not the commands and their
    output, which this module runs."""
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        if paragraph.lstrip().startswith("|") and found:
            found[-1] += " " + paragraph
        else:
            found.append(paragraph)
    return [" ".join(p.split()) for p in found]


def test_every_measured_time_says_when_where_and_at_which_commit():
    undated = []
    for doc in DOCS:
        for paragraph in paragraphs(doc):
            rest = NOT_MEASURED.sub("", paragraph)
            if TIMING.search(rest) and not (DATE.search(paragraph) and COMMIT.search(paragraph)
                                             and MACHINE.search(paragraph)):
                undated.append(f"{doc.relative_to(ROOT)}: {TIMING.search(rest).group(0)} in: {paragraph[:100]}")
    assert not undated, "measured times without a date, a commit and the machine:\n" + "\n".join(undated)


def test_the_shard_table_is_what_the_cost_table_splits():
    from archval.harness.core import fixtures
    from archval.harness.pool import shard
    names, text = fixtures.names(), (ROOT / "docs/sharding-and-ci.md").read_text()
    assert f"by the table, {sum(shard.cost(n) for n in names):.1f} s in all" in text
    assert f"the {sum(n not in shard.table() for n in names)} fixtures added since cost its median" in prose(
        "docs/sharding-and-ci.md")
    for count in (2, 3, 4):
        row = ", ".join(f"{sum(shard.cost(n) for n in members):.1f}" for members in shard.bins(names, count))
        assert f"| {count} | {row} |" in text, f"docs/sharding-and-ci.md: --shard over {count}: {row}"


def test_the_ci_steps_the_docs_show_are_what_ci_runs():
    """docs/sharding-and-ci.md#ci shows .ci/run's steps; each is a line of .ci/run (the setup and the suite as one
    `&&` there, as the README shows them)."""
    ci = (ROOT / ".ci/run").read_text()
    shown = [c.text for c in COMMANDS if c.where.startswith("docs/sharding-and-ci.md") and "pytest" in c.text]
    assert len(shown) >= 3
    for command in shown:
        for part in command.split(" && "):
            assert re.search(rf"^\s*{re.escape(part)}\s*$", ci, re.M), f".ci/run does not run `{part}`"


def test_the_long_fuzz_covers_the_families_the_docs_count():
    spec = importlib.util.spec_from_file_location("fuzz", ROOT / "tests/test_fuzz.py")
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    assert f"examples on all {len(fuzz.VALID)} families" in prose("docs/reliability.md")
