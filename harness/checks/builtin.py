"""What archval adds to a record of its own, built-in emitter: the flags it parsed from the config. Another
emitter's records get none: its reading of the config is its own."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ...emitter import Config
from ...emitter.config import ConfigError, Rope


# The Rope fields each RoPE type reads (emitter/rope.py); the others keep defaults that nothing reads, and
# listing them (a plain RoPE's llama3 and YaRN parameters) would say they apply.
ROPE_PARAMETERS = {
    "default": ("theta",),
    "linear": ("theta", "factor"),
    "dynamic": ("theta", "factor", "original_max_position"),
    "llama3": ("theta", "factor", "low_freq_factor", "high_freq_factor", "original_max_position"),
    "yarn": ("theta", "factor", "original_max_position", "attention_factor", "beta_fast", "beta_slow", "truncate"),
}


def flags(config_path: Path) -> list[tuple[str, str]]:
    """The family's Config as the built-in emitter parses it, field by field."""
    try:
        config = Config.from_json(config_path)
    except ConfigError as e:
        return [("refused", str(e))]
    return [(f.name, show(getattr(config, f.name))) for f in dataclasses.fields(config)]


def show(value) -> str:
    """A flag as the page shows it: a RoPE by the parameters its type reads, an empty list as none."""
    if isinstance(value, Rope):
        return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(value).items() if k == "kind" or _rope_reads(value, k))
    if dataclasses.is_dataclass(value):
        return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(value).items())
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _rope_reads(rope: Rope, name: str) -> bool:
    """A parameter of the RoPE's type, or one set away from its default (shown rather than hidden)."""
    default = next(f.default for f in dataclasses.fields(Rope) if f.name == name)
    return name in ROPE_PARAMETERS.get(rope.kind, (name,)) or getattr(rope, name) != default
