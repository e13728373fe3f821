"""A hostile emitter for tests: misbehaves for the model_types named, else runs the built-in emitter.

usage: hostile.py MODEL_TYPE=MODE[,MODEL_TYPE=MODE...] --config C --graph KIND --out FILE
MODE:
  kill_group   SIGTERM to its own process group (`kill 0`), as a wrapper's `trap 'kill 0' EXIT` does
  hang         starts two grandchildren (one a double-forked daemon) that sleep, writes their pids, and hangs
  endless      writes to its output file without end (as `cat /dev/zero > out` would)
  escape       a grandchild leaves the session (setsid) holding stdout and stderr, sleeps; the graph is emitted
  big          writes $HOSTILE_BIG_BYTES (default 2 MiB) to its output file at once, then exits 0
  stderr       one line of $HOSTILE_STDERR_BYTES (default 50 MB) on stderr, no newline, then exits 1
The pids of every process it starts are appended to $HOSTILE_PIDS (a file), when set; every call
appends "MODEL_TYPE GRAPH" to $HOSTILE_LOG, when set.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

modes, rest = dict(m.split("=") for m in sys.argv[1].split(",")), sys.argv[2:]
config = Path(rest[rest.index("--config") + 1])
out = Path(rest[rest.index("--out") + 1])
model_type = json.loads(config.read_text()).get("model_type")
mode = modes.get(model_type)
if os.environ.get("HOSTILE_LOG"):
    with open(os.environ["HOSTILE_LOG"], "a") as f:
        f.write(f"{model_type} {rest[rest.index('--graph') + 1]}\n")


def note_pid(pid: int) -> None:
    if os.environ.get("HOSTILE_PIDS"):
        with open(os.environ["HOSTILE_PIDS"], "a") as f:
            f.write(f"{pid}\n")


if mode is None:
    sys.exit(subprocess.call([sys.executable, "-m", "archval.emitter", *rest]))
note_pid(os.getpid())
if mode == "kill_group":
    code = subprocess.call([sys.executable, "-m", "archval.emitter", *rest])  # a whole graph first: it still must not pass
    os.kill(0, signal.SIGTERM)
    time.sleep(5)
    sys.exit(code)
if mode == "hang":
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    note_pid(sleeper.pid)
    if os.fork() == 0:  # a daemon: double fork, reparented away from this process (still in its session)
        if os.fork() == 0:
            note_pid(os.getpid())
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL stops this one
            time.sleep(600)
        os._exit(0)
    time.sleep(600)
if mode == "escape":
    if os.fork() == 0:
        os.setsid()
        note_pid(os.getpid())
        time.sleep(600)
        os._exit(0)
    sys.exit(subprocess.call([sys.executable, "-m", "archval.emitter", *rest]))
if mode == "endless":
    chunk = b"\0" * 2 ** 20
    with open(out, "wb") as f:
        while True:
            f.write(chunk)
            f.flush()
if mode == "big":
    with open(out, "wb") as f:
        f.write(b"\0" * int(os.environ.get("HOSTILE_BIG_BYTES", 2 * 2 ** 20)))
    sys.exit(0)
if mode == "stderr":
    size, chunk = int(os.environ.get("HOSTILE_STDERR_BYTES", 50 * 10 ** 6)), b"x" * 2 ** 20
    while size > 0:
        sys.stderr.buffer.write(chunk[:size])
        size -= len(chunk)
    sys.stderr.flush()
    sys.exit(1)
sys.exit(f"hostile.py: unknown mode {mode}")
