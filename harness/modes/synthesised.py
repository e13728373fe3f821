"""A fixture synthesised for a model type archval has none for: `--family cohere2_moe --emitter CMD`.

The committed fixtures (fixtures/<case>/) stay for the families with goldens. Any other decoder-only
causal-LM model type of the installed transformers gets its fixture made here, as the census examines it
(harness/modes/census.py, in a forked process with its time limit): the tiny config of oracles/synth.py (the
class's defaults, sizes tiny, every feature switched on by field name), then the oracle run on the rules of
archval's fixtures (positions apart from slots, quiet rows, 16 greedy steps through its own cache). A type the
census refuses (it cannot be made to bite, or cannot run eagerly in fp32 on CPU) is refused with the census's
sentence. The config.json and fixture.json are a function of the model type and the installed transformers
alone (same bytes every run), written into a directory of the run's own, and the case is named after the type.
"""
from __future__ import annotations

import json
from pathlib import Path

from archval.harness.core import fixtures
from archval.harness.modes import census
from archval.oracles.config_class import known


class SynthesisRefused(ValueError):
    """No fixture can be synthesised for the name: one sentence saying why."""


def synthesisable(name: str) -> bool:
    """Whether the name could be a model type to synthesise: no committed fixture has it, transformers a config
    class (decided without importing torch; census_verdict() decides the rest)."""
    return name not in fixtures.names() and known(name)


def _verdict(model_type: str) -> census.Result:
    """census.examine(), for a decoder-only causal-LM model type only (in the forked process: it imports torch)."""
    import archval.oracles.hf  # noqa: F401 - transformers' notices on default configs silenced, as in the oracle
    if model_type not in census.decoder_only_types():
        why = census.not_decoder_only().get(model_type, "transformers has no causal-LM class for it")
        return census.Result(model_type, False, f"not a decoder-only causal-LM model type ({why})")
    return census.examine(model_type)


def prepare(model_type: str, workdir: Path) -> fixtures.Fixture:
    """The synthesised fixture of model_type, written to workdir/model_type; SynthesisRefused with the census's
    one-sentence reason where the census refuses the type."""
    result = census.isolated(model_type, census.TIME_LIMIT_S, how=_verdict)
    if not result.usable or result.config is None:
        raise SynthesisRefused(f"model type '{model_type}' has no fixture, and none can be synthesised: {result.reason}")
    directory = workdir / model_type
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(result.config, indent=2) + "\n")
    (directory / "fixture.json").write_text(json.dumps({
        "seed": census.SEED, "prompt_len": census.PROMPT_LEN, "decode_steps": census.DECODE_STEPS,
        "purpose": f"synthesised from transformers' {model_type} config class (oracles/synth.py): "
                   f"{', '.join(result.features)}"}, indent=2) + "\n")
    try:
        return fixtures.load_dir(directory)
    except fixtures.FixtureError as e:  # a rule of archval's fixtures the tiny config cannot meet
        raise SynthesisRefused(f"model type '{model_type}': its synthesised fixture is refused: {e}") from None
