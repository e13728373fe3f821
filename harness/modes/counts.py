"""The docs' deterministic counts, computed from the code and the fixtures:

    .venv/bin/python -m archval.harness.modes.counts

prints each as `name: value`. README.md and docs/*.md quote them; tests/test_docs.py holds every quoted one to
what this computes, so a fixture, a mutant or a published config added without its figures fails the suite (run
this, and write the new numbers where the test points). No oracle runs: a MoE config is one whose parsed flags
(checks/builtin.py) route layers through experts, as the moe_block kind finds them from the oracle.
"""
from __future__ import annotations

import sys

from ..checks import builtin, mutants, structural
from ..checks.self_test import family_mutants
from ..core import fixtures
from . import census

LOGIT_KINDS = ("prefill", "decode")  # every family's; moe_block besides for a MoE one


def routes_experts(flags: dict[str, str]) -> bool:
    return flags["moe"] != "None"


def counts() -> dict[str, int]:
    names = fixtures.names()
    flags = [dict(builtin.flags(fixtures.load(n).config_path)) for n in names]
    published = [c for c in structural.cases() if c.name.startswith("real/")]
    published_moe = sum(routes_experts(dict(builtin.flags(c.config_path))) for c in published)
    return {
        "fixtures": len(names),
        "fixture model types": len({f["model_type"] for f in flags}),
        "MoE fixtures": sum(map(routes_experts, flags)),
        "gate cases": len(LOGIT_KINDS) * len(names) + sum(map(routes_experts, flags)),
        "published configs": len(published),
        "published MoE configs": published_moe,
        "published cases": len(LOGIT_KINDS) * len(published) + published_moe,
        "structural cases": len(structural.cases()),
        "structural signatures": len(structural.GRAPHS) * len(structural.cases()),
        "mutant kinds": len(mutants.MUTANTS),
        "mutant cases": sum(len(family_mutants(n)) for n in names),
        "windowed fixtures": sum("window_by_position" in family_mutants(n) for n in names),
        "census decoder-only types": len(census.decoder_only_types()),
        "census types not decoder-only": len(census.not_decoder_only()),
    }


def main() -> int:
    for name, value in counts().items():
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
