"""The fixture registry: fixtures/<case>/config.json (the family's config) + fixture.json (how to test it)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emitter.config_input import ConfigError, attribute, check_input, read_json_object
from harness import ROOT
from harness.core.record import FixtureFacts

FIXTURES_DIR = ROOT / "fixtures"
DEFAULT_BOUND = 1e-2  # the tanh-near-tie bound
DEFAULT_DECODE_STEPS = 16
DIMS = (("vocab", "vocab_size"), ("hidden", "hidden_size"), ("intermediate", "intermediate_size"),
        ("layers", "num_hidden_layers"), ("heads", "num_attention_heads"), ("kv heads", "num_key_value_heads"),
        ("head_dim", "head_dim"))


class FixtureError(ValueError):
    """A fixture that cannot be used; one sentence naming the file, field and value."""


@dataclass(frozen=True)
class Fixture:
    name: str
    config_path: Path
    config: dict
    seed: int
    prompt_len: int
    bound: float
    bound_reason: str | None
    purpose: str
    mutants: tuple[str, ...]  # deliberate bugs this fixture must catch (checks/mutants.py)
    decode_steps: int = DEFAULT_DECODE_STEPS
    replay: str | None = None  # the command that reruns it, where not `--family NAME` (a --config run)

    @property
    def model_type(self) -> str:
        return self.config.get("model_type", "?")

    def attribute(self, name: str):
        """A config value by transformers' attribute name, whatever key the family's config.json writes it under."""
        return attribute(self.config, name)

    def facts(self) -> FixtureFacts:
        """What a record keeps of the fixture: all that its page shows."""
        path = self.config_path.relative_to(ROOT) if self.config_path.is_relative_to(ROOT) else self.config_path
        dims = ", ".join(f"{label} {self.config[key]}" for label, key in DIMS if key in self.config)
        return FixtureFacts(str(path), self.purpose, dims, self.seed, self.prompt().tolist(), self.decode_steps,
                            self.bound, self.bound_reason)

    def prompt(self) -> np.ndarray:
        """The seeded prompt: token ids in [0, vocab)."""
        rng = np.random.default_rng([self.seed, 0x70])
        return rng.integers(0, self.config["vocab_size"], self.prompt_len).astype(np.int32)


def names() -> list[str]:
    return sorted(p.name for p in FIXTURES_DIR.iterdir() if (p / "fixture.json").is_file())


def load(name: str) -> Fixture:
    if not (FIXTURES_DIR / name / "fixture.json").is_file():
        raise FixtureError(f"no fixture named '{name}' (known: {', '.join(names())})")
    return load_dir(FIXTURES_DIR / name)


def load_dir(directory: Path) -> Fixture:
    """A fixture directory anywhere (a --config run writes its shrunk fixture to a temporary one)."""
    spec_path, config_path = directory / "fixture.json", directory / "config.json"
    spec, config = _json(spec_path), _json(config_path)
    try:  # what transformers' config class would refuse, refused before the oracle is built from it
        check_input(config, str(config_path))
    except ConfigError as e:
        raise FixtureError(str(e)) from None

    def need(field, kind, default=None):
        value = spec.get(field, default)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise FixtureError(f"{spec_path}: field '{field}' = {json.dumps(value)} must be {kind.__name__}.")
        return value

    bound = float(need("bound", (int, float), DEFAULT_BOUND))
    reason = spec.get("bound_reason")
    if bound > DEFAULT_BOUND and not reason:
        raise FixtureError(f"{spec_path}: field 'bound' = {bound} is looser than {DEFAULT_BOUND} "
                           "without a 'bound_reason'.")
    prompt_len, steps = need("prompt_len", int), need("decode_steps", int, DEFAULT_DECODE_STEPS)
    if steps < 1:
        raise FixtureError(f"{spec_path}: field 'decode_steps' = {steps} must be at least 1.")
    window = config.get("sliding_window")
    if isinstance(window, int) and prompt_len + steps <= window:  # the decode cache must outgrow the window
        raise FixtureError(f"{spec_path}: field 'decode_steps' = {steps} with prompt_len {prompt_len} never takes "
                           f"the cache past {config_path.name}'s sliding_window {window}.")
    replay = spec.get("replay")
    if replay is not None and not isinstance(replay, str):
        raise FixtureError(f"{spec_path}: field 'replay' = {json.dumps(replay)} must be str.")
    return Fixture(name=directory.name, config_path=config_path, config=config, seed=need("seed", int),
                   prompt_len=prompt_len, bound=bound, bound_reason=reason, purpose=spec.get("purpose", ""),
                   mutants=tuple(need("mutants", list, [])), decode_steps=steps,
                   replay=replay)


def _json(path: Path) -> dict:
    return read_json_object(path, FixtureError)
