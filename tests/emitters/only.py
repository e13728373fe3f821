"""An external emitter for tests that implements some families only: the built-in one for the model_types
given, and for any other the protocol's refusal (exit 2, one sentence on stderr).

usage: only.py MODEL_TYPE[,MODEL_TYPE...] --config C --graph KIND --out FILE
"""
import json
import subprocess
import sys
from pathlib import Path

supported, rest = sys.argv[1].split(","), sys.argv[2:]
model_type = json.loads(Path(rest[rest.index("--config") + 1]).read_text()).get("model_type")
if model_type not in supported:
    print(f"only.py implements {' and '.join(supported)}, not {model_type}.", file=sys.stderr)
    sys.exit(2)
sys.exit(subprocess.call([sys.executable, "-m", "archval.emitter", *rest]))
