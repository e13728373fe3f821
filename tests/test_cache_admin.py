"""`python -m archval cache info|prune`: the cache directory's size by kind, and pruned to a bound, least
recently used first (a hit counts as a use); and an emitter that cannot run refused up front."""
import os

import pytest

from archval.harness.cli import main
from archval.harness.core import cache


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.DIR_ENV, str(tmp_path))
    return tmp_path


def entry(directory, name: str, size: int, used: float):
    path = directory / name
    cache.write_entry(path, b"x" * (size - 32))  # the checksum trailer makes up the rest
    os.utime(path, (used, used))
    return path


def test_info_says_the_size_by_kind(cache_dir, capsys):
    entry(cache_dir, "a.vmfb", 2048, 1e9)
    entry(cache_dir, "b.vmfb", 1024, 1e9)
    entry(cache_dir, "c.oracle", 1024, 1e9)
    assert main(["cache", "info"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith(f"{cache_dir}: 4.0 KiB in 3 entries")
    assert said[1].split() == ["vmfb", "2", "entries", "3.0", "KiB"]
    assert said[2].split() == ["oracle", "1", "entries", "1.0", "KiB"]


def test_prune_removes_the_least_recently_used_until_it_fits(cache_dir, capsys):
    old, used, new = (entry(cache_dir, f"{n}.vmfb", 1024, t) for n, t in (("old", 1e9), ("used", 1e9 + 1), ("new", 2e9)))
    assert cache.read_entry(used) is not None  # a hit makes it the most recently used
    assert main(["cache", "prune", "--max-size", "2k"]) == 0
    assert sorted(p.name for p in cache_dir.iterdir()) == ["new.vmfb", "used.vmfb"]
    assert "removed 1 least recently used entries (1.0 KiB); 2.0 KiB left" in capsys.readouterr().out
    assert main(["cache", "prune", "--max-size", "0"]) == 0
    assert list(cache_dir.iterdir()) == []


@pytest.mark.parametrize("argv", [["cache", "prune"], ["cache", "prune", "--max-size", "lots"],
                                  ["cache", "info", "--max-size", "1G"]])
def test_a_bad_cache_command_is_a_usage_error(cache_dir, argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_an_emitter_that_cannot_run_is_refused_before_any_case(capsys):
    assert main(["--family", "llama", "--emitter", "no-such-command --flag"]) == 2
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err == ("error: --emitter 'no-such-command --flag': no-such-command is no executable (not on PATH, "
                        "or not a file that may be run)\n")
