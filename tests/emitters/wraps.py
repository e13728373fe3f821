"""An external emitter for tests: the built-in one run as a command, its output altered on request.

usage: wraps.py [--alter] --config C --graph KIND --out FILE
--alter: the first stablehlo.rsqrt (the first RMSNorm's 1/√(mean x² + eps)) becomes stablehlo.sqrt,
a graph that still compiles and runs but computes the wrong norm.
"""
import re
import subprocess
import sys
from pathlib import Path

args = sys.argv[1:]
alter = "--alter" in args
if alter:
    args.remove("--alter")
code = subprocess.call([sys.executable, "-m", "emitter", *args])
if code or not alter:
    sys.exit(code)
out = Path(args[args.index("--out") + 1])
text, count = re.subn(r"stablehlo\.rsqrt ", "stablehlo.sqrt ", out.read_text(), count=1)
if not count:
    sys.exit("wraps.py: no stablehlo.rsqrt to alter")
out.write_text(text)
