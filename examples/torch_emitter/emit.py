"""archval emitter protocol: emit.py --config C --graph {prefill,decode} --out F [--debug-taps] [--bucket Lp] [--capacity C]

Lowers the family's own transformers model to StableHLO (lower.py: torch.export, then torch-mlir),
for any model type whose causal-LM class runs on transformers' attention cache. Exit 2 with one
sentence on stderr for a config or graph kind it refuses.
"""
import argparse
import json
import os
import sys
import traceback
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lower import Refused, lower  # after the path: lower.py and taps.py sit beside this file
from taps import NoTaps

PREFILL_BUCKET = 16   # Lp: prompt slots in prefill (a fixture's 13 tokens and the positions' gap)
CAPACITY = 32         # C: decode cache slots (prompt + 16 decode steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--graph", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--debug-taps", action="store_true")
    parser.add_argument("--bucket", type=int, default=PREFILL_BUCKET)
    parser.add_argument("--capacity", type=int, default=CAPACITY)
    args = parser.parse_args(argv)
    if args.graph not in ("prefill", "decode"):
        return refuse(f"graph kind {args.graph!r} is not lowered by this example (prefill and decode only)")
    if args.debug_taps and args.graph != "prefill":
        return refuse("--debug-taps comes with --graph prefill only")
    with open(args.config) as f:
        config = json.load(f)
    warnings.simplefilter("ignore")  # torch.export's and transformers' deprecation notes are no diagnosis
    try:
        text = lower(config, args.graph, args.bucket, args.capacity, args.debug_taps)
    except (Refused, NoTaps) as e:
        return refuse(str(e))
    except Exception as e:  # the traceback for whoever debugs, then one line last: the record keeps it
        traceback.print_exc()
        print("examples/torch_emitter: " + " ".join(f"{type(e).__name__}: {e}".split()), file=sys.stderr)
        return 1
    with open(args.out, "w") as f:
        f.write(text)
    return 0


def refuse(sentence):
    print("examples/torch_emitter: " + " ".join(sentence.split()), file=sys.stderr)  # one line: the record keeps the last
    return 2


if __name__ == "__main__":
    sys.exit(main())
