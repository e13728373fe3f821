"""An external emitter for tests: the built-in one run as a command, its output altered on request.

usage: wraps.py [--alter] [--no-taps] --config C --graph KIND --out FILE [--debug-taps]
--alter: the first stablehlo.rsqrt (the first RMSNorm's 1/√(mean x² + eps)) becomes stablehlo.sqrt,
a graph that still compiles and runs but computes the wrong norm.
--no-taps: refuses --debug-taps as an emitter without the tap protocol does (exit 2, argparse's words).
"""
import re
import subprocess
import sys
from pathlib import Path

args = sys.argv[1:]
alter, no_taps = "--alter" in args, "--no-taps" in args
args = [a for a in args if a not in ("--alter", "--no-taps")]
if no_taps and "--debug-taps" in args:
    print("wraps.py: error: unrecognized arguments: --debug-taps", file=sys.stderr)
    sys.exit(2)
code = subprocess.call([sys.executable, "-m", "archval.emitter", *args])
if code or not alter:
    sys.exit(code)
out = Path(args[args.index("--out") + 1])
text, count = re.subn(r"stablehlo\.rsqrt ", "stablehlo.sqrt ", out.read_text(), count=1)
if not count:
    sys.exit("wraps.py: no stablehlo.rsqrt to alter")
out.write_text(text)
