"""What archval adds to a record of its own, built-in emitter: the flags it parsed from the config. Another
emitter's records get none: its reading of the config is its own."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from archval.emitter import Config
from archval.emitter.config import ConfigError
from archval.harness.core.fixtures import Fixture
from archval.harness.core.record import Record


def flags(config_path: Path) -> list[tuple[str, str]]:
    """The family's Config as the built-in emitter parses it, field by field."""
    try:
        config = Config.from_json(config_path)
    except ConfigError as e:
        return [("refused", str(e))]

    def show(value) -> str:
        if dataclasses.is_dataclass(value):
            return ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(value).items())
        if isinstance(value, tuple):
            return ", ".join(map(str, value))
        return str(value)
    return [(f.name, show(getattr(config, f.name))) for f in dataclasses.fields(config)]


def annotate(record: Record, fixture: Fixture) -> None:
    """The built-in emitter's parsed flags."""
    record.emitter_flags = flags(fixture.config_path)
