"""python -m archval.altered_emitter: the built-in emitter run as another emitter's command, its output altered on
request; the FAIL of README.md and docs/reading-a-fail.md, shipped so that an installed archval has it too.

usage: python -m archval.altered_emitter [--alter] [--no-taps] --config C --graph KIND --out FILE [--debug-taps]
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
    print("altered_emitter: error: unrecognized arguments: --debug-taps", file=sys.stderr)
    sys.exit(2)
code = subprocess.call([sys.executable, "-m", "archval.emitter", *args])
if code or not alter:
    sys.exit(code)
out = Path(args[args.index("--out") + 1])
text, count = re.subn(r"stablehlo\.rsqrt ", "stablehlo.sqrt ", out.read_text(), count=1)
if not count:
    sys.exit("altered_emitter: no stablehlo.rsqrt to alter")
out.write_text(text)
