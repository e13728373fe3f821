"""Which tests a pytest run takes (harness/pytest_plugin.py's hooks): a marker per family and per graph kind,
-k with family names matched exactly, --archval-shard, and -n auto kept serial for a selection of one family.

Markers: family_<name> (the fixture's name, characters other than letters, digits and _ as _) on
every test parametrised over a family, graph_<kind> on every test of a graph kind; `-m family_llama`
selects exactly one family. `-k` keeps pytest's meaning but for one thing: a word that is a family's
name selects, among the tests parametrised over a family, exactly that family's (pytest alone matches
substrings, so `-k llama` would also run llama-llama3-rope's, `-k gemma` gemma2's and gemma3's).
`-n auto` with a -k or -m that selects at most one family runs serially: worker start-up (each
imports torch, IREE and XLA) costs more than one family's cases gain (docs/sharding-and-ci.md).
With an emitter, a -k word or family_ marker that names a model type with no committed fixture gets one
synthesised for the run (harness/modes/synthesised.py), as the gate's --family does.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from .core import fixtures
from .core.kinds import KINDS
from .modes import synthesised
from .pool import shard
from ..oracles.config_class import model_types


def marker(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def family_markers() -> dict[str, str]:
    """{fixture name: its marker}; two names that would share a marker are refused (neither could be selected)."""
    found = {name: marker("family", name) for name in fixtures.case_names()}
    twice = [m for m in set(found.values()) if list(found.values()).count(m) > 1]
    if twice:
        raise pytest.UsageError(f"fixtures {sorted(n for n, m in found.items() if m == twice[0])} share the "
                                f"marker {twice[0]}: rename one")
    return found


SYNTHESISED = pytest.StashKey[dict]()  # family -> its synthesised fixture's directory
SYNTHESISED_INPUT = "archval_synthesised"  # the same, as xdist hands it to each worker


def synthesise(config) -> None:
    """With an emitter, the model types with no fixture that -k or -m names get one synthesised, once, in the
    controlling process (as the gate's --family does); xdist's workers register the same directories."""
    given = getattr(config, "workerinput", {}).get(SYNTHESISED_INPUT)
    if given is not None:
        for directory in given.values():
            fixtures.register(Path(directory))
        return
    names = to_synthesise(config) if config.getoption("archval_emitter") is not None else []
    if not names:
        return
    try:
        config.stash[SYNTHESISED] = synthesised.register_all(names)
    except synthesised.SynthesisRefused as e:
        raise pytest.UsageError(f"-k/-m: {e}") from None


def to_synthesise(config) -> list[str]:
    """The model types with no committed fixture that -k names as words, or -m by their family_ markers: with an
    emitter, each gets a fixture synthesised for the run (harness/modes/synthesised.py)."""
    words = lambda option: re.findall(r"[\w.-]+", config.getoption(option) or "")
    marks = set(words("markexpr"))
    return sorted({w for w in words("keyword") if synthesised.synthesisable(w)} | {
        t for t in model_types() if marker("family", t) in marks and synthesised.synthesisable(t)})


def names_archval_cases(config) -> bool:
    """Whether -m names a family_ or graph_ marker, or -k a family by its name: a selection of archval's cases."""
    names = {name.lower() for name in fixtures.case_names()}
    marks = {*family_markers().values(), *(marker("graph", kind) for kind in KINDS)}
    words = lambda option: set(re.findall(r"[\w.-]+", config.getoption(option) or ""))
    return bool(words("markexpr") & marks) or any(w.lower() in names for w in words("keyword"))


def auto_workers(config) -> int | None:
    """-n auto: serial when -k/-m selects at most one family (none: cases of no family, a small selection);
    otherwise xdist's own choice."""
    from _pytest.mark.expression import Expression
    expressions = [(config.getoption("keyword"), "k"), (config.getoption("markexpr"), "m")]
    try:
        expressions = [(Expression.compile(e), how) for e, how in expressions if e]
    except Exception:  # noqa: BLE001 - not an expression: pytest says so, with its own usage error
        return None
    if not expressions:
        return None
    names = fixtures.case_names()
    selected = [name for name, mark in family_markers().items()
                if all(e.evaluate(_keyword_matcher(names, name, lambda w: w.lower() in f"{name} {mark}".lower())
                                  if how == "k" else lambda word, /, **_: word == mark) for e, how in expressions)]
    return 0 if len(selected) <= 1 else None


def _keyword_matcher(names: list[str], family: str | None, pytest_match):
    """-k's test of one word against one test: a word that is a family's name matches exactly that family's
    tests (when the test is of a family); any other word as pytest_match (pytest's substring match)."""
    lowered = {name.lower() for name in names}

    def match(word: str, /, **_) -> bool:
        if family is not None and word.lower() in lowered:
            return word.lower() == family.lower()
        return pytest_match(word)
    return match


def mark(config, items):
    """Before every other plugin's and conftest's collection hooks (-m among them): each test's family and
    graph markers; and -k taken over from pytest when its expression parses and the run has tests of a
    family. Returns the -k expression to select by afterwards (select()), or None: -k is pytest's alone."""
    from _pytest.mark.expression import Expression
    names = fixtures.case_names()
    marks = family_markers()
    for item in items:
        family = _family_of(item, names)
        if family:
            item.add_marker(marks[family])
        for kind in _kinds_of(item):
            item.add_marker(marker("graph", kind))
    expression = (config.getoption("keyword") or "").strip()
    if not expression or not any(_family_of(item, names) for item in items):
        return None
    try:
        compiled = Expression.compile(expression)
    except Exception:  # noqa: BLE001 - SyntaxError on pytest 9, ParseError on 8: pytest's own -k says what is wrong
        return None
    config.option.keyword = ""
    return compiled


def select(config, items, keyword) -> None:
    """After every other collection hook (so that -k sees the keywords and markers they add): -k with family
    names matched exactly (_keyword_matcher), then --archval-shard."""
    from _pytest.mark import KeywordMatcher
    names = fixtures.case_names()
    if keyword is not None:
        _deselect(config, items, [keyword.evaluate(_keyword_matcher(names, _family_of(item, names),
                                                                    KeywordMatcher.from_item(item)))
                                  for item in items])
    if config.getoption("archval_shard") is not None:
        index, count = shard.parse(config.getoption("archval_shard"))
        mine = set(shard.assign(names, index, count))

        def here(item) -> bool:  # a family's tests where the gate's shard puts the family, the rest by hash
            family = _family_of(item, names)
            return family in mine if family else shard.by_hash(item.nodeid, count) == index
        _deselect(config, items, [here(item) for item in items])


def _deselect(config, items, chosen: list[bool]) -> None:
    deselected = [item for item, keep in zip(items, chosen) if not keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item, keep in zip(items, chosen) if keep]


def _params(item) -> list:
    callspec = getattr(item, "callspec", None)
    return list(callspec.params.values()) if callspec else []


def _family_of(item, names: list[str]) -> str | None:
    """The fixture family a test is parametrised over: a parameter that is its name (or a case
    named after it, such as a StructuralCase)."""
    for value in _params(item):
        name = value if isinstance(value, str) else getattr(value, "name", None)
        if name in names:
            return name
    return None


def _kinds_of(item) -> set[str]:
    """The graph kinds a test is about: a parameter that names one, or a graph_<kind> marker it carries."""
    found = {value for value in _params(item) if isinstance(value, str) and value in KINDS}
    return found | {kind for kind in KINDS if item.get_closest_marker(marker("graph", kind))}
