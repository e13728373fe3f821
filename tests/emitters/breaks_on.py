"""A stand-in emitter for tests: fails or writes garbage for one model_type, else runs the built-in one.

usage: breaks_on.py MODEL_TYPE MODE --config C --graph KIND --out FILE   (MODE: exit | garbage | nothing | rename)
rename: the built-in graph with the final norm's argument named model.final_norm.weight, which the oracle lacks
"""
import json
import subprocess
import sys
from pathlib import Path

model_type, mode, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
config = Path(rest[rest.index("--config") + 1])
out = Path(rest[rest.index("--out") + 1])
if json.loads(config.read_text()).get("model_type") == model_type:
    if mode == "exit":
        sys.exit("breaks_on: refusing on purpose")
    if mode == "garbage":
        out.write_text("module @oops { this is not stablehlo }\n")
    if mode == "rename":
        code = subprocess.call([sys.executable, "-m", "archval.emitter", *rest])
        out.write_text(out.read_text().replace('loc("model.norm.weight")', 'loc("model.final_norm.weight")'))
        sys.exit(code)
    sys.exit(0)
sys.exit(subprocess.call([sys.executable, "-m", "archval.emitter", *rest]))
