"""The emitter code of tests/test_kinds.py's test-only graph kind: the final RMSNorm alone.

usage: final_norm.py [--eps-times K] --config C --graph final_norm --out FILE
Writes @main(hidden: f32[16, hidden], model.norm.weight: f32[hidden]) -> the normalised hidden
states; exits 2 for any other graph kind. --eps-times K plants a bug: epsilon K times the config's.
"""
import argparse
import json
import struct
import sys
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--eps-times", type=float, default=1.0)
ap.add_argument("--config", required=True)
ap.add_argument("--graph", required=True)
ap.add_argument("--out", required=True)
args = ap.parse_args()
config = json.loads(Path(args.config).read_text())
if args.graph != "final_norm":  # the protocol's refusal: exit 2, one sentence
    print(f"error: {args.config}: final_norm.py writes the final_norm graph only, not {args.graph}.", file=sys.stderr)
    sys.exit(2)
width, tokens = config["hidden_size"], 16


def f32(x: float) -> str:
    return "0x" + struct.pack(">f", x).hex().upper()


x, v = f"tensor<{tokens}x{width}xf32>", f"tensor<{tokens}xf32>"
Path(args.out).write_text(f"""module @final_norm {{
  func.func public @main(%hidden: {x} loc("hidden"), %w: tensor<{width}xf32> loc("model.norm.weight")) -> ({x}) {{
    %0 = stablehlo.multiply %hidden, %hidden : {x}
    %1 = stablehlo.constant dense<{f32(0.0)}> : tensor<f32>
    %2 = stablehlo.reduce(%0 init: %1) applies stablehlo.add across dimensions = [1] : ({x}, tensor<f32>) -> {v}
    %3 = stablehlo.constant dense<{f32(float(width))}> : tensor<f32>
    %4 = stablehlo.broadcast_in_dim %3, dims = [] : (tensor<f32>) -> {v}
    %5 = stablehlo.divide %2, %4 : {v}
    %6 = stablehlo.constant dense<{f32(config["rms_norm_eps"] * args.eps_times)}> : tensor<f32>
    %7 = stablehlo.broadcast_in_dim %6, dims = [] : (tensor<f32>) -> {v}
    %8 = stablehlo.add %5, %7 : {v}
    %9 = stablehlo.rsqrt %8 : {v}
    %10 = stablehlo.broadcast_in_dim %9, dims = [0] : ({v}) -> {x}
    %11 = stablehlo.multiply %hidden, %10 : {x}
    %12 = stablehlo.broadcast_in_dim %w, dims = [1] : (tensor<{width}xf32>) -> {x}
    %13 = stablehlo.multiply %11, %12 : {x}
    return %13 : {x}
  }}
}}
""")
