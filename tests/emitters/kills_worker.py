"""A stand-in emitter for tests: for one model_type it SIGKILLs its parent (the gate's worker process,
as the OOM killer would), else it runs the built-in emitter.

usage: kills_worker.py MODEL_TYPE --config C --graph KIND --out FILE
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

model_type, rest = sys.argv[1], sys.argv[2:]
config = Path(rest[rest.index("--config") + 1])
if json.loads(config.read_text()).get("model_type") == model_type:
    os.kill(os.getppid(), signal.SIGKILL)
    sys.exit(1)
sys.exit(subprocess.call([sys.executable, "-m", "archval.emitter", *rest]))
