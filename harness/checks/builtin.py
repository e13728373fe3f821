"""What archval adds to a record of its own, built-in emitter: the flags it parsed from the config, and,
for a failing prefill, where the graph fails (it can re-emit the graph with debug taps). Another
emitter's records get neither: its reading of the config is its own."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from emitter import Config
from emitter.config import ConfigError
from harness.core.case import failed
from harness.core.fixtures import Fixture
from harness.core.record import FAIL, Record


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


def annotate(record: Record, fixture: Fixture, localise: bool = True) -> None:
    """The flags; with localise, the localisation of a failing prefill record. A localisation that fails
    says so in the record and makes it an ERROR at stage 'localisation' (the FAIL kept in its message):
    a check that did not run to its end never leaves a verdict standing."""
    record.emitter_flags = flags(fixture.config_path)
    if localise and record.graph == "prefill" and record.verdict == FAIL:
        from harness.checks import localise as taps
        try:
            record.localisation = taps.localise(fixture)
        except Exception as e:  # noqa: BLE001 - said in the record, never raised
            record.localisation = taps.failed(e)
            failed(record, "localisation", e)
