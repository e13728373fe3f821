"""What a family costs cold, and how families are split: slowest first, and over N machines.

fixtures/costs.json is the measured table ({family: cold seconds}); a family it does not list
(a new fixture, a --config published config) costs the table's median. `assign` splits families
into N shards, longest first onto the least loaded shard, so that `--shard I/N` of the gate and
of pytest hold the same families; whatever has no cost (a test not about one family, a published
config's structural case) goes by a stable hash of its name.

    .venv/bin/python -m archval.harness.pool.shard --write-costs reports/summary.json   # after a cold full run
    .venv/bin/python -m archval.harness.pool.shard --show 3                              # the split over 3 shards
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from functools import cache
from pathlib import Path

from ..core import fixtures, summary
from ..core.files import write_json_atomic

COSTS_PATH = fixtures.FIXTURES_DIR / "costs.json"
ABOUT = "_about"


@cache
def table(path: Path = COSTS_PATH) -> dict[str, float]:
    """{family: cold seconds}, without the _about note."""
    return {k: float(v) for k, v in json.loads(path.read_text()).items() if k != ABOUT}


def cost(name: str) -> float:
    costs = table()
    return costs[name] if name in costs else statistics.median(costs.values())


def slowest_first(names) -> list[str]:
    """The order to start work in: the longest first, so that none starts last on an idle pool."""
    return sorted(dict.fromkeys(names), key=lambda n: (-cost(n), n))


def bins(names, count: int) -> list[list[str]]:
    """Longest processing time first: each family, slowest first, onto the least loaded shard
    (the lowest-numbered among equals). Deterministic; every name in exactly one shard."""
    loads, members = [0.0] * count, [[] for _ in range(count)]
    for name in slowest_first(names):
        least = min(range(count), key=lambda b: (loads[b], b))
        loads[least] += cost(name)
        members[least].append(name)
    return members


def assign(names, index: int, count: int) -> list[str]:
    """The names of shard index (1-based, of count), in the order given."""
    mine = set(bins(names, count)[index - 1])
    return [n for n in dict.fromkeys(names) if n in mine]


def by_hash(key: str, count: int) -> int:
    """The shard (1-based) of something without a cost: a stable hash of its name (never hash(),
    which is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % count + 1


def parse(value: str, option: str = "--shard") -> tuple[int, int]:
    """'I/N' -> (I, N); ValueError with one sentence naming the option and the value."""
    index, slash, count = value.partition("/")
    if not (slash and index.isdigit() and count.isdigit()):
        raise ValueError(f"{option} {value}: expected I/N, two whole numbers such as 1/4")
    index, count = int(index), int(count)
    if count < 1:
        raise ValueError(f"{option} {value}: N must be at least 1")
    if not 1 <= index <= count:
        raise ValueError(f"{option} {value}: I must be between 1 and N ({count})")
    return index, count


def measured(path: Path) -> dict[str, float]:
    """{family: the sum of every stage of every record of the family} from a gate's summary.json."""
    totals: dict[str, float] = {}
    for record in summary.read(path)[1]:
        totals[record.family] = totals.get(record.family, 0.0) + sum(record.timings.values())
    return {family: round(seconds, 1) for family, seconds in totals.items()}


def write_costs(summary_path: Path, path: Path = COSTS_PATH) -> dict[str, float]:
    """The table with every fixture family summary.json measured replaced; fixtures it did not run
    keep their cost, names that are no fixture (gone, or a --config run's) are dropped."""
    try:
        found = measured(summary_path)
    except ValueError as e:
        raise ValueError(f"{summary_path}: not a gate summary.json ({str(e).removeprefix(f'{summary_path}: ')})") \
            from None
    known = fixtures.names()
    if not set(found) & set(known):
        raise ValueError(f"{summary_path}: no fixture family in it, nothing to measure")
    old = json.loads(path.read_text())
    new = {n: found.get(n, old.get(n)) for n in known if n in found or n in old}
    write_json_atomic(path, {ABOUT: old[ABOUT], **new})
    table.cache_clear()
    return new


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m archval.harness.pool.shard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--write-costs", type=Path, metavar="SUMMARY",
                    help="rewrite fixtures/costs.json from a cold run's summary.json")
    ap.add_argument("--show", type=int, metavar="N", help="print the split of every fixture over N shards")
    args = ap.parse_args(argv)
    if args.write_costs:
        try:
            new = write_costs(args.write_costs)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{COSTS_PATH}: {len(new)} families, {sum(new.values()):.1f} s in all")
    if args.show:
        if args.show < 1:
            print(f"error: --show {args.show}: N must be at least 1", file=sys.stderr)
            return 2
        for i, members in enumerate(bins(fixtures.names(), args.show), 1):
            print(f"shard {i}/{args.show}: {sum(map(cost, members)):5.1f} s  {' '.join(members)}")
    if not (args.write_costs or args.show):
        ap.print_usage(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
