"""What the serving graph kinds (prefill_chunked, decode_verify, prefill_embeddings) would add to a gate: one cold
run (an empty cache directory) of every graph kind on the families given, one worker, and each kind's share of the
cases' time from the records' timings (emit, oracle, compile, load, run, XLA's too). The work a family's cases share
(torch's import, the oracle's first run) falls to its first case, prefill, so the ratio understates nothing.

    .venv/bin/python bench/serving_kinds.py [FAMILY ...]      (default: llama gemma2 granite mixtral)

Figures, not assertions: the machines are shared and noisy; compare the ratios of one run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from archval.harness.core.kinds import KINDS  # noqa: E402 - the project root is not on the path of a script under bench/


def main(families: list[str]) -> int:
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as reports:
        command = [sys.executable, "-m", "archval", "--jobs", "1", "--reports", reports,
                   *(f"--family={f}" for f in families), *(f"--graph={k}" for k in KINDS)]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env={**os.environ, "ARCHVAL_CACHE_DIR": cache},
                              capture_output=True, text=True)
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
            return 1
        records = json.loads((Path(reports) / "summary.json").read_text())["records"]
    seconds = defaultdict(float)
    for r in records:
        seconds[r["graph"]] += sum(r["timings"].values())
    default = sum(t for k, t in seconds.items() if not KINDS[k].on_request)
    print(f"cold, one worker, {len(families)} families ({', '.join(families)}): wall {wall:.1f} s, "
          f"{len(records)} cases")
    for kind, t in seconds.items():
        print(f"  {kind:20} {t:7.1f} s  {t / default:6.1%} of the default kinds' {default:.1f} s")
    extra = sum(t for k, t in seconds.items() if KINDS[k].on_request)
    print(f"the serving kinds together: +{extra / default:.0%} over the default kinds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["llama", "gemma2", "granite", "mixtral"]))
