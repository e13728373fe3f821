"""A fixture synthesised for a model type archval has none for: `--family cohere2_moe --emitter CMD`.

The committed fixtures (fixtures/<case>/) stay for the families with goldens. Any other decoder-only
causal-LM model type of the installed transformers gets its fixture made here, as the census examines it
(harness/modes/census.py, in a forked process with its time limit): the tiny config of oracles/synth.py (the
class's defaults, sizes tiny, every feature switched on by field name), then the oracle run on the rules of
archval's fixtures (positions apart from slots, quiet rows, 16 greedy steps through its own cache). A type the
census refuses (it cannot be made to bite, or cannot run eagerly in fp32 on CPU) is refused with the census's
sentence. The config.json and fixture.json are a function of the model type and the installed transformers
alone (same bytes every run), written to the cache directory's synthesised/<model type>/ (the same path every
run, so that records and replays are too), and the case is named after the type.
The census's verdict is kept in the cache directory, keyed by all it depends on (SOURCES, the libraries, the
machine), so that the type is examined once per machine; a time limit or a crash is examined again next time.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
from pathlib import Path

from .. import ROOT
from ..core import cache, files, fixtures, host
from . import census
from ...oracles.config_class import known


SOURCES = ("oracles/synth.py", "oracles/hf.py", "oracles/fields.py", "harness/modes/census.py")


class SynthesisRefused(ValueError):
    """No fixture can be synthesised for the name: one sentence saying why."""


def synthesisable(name: str) -> bool:
    """Whether the name could be a model type to synthesise: no committed fixture has it, transformers a config
    class (decided without importing torch; census_verdict() decides the rest)."""
    return name not in fixtures.names() and known(name)


def home() -> Path:
    """Where synthesised fixtures are written: the cache directory's synthesised/."""
    return cache.cache_dir() / "synthesised"


def register_all(names: list[str], workdir: Path | None = None) -> dict[str, str]:
    """Each name's fixture synthesised (into workdir, default home()) and registered for fixtures.load();
    {name: its directory}."""
    made = {name: str(prepare(name, workdir).config_path.parent) for name in names}
    for directory in made.values():
        fixtures.register(Path(directory))
    return made


def _verdict(model_type: str) -> census.Result:
    """census.examine(), for a decoder-only causal-LM model type only (in the forked process: it imports torch)."""
    from ...oracles import hf  # noqa: F401 - transformers' notices on default configs silenced, as in the oracle
    if model_type not in census.decoder_only_types():
        why = census.not_decoder_only().get(model_type, "transformers has no causal-LM class for it")
        return census.Result(model_type, False, f"not a decoder-only causal-LM model type ({why})")
    return census.examine(model_type)


class _Unsettled(Exception):
    """A verdict not to keep: the type hit the time limit or its process died (a loaded machine's, perhaps)."""


def examined(model_type: str) -> census.Result:
    """The census's verdict on model_type, from the cache directory or examined in a forked process now."""
    def compute():
        result = census.isolated(model_type, census.TIME_LIMIT_S, how=_verdict)
        if result.reason.startswith(("it did not finish", "its process died")):  # census.isolated's own sentences
            raise _Unsettled(result)
        return {}, dataclasses.asdict(result)

    identity = ", ".join([f"{p} {importlib.metadata.version(p)}" for p in ("torch", "transformers")]
                         + [f"{s} {hashlib.sha256((ROOT / s).read_bytes()).hexdigest()}" for s in SOURCES]
                         + [host.cpu_identity()])
    path = cache.cache_dir() / f"{cache.key('synthesised', model_type, identity)}.census"
    try:
        return census.Result(**cache.stored_arrays(path, compute)[1])
    except _Unsettled as e:
        return e.args[0]


def prepare(model_type: str, workdir: Path | None = None) -> fixtures.Fixture:
    """The synthesised fixture of model_type, written to workdir/model_type (default: under home()); SynthesisRefused
    with the census's one-sentence reason where the census refuses the type."""
    result = examined(model_type)
    if not result.usable or result.config is None:
        raise SynthesisRefused(f"model type '{model_type}' has no fixture, and none can be synthesised: {result.reason}")
    directory = (workdir or home()) / model_type
    directory.mkdir(parents=True, exist_ok=True)
    files.write_atomic(directory / "config.json", json.dumps(result.config, indent=2) + "\n")
    files.write_atomic(directory / "fixture.json", json.dumps({
        "seed": census.SEED, "prompt_len": census.PROMPT_LEN, "decode_steps": census.DECODE_STEPS,
        "purpose": f"synthesised from transformers' {model_type} config class (oracles/synth.py): "
                   f"{', '.join(result.features)}"}, indent=2) + "\n")
    try:
        return fixtures.load_dir(directory)
    except fixtures.FixtureError as e:  # a rule of archval's fixtures the tiny config cannot meet
        raise SynthesisRefused(f"model type '{model_type}': its synthesised fixture is refused: {e}") from None
