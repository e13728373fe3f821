"""Whether IREE's results depend on its driver or its threads: each family's prefill and decode logits (the
graphs the built-in emitter writes, the fixture's weights and tokens) on `local-sync` and on `local-task`
with 1 and 2 threads, compared bit for bit, with the time the calls took on each.

    .venv/bin/python bench/iree_threads.py [FAMILY ...]        (default: every fixture family)

Each configuration runs in a process of its own (IREE's driver reads its threads once per process), with
the cache directory shared, so that only the first compiles. Prints a line per configuration and, last,
`bit-identical: yes` or the families and graph kinds that differ; exit 1 if any differ.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATIONS = (("local-sync", 1), ("local-task", 1), ("local-task", 2))


def logits(driver: str, threads: int, families: list[str], out: Path) -> None:
    """In this process: every family's prefill and decode logits on IREE as configured, saved to out (.npz);
    prints the calls' total time."""
    sys.path.insert(0, str(ROOT))
    from archval.harness.backends import iree
    from archval.harness.core import fixtures
    from archval.harness.core.case import Case, new_record
    from archval.harness.core.emitter_protocol import DEFAULT_EMITTER
    from archval.harness.core.kinds import KINDS
    iree.DRIVER = driver
    iree.use_threads(threads)
    spent, execute = [0.0], iree.IreeModule.execute

    def timed(self, args, inputs):
        start = time.perf_counter()
        try:
            return execute(self, args, inputs)
        finally:
            spent[0] += time.perf_counter() - start

    iree.IreeModule.execute = timed
    arrays = {}
    for family in families:
        fixture, texts = fixtures.load(family), {}
        for kind in ("prefill", "decode"):
            case = Case(fixture, KINDS[kind], DEFAULT_EMITTER, texts, new_record(fixture, kind))
            arrays[f"{family}:{kind}"] = np.asarray(KINDS[kind].actual(case, iree.IREE))
    np.savez(out, **arrays)
    print(f"{driver} {threads} thread(s): {len(arrays)} graphs, IREE calls {1e3 * spent[0]:.0f} ms", flush=True)


def main(families: list[str]) -> int:
    if not families:
        sys.path.insert(0, str(ROOT))
        from archval.harness.core import fixtures
        families = fixtures.names()
    with tempfile.TemporaryDirectory(prefix="archval-iree-threads-") as tmp:
        saved = []
        for driver, threads in CONFIGURATIONS:
            out = Path(tmp) / f"{driver}-{threads}.npz"
            subprocess.run([sys.executable, __file__, "--one", driver, str(threads), str(out), *families], check=True)
            saved.append(np.load(out))
        first, differ = saved[0], set()
        for other in saved[1:]:
            differ |= {k for k in first.files if not np.array_equal(first[k], other[k])}
    print("bit-identical: yes" if not differ else f"bit-identical: no: {', '.join(sorted(differ))}")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        logits(sys.argv[2], int(sys.argv[3]), sys.argv[5:], Path(sys.argv[4]))
    else:
        sys.exit(main(sys.argv[1:]))
