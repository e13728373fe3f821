"""docs/diagnosis.md's mutation section, rewritten from a --mutants run's mutants.json:

    ./validate_arch.sh --mutants --reports mutants-run
    .venv/bin/python bench/mutation_doc.py mutants-run/mutants.json --family gemma2 --took "38 min"

Between the markers `<!-- mutants: ... -->` and `<!-- /mutants -->` it writes the run's console output as the
self-test prints it (the header, one family's lines, every family's kill rate and the totals: the same functions
print them, present/console.py) and a paragraph of its figures: when, at which commit and on which machine the
run was made (mutants.json's run), the cases, kinds and fixtures, the refusals, and the smallest margin of each
blind spot over the families it applies to. Nothing else of the page is touched.
"""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archval.harness.checks.self_test import WEAK_MARGIN  # noqa: E402
from archval.harness.core import summary  # noqa: E402
from archval.harness.present.console import kill_summary, mutant_line  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md"
BLIND_SPOTS = ("eps_10x", "eps_tenth", "rope_by_slot", "decode_rope_by_cache_len", "position_input_ignored",
               "window_by_position")
MARKERS = re.compile(r"(<!-- mutants: .*? -->\n).*?(<!-- /mutants -->)", re.S)


def section(records, run, family: str, took: str) -> str:
    lines, ok = kill_summary(records, WEAK_MARGIN)
    header = "== mutation self-test: every applicable mutant must FAIL (the strict and the fixed bound)"
    shown = [mutant_line(r) for r in records if r.family == family]
    console = ["```console slow", "$ ./validate_arch.sh --mutants", header, "...", *shown, "...", *lines,
               f"RESULT: {'PASS' if ok else 'FAIL'}", "```"]
    kinds = {r.mutant.name for r in records}
    families = {r.family for r in records}
    spots = []
    for name in BLIND_SPOTS:
        rs = [r for r in records if r.mutant.name == name and r.mutant.margin is not None]
        if rs:
            worst = min(rs, key=lambda r: r.mutant.margin)
            spots.append(f"`{name}` {worst.mutant.margin:.2g}x ({worst.family}, {len(rs)} families)")
    commit = run.versions.get("archval", "unknown").removeprefix("git ")
    cpu = re.sub(r"^[^:;]*:\s*", "", run.host.cpu)  # /proc/cpuinfo's "model name\t: AMD EPYC"
    when = (f"Run on {run.started[:10]} at commit {commit} on a {run.host.cores}-core {cpu} (shared with "
            f"other work, so its time is an upper bound){', ' + took if took else ''}")
    figures = (f"{when}: {len(records)} cases of {len(kinds)} mutant kinds on the {len(families)} fixtures. "
               f"The blind spots' smallest margins over the families they apply to, at the strict bound: "
               + ", ".join(spots) + ".")
    return "\n".join(console) + "\n\n" + textwrap.fill(figures, 110) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mutants_json", type=Path)
    ap.add_argument("--family", default="gemma2", help="the family whose lines the console shows")
    ap.add_argument("--took", default="", help="the run's wall time, as --mutants printed it")
    args = ap.parse_args()
    run, records = summary.read(args.mutants_json)
    text = DOC.read_text()
    if not MARKERS.search(text):
        print(f"{DOC}: no <!-- mutants: ... --> ... <!-- /mutants --> markers", file=sys.stderr)
        return 2
    DOC.write_text(MARKERS.sub(lambda m: m.group(1) + section(records, run, args.family, args.took) + m.group(2),
                               text, count=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
