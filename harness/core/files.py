"""The one way archval writes a file: whole or not at all, readable like any other output.

A reader (a browser, a CI artifact server, a parallel worker) never sees half a file: the
content goes to a temporary file beside the target, then is renamed over it. mkstemp creates
that file 0600, so its mode is set to what open() would have given (0666 less the umask,
0644 usually) before the rename. An interrupted or failed write leaves the old file whole and
no temporary file behind.

The --reports directory is claimed before a run writes there (claimed): found new, empty or archval's own
(check_ours: a run writes over index.html and the other names it uses), created, found writable,
and locked against a concurrent gate by an exclusive flock(2) on DIR/.archval.lock (Linux and
macOS), held until the run ends. The operating system releases it when the process dies, however it
dies, so a stale lock file never blocks the next run; the file holds the holder's pid, for the message.

Scratch directories (an emission's output, a compilation's) are removed at the end of their block,
and by remove_scratch() when a worker is stopped and exits at once (pool/workers.py); only a process
killed outright (SIGKILL: nothing of it runs) leaves its own behind.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".archval.lock"
WRITTEN_LIST = ".archval-written.json"  # what a run wrote there (present/manifest.py)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()


_scratch: set[str] = set()  # scratch directories in use in this process


@contextlib.contextmanager
def scratch_directory(prefix: str) -> Iterator[Path]:
    path = tempfile.mkdtemp(prefix=prefix)
    _scratch.add(path)
    try:
        yield Path(path)
    finally:
        _scratch.discard(path)
        _remove(path)


def remove_scratch() -> None:
    """Every scratch directory still in use: for a process about to exit without unwinding (os._exit)."""
    for path in list(_scratch):
        _remove(path)


def _remove(path: str) -> None:
    """The directory and all in it, a folder an emitter left read-only too (as TemporaryDirectory does)."""
    for folder, _, _ in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def write_atomic(path: Path, content: str | bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
    except BaseException:  # interrupted or failed: the old file stays whole, and no temporary file is left
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, value) -> None:
    write_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


class ReportsError(Exception):
    """The directory cannot take this run's reports; one sentence."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def check_ours(directory: Path, option: str = "--reports") -> None:
    """ReportsError unless DIR is absent, empty, or an archval reports folder (an earlier run left its lock file
    or its list of what it wrote): a run writes index.html, summary.json and a page per family over whatever
    has those names, so a folder of someone's own files is refused, never written into."""
    try:
        entries = sorted(p.name for p in Path(directory).iterdir()) if Path(directory).is_dir() else []
    except OSError as e:
        raise ReportsError(f"{option} {directory}: cannot be listed ({_reason(e)})") from None
    if entries and not {LOCK_NAME, WRITTEN_LIST} & set(entries):
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ReportsError(f"{option} {directory}: holds files archval did not write ({shown}) and is no archval "
                           f"reports folder (no {LOCK_NAME}); give a new or empty folder")


@contextlib.contextmanager
def claimed(directory: Path):
    """with claimed(DIR): DIR exists, is writable and is this run's alone until the block ends."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ReportsError(f"--reports {directory}: is not a directory")
    check_ours(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportsError(f"--reports {directory}: cannot be created ({_reason(e)})") from None
    try:  # what the run will do: a temporary file beside the reports, renamed over them
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".archval-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ReportsError(f"--reports {directory}: is not writable ({_reason(e)})") from None
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ReportsError(f"--reports {directory}: its lock file cannot be opened ({_reason(e)})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ReportsError(f"--reports {directory}: cannot be locked ({_reason(e)})") from None
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise ReportsError(f"--reports {directory}: another gate run{f' (pid {holder})' if holder else ''} is "
                               "writing there; wait for it to finish or give another --reports") from None
        with contextlib.suppress(OSError):  # the pid is only for the message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        os.close(fd)  # releases the lock
