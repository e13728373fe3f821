"""An external emitter for tests: the built-in one run as a command, its prefill graph made to loop forever
at run time (a stablehlo.while whose condition is always true, its result the logits @main returns), a graph
that parses, binds and compiles, and never returns.

usage: loops.py --config C --graph KIND --out FILE [--debug-taps]
"""
import re
import subprocess
import sys
from pathlib import Path

args = sys.argv[1:]
code = subprocess.call([sys.executable, "-m", "archval.emitter", *args])
if code or args[args.index("--graph") + 1] != "prefill":
    sys.exit(code)
out = Path(args[args.index("--out") + 1])
text = out.read_text()
match = re.search(r"^(\s*)return (%\w+), (.*): (tensor<\d+xf32>), ", text, re.M)
if match is None:
    sys.exit("loops.py: no @main return of f32 logits to loop on")
indent, logits, _, kind = match.groups()
loop = (f"{indent}%loop_i = stablehlo.constant dense<0> : tensor<i32>\n"
        f"{indent}%loop:2 = stablehlo.while(%i = %loop_i, %acc = {logits}) : tensor<i32>, {kind}\n"
        f"{indent}  cond {{\n"
        f"{indent}    %go = stablehlo.compare GE, %i, %i : (tensor<i32>, tensor<i32>) -> tensor<i1>\n"
        f"{indent}    stablehlo.return %go : tensor<i1>\n"
        f"{indent}  }} do {{\n"
        f"{indent}    %twice = stablehlo.add %acc, %acc : {kind}\n"
        f"{indent}    stablehlo.return %i, %twice : tensor<i32>, {kind}\n"
        f"{indent}  }}\n")
out.write_text(text[:match.start()] + loop + text[match.start():].replace(f"return {logits}, ", "return %loop#1, ", 1))
