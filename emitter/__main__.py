"""python -m archval.emitter --config CONFIG.json --graph KIND --out FILE.mlir [--debug-taps] [--batch B]
[--dtype {f32,bf16}] [--weights {f32,bf16,f16}]

KIND: prefill, decode, moe_block; on request prefill_chunked, decode_verify, prefill_embeddings,
decode_batched, decode_paged."""
import argparse
import os
import sys
import tempfile
from pathlib import Path

from . import (BLOCKS, COMPUTE_DTYPES, DEFAULT_BATCH, DEFAULT_BUCKET, DEFAULT_CAPACITY, GRAPHS, SERVING,
               WEIGHT_DTYPES, Config, ConfigError, emit)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archval.emitter", description=__doc__)
    ap.add_argument("--config", required=True, help="the family's config.json")
    ap.add_argument("--graph", required=True, choices=GRAPHS + BLOCKS + SERVING)
    ap.add_argument("--out", required=True, help="where to write the StableHLO text")
    ap.add_argument("--bucket", type=int, default=DEFAULT_BUCKET, help="prefill's (prefill_chunked's, prefill_embeddings', moe_block's) tokens (default %(default)s)")
    ap.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY, help="decode cache slots (default %(default)s)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                    help="decode_batched and decode_paged: sequences per call (default %(default)s)")
    ap.add_argument("--debug-taps", action="store_true",
                    help="prefill only: also return every layer's attention, MLP and layer outputs")
    ap.add_argument("--dtype", choices=COMPUTE_DTYPES, default="f32",
                    help="what matmuls and activations compute in (default %(default)s; bf16: docs/reduced-precision.md)")
    ap.add_argument("--weights", choices=WEIGHT_DTYPES, default="f32",
                    help="the weight arguments' type, as the checkpoint stores them, upcast inside (default %(default)s)")
    args = ap.parse_args(argv)
    if args.debug_taps and args.graph != "prefill":
        ap.error("--debug-taps exists for --graph prefill only")
    try:
        text = emit(Config.from_json(args.config), args.graph, args.bucket, args.capacity, taps=args.debug_taps,
                    batch=args.batch, dtype=args.dtype, weights=args.weights)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
