"""`--config PATH`: validate a published config.json without its weights.

The config is checked, shrunk (checks/shrink.py) and written with a fixture.json into a
temporary fixture directory (never next to the user's file); the usual cases then run on
it. Seed and prompt are fixed (DEFAULT_SEED, PROMPT_LEN), so a run replays exactly. An MoE
config must route decisively (every token's k-th and (k+1)-th router logits more than
ROUTER_MARGIN apart over the prompt, its continuation and the block check's hidden
states), or fp32 noise could pick another expert: the next seed is tried, up to
SEED_TRIES, and the seed taken is reported; if none routes decisively, the config's cases
are ERRORs saying so.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...emitter import DEFAULT_BUCKET, ConfigError
from ...emitter.config_input import printable, read_json_object
from ...emitter.families import FAMILIES

from .shrink import ShrinkError, Shrunk, as_given, shrink
from ..core import fixtures
from ..core.record import PublishedFacts
from ..core.summary import command
from ...oracles.config_class import known

DEFAULT_SEED, PROMPT_LEN, SEED_TRIES = 1, 13, 8
# What a config validated as given holds per parameter: the oracle in f32 (its state dict shares it), the
# f64 oracle of the strict bound, the cache entry's copy while it is written, XLA's copy; plus the process.
AS_IS_BYTES_PER_PARAMETER, PROCESS_BYTES = 20, 3 << 29
ROUTER_MARGIN = 1e-3  # router logits; their fp32 error at this scale is ~1e-6
RESERVED_NAMES = ("index",)  # the report pages are <name>.html beside the reports' index.html


class PublishedConfigError(ValueError):
    """A config.json archval cannot take: one sentence naming file, field and value."""


@dataclass(frozen=True)
class Published:
    path: str          # as the user wrote it: the replay command repeats it
    fixture: fixtures.Fixture
    shrunk: Shrunk
    router_margin: float | None
    error: str | None  # no seed routes decisively: the config's cases are ERRORs with this message

    def facts(self) -> PublishedFacts:
        """What each record of the config keeps of it."""
        return PublishedFacts(self.path, list(self.shrunk.layers), list(self.shrunk.kept),
                              {f: [old, new] for f, old, new in self.shrunk.changes}, self.fixture.seed,
                              self.router_margin)


def read(path: Path) -> dict:
    raw = read_json_object(path, PublishedConfigError)
    model_type = raw.get("model_type")
    if isinstance(model_type, str) and model_type not in FAMILIES and isinstance(raw.get("auto_map"), dict):
        if not known(model_type):
            raise PublishedConfigError(
                f"{path}: field 'model_type' = {json.dumps(model_type)}: a trust_remote_code architecture "
                f"(auto_map {json.dumps(raw['auto_map'].get('AutoModelForCausalLM', raw['auto_map']))}) that "
                "transformers does not ship, so there is no in-tree oracle to validate against.")
    return raw


def label(path: Path) -> str:
    """The case's name: the checkpoint directory's, for a file named config.json, else the file's stem; it names
    the shrunk fixture's directory and the report page, so a character a file name should not hold becomes _.
    PublishedConfigError where no usable name is left, or where the page would be the reports' index."""
    name = Path(os.path.abspath(path)).parent.name if path.name == "config.json" else path.stem
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")
    if not re.search(r"[A-Za-z0-9]", safe):
        raise PublishedConfigError(f"{printable(str(path))}: no case name can be made of {json.dumps(name)}; name the "
                                   "file after its checkpoint, or save it as config.json in a directory so named.")
    if safe.casefold() in RESERVED_NAMES:
        raise PublishedConfigError(f"{printable(str(path))}: its case name '{safe}' would write the report page "
                                   f"{safe}.html over the reports' index; rename the file or its directory.")
    return safe


def prepare(path: str, workdir: Path, name: str, as_is: bool = False, replay: str | None = None) -> Published:
    """Shrink the config (as_is: take it as given, byte for byte, when it fits in memory) into workdir/name and
    choose the seed; PublishedConfigError for bad input. replay: the command that reruns it (default: --config)."""
    try:
        raw = read(Path(path))
        shrunk = as_given(raw, path) if as_is else shrink(raw, source=path)
    except (ConfigError, ShrinkError) as e:
        raise PublishedConfigError(str(e)) from None
    if as_is:
        check_fits(path, shrunk.config)
    directory = workdir / name
    directory.mkdir(parents=True)
    if as_is:  # the emitter reads exactly the user's bytes
        (directory / "config.json").write_bytes(Path(path).read_bytes())
    else:
        (directory / "config.json").write_text(json.dumps(shrunk.config, indent=2) + "\n")
    tried = []
    for seed in range(DEFAULT_SEED, DEFAULT_SEED + SEED_TRIES):
        (directory / "fixture.json").write_text(json.dumps({
            "seed": seed, "prompt_len": PROMPT_LEN, "as_given": as_is,
            "replay": replay or f"{command()} --config {shlex.quote(str(path))}" + (" --as-is" if as_is else ""),
            "purpose": f"{path} " + ("as given, seeded weights" if as_is else "shrunk to a tiny synthetic model")},
            indent=2) + "\n")
        try:
            fixture = fixtures.load_dir(directory)
        except fixtures.FixtureError as e:  # a window the case's prompt and steps never leave
            raise PublishedConfigError(str(e).replace(str(directory / "fixture.json"), path)) from None
        try:
            margin = router_margin(fixture)
        except Exception as e:  # noqa: BLE001 - the oracle failing is this config's ERROR, never the whole run's crash
            return Published(path, fixture, shrunk, None, f"the router check could not run the oracle: "
                                                           f"{type(e).__name__}: {e}")
        if margin is None or margin > ROUTER_MARGIN:
            return Published(path, fixture, shrunk, margin, None)
        tried.append(f"seed {seed}: {margin:.1e}")
    return Published(path, fixture, shrunk, margin, (
        f"no seed in {DEFAULT_SEED}..{DEFAULT_SEED + SEED_TRIES - 1} routes the shrunk model decisively (router "
        f"logit margin > {ROUTER_MARGIN:.0e}: {', '.join(tried)}), so fp32 noise could pick other experts"))


def check_fits(path: str, config: dict) -> None:
    """PublishedConfigError, with the estimate, for a config too large to validate as given here."""
    from ..core.checkpoint_files import GiB, available_memory
    from ...oracles.hf import checkpoint_tensors
    parameters = sum(int(np.prod(shape)) for shape in checkpoint_tensors(config).values())
    peak, available = PROCESS_BYTES + AS_IS_BYTES_PER_PARAMETER * parameters, available_memory()
    if available is not None and peak > available:
        raise PublishedConfigError(
            f"{path}: as given it has {parameters:,} parameters, an estimated {peak / GiB:.1f} GiB to validate "
            f"({AS_IS_BYTES_PER_PARAMETER} bytes per parameter), but {available / GiB:.1f} GiB is available; "
            "leave out --as-is to validate it shrunk.")


def router_margin(fixture: fixtures.Fixture) -> float | None:
    """Smallest gap between a token's k-th and (k+1)-th router logit, over the prompt and its greedy
    continuation in every routed layer, and over the block check's hidden states (a grouped router's: its group
    and its expert choices, Oracle.grouped_margin); None for a dense model. Logits, not probabilities: with many experts the k-th probability is small, and so is any gap between
    probabilities, however far apart the logits that order them are."""
    from ..core import oracle_cache as oracles
    from ..core.inputs import hidden_states
    ids = np.concatenate([fixture.prompt(), oracles.run(fixture).tokens[:-1]])
    hidden = hidden_states(fixture, DEFAULT_BUCKET, fixture.config["hidden_size"])
    return oracles.model(fixture).router_margin(ids, hidden)


def unread_fields(config: dict) -> list[str]:
    """The config's fields the oracle never reads (oracles/fields.py), said before anything runs."""
    from ...oracles.fields import unread
    from ...oracles.hf import binding
    try:
        b = binding(config["model_type"])
    except ValueError:  # no oracle class at all: the cases say so
        return []
    return unread(config, b.class_name, b.config(config))


def format_summary(p: Published) -> str:
    def show(v):
        return f"[{len(v)} entries]" if isinstance(v, list) and len(v) > 8 else json.dumps(v)
    seed = f"seed {p.fixture.seed}" + (f", router logit margin {p.router_margin:.2e}" if p.router_margin is not None else "")
    lines = [f"{p.fixture.name:<20} {p.path}  ({p.fixture.model_type}, {seed})",
             ("    shrunk: " + ", ".join(f"{f} {show(old)} -> {show(new)}" for f, old, new in p.shrunk.changes))
             if p.shrunk.changes else "    as given: " + p.fixture.facts().dims,
             "    kept:   " + "; ".join(p.shrunk.kept)]
    lines += [f"    not exercised: {note}" for note in p.fixture.not_exercised]
    unread = unread_fields(p.fixture.config)
    if unread:
        lines.append(f"    the oracle never reads: {', '.join(unread)} (its cases cannot be judged: ERROR, not a PASS or "
                     "a FAIL)")
    if p.error:
        lines.append(f"    {p.error}")
    return "\n".join(lines)
