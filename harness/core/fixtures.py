"""The fixture registry: fixtures/<case>/config.json (the family's config) + fixture.json (how to test it)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...emitter.config_input import ConfigError, attribute, check_input, implemented, layer_windows, read_json_object
from .. import ROOT
from . import config_fields
from ...oracles.config_class import known
from ...oracles.interface import CaseOracle
from .record import FixtureFacts

FIXTURES_DIR = ROOT / "fixtures"
DEFAULT_BOUND = 1e-2  # the tanh-near-tie bound
DEFAULT_DECODE_STEPS = 16
# Quiet tokens: vocabulary ids whose embeddings the oracle draws at RMS sqrt(rms_norm_eps) (oracles/hf.py), like
# the untrained reserved tokens of real checkpoints. In the first norm they meet, mean(x^2) is comparable to
# epsilon, so an epsilon read 10x off moves that norm's output by a factor (0.4x or 1.35x), not by 1e-5: the
# one config scalar no other input makes visible. Every QUIET_EVERY-th prompt token, counted back from the
# last (whose logits prefill compares), is one of them.
QUIET_TOKENS = (0, 1)
QUIET_EVERY = 4
# Positions apart from cache slots. RoPE sees only position differences, so a constant offset between
# positions and slots would let an emitter that rotates by slot pass; the gap changes instead: the prompt's
# second half sits POSITION_GAP positions further on (as after tokens dropped from a conversation), and
# decode steps DECODE_GAP more (position = cache_len + POSITION_GAP + DECODE_GAP). Masks and windows stay
# over slots, as transformers builds them from the cache length, not from position_ids.
POSITION_GAP, DECODE_GAP = 2, 1
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
    prompt_ids: tuple[int, ...] | None = None  # a given prompt (a --checkpoint run's), else a seeded one
    sizes: tuple[int, int] | None = None  # (prefill bucket, decode capacity) the emitter is told; None: its own
    dtype: str | None = None  # the compute dtype the emitter is asked for (--dtype); None: its own (f32)
    not_exercised: tuple[str, ...] = ()  # a config taken as given: its features this case cannot reach, in words
    # the oracle when it is not the seeded model of the config (a --checkpoint run's: core/checkpoint_oracle.py);
    # a case reaches either through oracle_cache.of(fixture)
    oracle: CaseOracle | None = field(default=None, compare=False)

    @property
    def vocab_size(self) -> int:
        """The vocabulary the prompt is drawn from: the config's, or its text config's (a multimodal class's)."""
        return self.config.get("vocab_size") or self.config.get("text_config", {}).get("vocab_size")

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
                            self.bound, self.bound_reason, list(self.not_exercised))

    def prompt(self) -> np.ndarray:
        """The given prompt, else the seeded one: token ids in [0, vocab), every QUIET_EVERY-th from the last a
        quiet token."""
        if self.prompt_ids is not None:
            return np.array(self.prompt_ids, np.int32)
        rng = np.random.default_rng([self.seed, 0x70])
        prompt = rng.integers(len(QUIET_TOKENS), self.vocab_size, self.prompt_len).astype(np.int32)
        quiet = np.arange(self.prompt_len - 1, -1, -QUIET_EVERY)
        prompt[quiet] = np.resize(np.array(QUIET_TOKENS, np.int32), len(quiet))
        return prompt

    def prompt_positions(self) -> np.ndarray:
        """The prompt's positions (RoPE's), at slots 0..prompt_len-1: a gap of POSITION_GAP half-way. A given
        prompt (a --checkpoint run's: its own weights, no quiet tokens) sits at its slots, as a real one would."""
        slots = np.arange(self.prompt_len, dtype=np.int32)
        if self.prompt_ids is not None:
            return slots
        return slots + POSITION_GAP * (slots >= self.prompt_len // 2).astype(np.int32)

    def decode_positions(self) -> np.ndarray:
        """The position of each decode step s = 1..decode_steps, whose cache slot is prompt_len + s - 1."""
        slots = np.arange(self.prompt_len, self.prompt_len + self.decode_steps, dtype=np.int32)
        return slots if self.prompt_ids is not None else slots + POSITION_GAP + DECODE_GAP


# Fixtures synthesised for this process's run (harness/modes/synthesised.py): family -> its directory.
_SYNTHESISED: dict[str, Path] = {}


def names() -> list[str]:
    """The committed fixtures."""
    return sorted(p.name for p in FIXTURES_DIR.iterdir() if (p / "fixture.json").is_file())


def case_names() -> list[str]:
    """The families whose cases a run has: the committed fixtures, then those synthesised for it."""
    return names() + sorted(n for n in _SYNTHESISED if n not in names())


def register(directory: Path) -> None:
    """A synthesised fixture's directory (named after its family), loaded by load() as a committed one is."""
    _SYNTHESISED[directory.name] = directory


def load(name: str) -> Fixture:
    if name in _SYNTHESISED and not (FIXTURES_DIR / name / "fixture.json").is_file():
        return load_dir(_SYNTHESISED[name])
    if not (FIXTURES_DIR / name / "fixture.json").is_file():
        raise FixtureError(f"no fixture named '{name}' (known: {', '.join(names())})")
    return load_dir(FIXTURES_DIR / name)


def load_dir(directory: Path) -> Fixture:
    """A fixture directory anywhere (a --config run writes its shrunk fixture to a temporary one)."""
    spec_path, config_path = directory / "fixture.json", directory / "config.json"
    spec, config = _json(spec_path), _json(config_path)
    try:  # what transformers' config class would refuse, refused before the oracle is built from it
        windows = _windows(config, str(config_path))
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
    # archval's own fixtures must make every feature bite; a config taken as given is validated as it is, and
    # what its case cannot reach is said instead
    problems = _unreached(config, windows, prompt_len, steps, config_path.name)
    as_given = spec.get("as_given", False)
    if problems and not as_given:
        raise FixtureError(f"{spec_path}: {problems[0][0]}")
    replay = spec.get("replay")
    if replay is not None and not isinstance(replay, str):
        raise FixtureError(f"{spec_path}: field 'replay' = {json.dumps(replay)} must be str.")
    return Fixture(name=directory.name, config_path=config_path, config=config, seed=need("seed", int),
                   prompt_len=prompt_len, bound=bound, bound_reason=reason, purpose=spec.get("purpose", ""),
                   mutants=tuple(need("mutants", list, [])), decode_steps=steps,
                   replay=replay, not_exercised=tuple(note for _, note in problems) if as_given else ())


def _unreached(config: dict, windows: list[int | None], prompt_len: int, steps: int,
               name: str) -> list[tuple[str, str]]:
    """(the refusal of an own fixture that cannot exercise a feature of its config, the note a config taken as
    given gets instead) for each such feature."""
    found = []
    window = config.get("sliding_window")
    if isinstance(window, int) and prompt_len + steps <= window:  # the decode cache must outgrow the window
        found.append((f"field 'decode_steps' = {steps} with prompt_len {prompt_len} never takes the cache past "
                      f"{name}'s sliding_window {window}.",
                      f"sliding_window {window}: the prompt ({prompt_len} tokens) and {steps} decode "
                      f"steps never take the cache past it"))
    reach = prompt_reach(windows)
    if reach < prompt_len - 1:  # a slip in how those tokens are attended to could never show in a logit
        found.append((f"field 'prompt_len' = {prompt_len}: through {name}'s sliding windows the last prompt token "
                      f"reaches {reach} tokens back, so prompt tokens 0..{prompt_len - 2 - reach} reach no compared "
                      "logit; add layers or widen the window.",
                      f"prompt tokens 0..{prompt_len - 2 - reach} reach no compared logit through the sliding windows "
                      f"(the last token sees {reach} back)"))
    return found


def _windows(config: dict, source: str) -> list[int | None]:
    """Each layer's sliding window, once the config is checked: against transformers' own config class (where it
    has one: MiMo's oracle is a stand-in's) and, for a family of the built-in emitter, its tables, which also
    know the layer schedules its configs leave to the class."""
    model_type = config.get("model_type")
    klass = config_fields.check(config, source) if not implemented(model_type) or known(model_type) else None
    if implemented(model_type):
        return layer_windows(config, check_input(config, source))
    return config_fields.layer_windows(config, klass)


def prompt_reach(windows: list[int | None]) -> float:
    """How many tokens back the last token's logits can see through layers with these windows: a window w
    looks w - 1 tokens back and each layer adds its look-back; one full-attention layer sees everything."""
    return float("inf") if None in windows else sum(w - 1 for w in windows)


def _json(path: Path) -> dict:
    return read_json_object(path, FixtureError)
