"""The emitter protocol: `CMD --config C --graph KIND --out FILE`, exit 0 with the text written,
exit 2 with one sentence for a config it refuses (docs/emitter-protocol.md).

The built-in emitter is run the same way, as the module `python -m archval.emitter`, but inside this
process (same argv, exit code and file, without a Python start per graph, which would
dominate a structural run); any other command runs as a subprocess, contained (core/contained_process.py:
its own session, a time limit, bounded output, no process of it left behind). It runs in the directory
archval was started in (validate_arch.sh starts it in the checkout's root), so that the paths of the
command are the user's: `--config` is given relative to that directory when the config is inside it,
else absolute, and --emitter is checked against it before anything runs.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.metadata
import io
import re
import shlex
import shutil
import signal
import sys
import threading
from pathlib import Path

from ...emitter.config_input import printable
from .. import ROOT
from . import contained_process
from .files import scratch_directory

DEFAULT_EMITTER = (sys.executable, "-m", "archval.emitter")
BUILTIN_EMITTER = "built-in (python -m archval.emitter)"  # how the reports name it
PRE_EMITTED = ("pre-emitted",)  # --graphs: the graph files were given, no emitter runs
PRE_EMITTED_EMITTER = "none: pre-emitted graph files (--graphs)"  # how the reports name it
_IN_PROCESS = threading.Lock()  # sys.argv and stderr are the process's own


def emitter_command(text: str | None, option: str = "--emitter") -> tuple[str, ...]:
    """The emitter option's text split as a shell would, or the built-in emitter where it is not given;
    ValueError, naming `option`, for text that is no command line, names no command (an unset variable
    must not validate the built-in) or names no program or Python script that exists here."""
    if text is None:
        return DEFAULT_EMITTER
    shown = printable(shlex.quote(text))
    try:
        command = tuple(shlex.split(text))
    except ValueError as e:
        raise ValueError(f"{option} {shown}: not a command line ({e})") from None
    if not command:
        raise ValueError(f"{option} {shown}: names no command (an empty variable?)")
    if shutil.which(command[0]) is None:  # refused once, up front, rather than as every case's ERROR
        raise ValueError(f"{option} {shown}: {printable(command[0])} is no executable (not on PATH, or not a file "
                         "that may be run)")
    # python's exit status for a script it cannot open is 2, the protocol's refusal: say it here instead
    if re.fullmatch(r"python[0-9.]*", Path(command[0]).name) and len(command) > 1 and command[1].endswith(".py") \
            and not Path(command[1]).is_file():
        raise ValueError(f"{option} {shown}: {printable(command[1])} is no file (relative to {Path.cwd()}, where "
                         "the emitter runs)")
    return command


def described(command) -> str:
    """An emitter as the reports name it: its command line, or the built-in one."""
    return {DEFAULT_EMITTER: BUILTIN_EMITTER, PRE_EMITTED: PRE_EMITTED_EMITTER}.get(tuple(command)) or \
        shlex.join(command)


class CaseError(RuntimeError):
    """The case could not be judged (emitter, binding or input problem): its ERROR."""


class EmitterRefused(CaseError):
    """The emitter exited 2: it refuses the config, with one sentence saying why."""


@functools.lru_cache(maxsize=1)
def builtin_identity() -> str:
    """What the built-in emitter's text is a function of besides its arguments and the config's bytes: its
    source (it reads no other file and no environment variable), Python's version and numpy's."""
    package = Path(importlib.import_module(DEFAULT_EMITTER[2]).__file__).parent
    h = hashlib.sha256(f"{sys.version}\0numpy {importlib.metadata.version('numpy')}".encode())
    for path in sorted(package.rglob("*.py")):
        h.update(b"\0" + path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _run_module(module: str, argv: list[str]) -> tuple[int, str]:
    """`python -m module argv...` in this process, as its __main__'s main(argv): (exit code, what it wrote to
    stderr). Not runpy: under pytest, an installed archval's packages load through pytest's assertion
    rewriter (as every pytest11 plugin's do), which runpy cannot run a module from."""
    err = io.StringIO()
    with _IN_PROCESS, contextlib.redirect_stderr(err):
        saved, sys.argv = sys.argv, [module, *argv]
        try:
            code = importlib.import_module(f"{module}.__main__").main(argv) or 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = saved
    return code, err.getvalue()


def emit(command, config_path: Path, graph: str, taps: bool = False, sizes: tuple[int, int] | None = None,
         dtype: str | None = None) -> str:
    """The text an emitter writes for one graph kind; CaseError (EmitterRefused for exit 2) when it fails.
    taps: ask for the localisation's debug taps too (--debug-taps, prefill only: docs/emitter-protocol.md#taps).
    sizes: (prefill bucket, decode capacity) passed as --bucket and --capacity, only where a case needs its
    own (a checkpoint's prompt and steps); elsewhere the emitter's defaults hold, and an emitter need not
    take the options. dtype: passed as --dtype (last), only where asked for (archval's --dtype)."""
    with scratch_directory("archval-emit-") as tmp:
        out, here = tmp / f"{graph}.mlir", Path.cwd()
        config = Path(config_path).resolve()
        given = config.relative_to(here) if config.is_relative_to(here) else config
        argv = ["--config", str(given), "--graph", graph, "--out", str(out), *(["--debug-taps"] if taps else [])]
        if sizes:
            argv += ["--bucket", str(sizes[0]), "--capacity", str(sizes[1])]
        if dtype:
            argv += ["--dtype", dtype]
        if tuple(command) == DEFAULT_EMITTER:
            returncode, said = _run_module(DEFAULT_EMITTER[2], ["--config", str(config), *argv[2:]])
        else:
            try:
                proc = contained_process.run([*command, *argv], out, cwd=here)
            except contained_process.EmitterProblem as e:
                raise CaseError(str(e)) from None
            returncode, said = proc.returncode, proc.stderr.strip() or proc.stdout.strip()
        said = (said.strip() or "(no output)").splitlines()[-1]
        if returncode == 2:  # the config named as the reports name it, relative to archval's fixtures' root
            shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
            raise EmitterRefused(said.removeprefix("error: ").replace(str(config), str(shown))
                                 .replace(str(given), str(shown)))
        if returncode < 0:
            raise CaseError(f"the emitter was killed by {_signal_name(-returncode)}: {said}")
        if returncode != 0:
            raise CaseError(f"the emitter exited with {returncode}: {said}")
        if not out.is_file() or out.stat().st_size == 0:
            raise CaseError(f"the emitter exited 0 but wrote nothing to {out.name}")
        try:
            return out.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise CaseError(f"the emitter's {out.name} is not UTF-8 text (byte {e.start})") from None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
