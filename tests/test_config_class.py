"""oracles/config_class.py reads a model type's transformers config class from its source: the same fields and
literal defaults as the imported dataclass, without importing torch; harness/core/config_fields.py checks a
config.json of any model type against it, in one sentence."""
import dataclasses
import subprocess
import sys

import pytest

from archval.emitter.config_input import ConfigError
from archval.harness import ROOT
from archval.harness.core import config_fields
from archval.oracles.config_class import DERIVED, UnknownModelType, config_class

# dense, MoE, sliding schedules, an alias-heavy class (GPT-2's n_embd), a type served by another type's class
# (gpt-sw3: GPT2Config), a nested text config (mllama), a class inheriting another model's config (ministral)
SAMPLE = ("llama", "cohere2_moe", "gemma3_text", "gpt2", "gpt-sw3", "mllama", "ministral", "qwen3_next", "exaone")


@pytest.mark.parametrize("model_type", SAMPLE)
def test_the_class_read_from_source_is_the_imported_one(model_type):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    imported = CONFIG_MAPPING[model_type]
    read = config_class(model_type)
    assert read.name == imported.__name__
    fields = {f.name: f for f in dataclasses.fields(imported)}
    assert set(read.types) == set(fields)
    for name, default in read.defaults.items():
        if default is not DERIVED and fields[name].default is not dataclasses.MISSING:
            assert default == fields[name].default, (name, default, fields[name].default)
    assert read.attribute_map == imported.attribute_map


def test_reading_a_class_imports_no_torch():
    code = ("import sys; from archval.oracles.config_class import config_class; config_class('cohere2_moe'); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_a_config_is_checked_by_its_class_in_one_sentence():
    klass = config_fields.check({"model_type": "gpt2", "n_embd": 64, "n_layer": 4}, "c.json")
    assert klass.name == "GPT2Config" and config_fields.value({"n_layer": 4}, klass, "num_hidden_layers") == 4
    with pytest.raises(ConfigError, match=r"^c\.json: field 'n_embd' = 6\.5: transformers' GPT2Config takes int here\.$"):
        config_fields.check({"model_type": "gpt2", "n_embd": 6.5}, "c.json")
    with pytest.raises(ConfigError, match=r"field 'model_type' = \"no_such\": transformers .* has no config class"):
        config_fields.check({"model_type": "no_such"}, "c.json")
    with pytest.raises(UnknownModelType):
        config_class("no_such")
