"""A config.json of any model type checked against the installed transformers' own config class: every key one
transformers can set, every number finite, every field of the type the class declares (oracles/config_class.py
reads the class from its source: no torch in this process), within archval's limits; one sentence naming the
file, the field and the value otherwise. This is what the harness asks of a config whatever emitter runs; the
built-in emitter refuses, besides, every model type it does not implement (its exit 2: UNSUPPORTED)."""
from __future__ import annotations

from ...emitter.config_input import (
    RESERVED_NAMES,
    accepts,
    check_finite,
    field_error,
    out_of_range,
)
from ...oracles.config_class import ConfigClass, UnknownModelType, config_class


def check(raw: dict, source: str) -> ConfigClass:
    """The config's transformers class, once raw fits it; ConfigError in one sentence otherwise."""
    model_type = raw.get("model_type")
    if not isinstance(model_type, str):
        raise field_error(source, "model_type", model_type, "must name a transformers model type")
    try:
        klass = config_class(model_type)
    except UnknownModelType as e:
        raise field_error(source, "model_type", model_type, str(e)) from None
    for key, value in raw.items():
        if key in RESERVED_NAMES or (key.startswith("__") and key.endswith("__")):
            raise field_error(source, key, value, "names an attribute of transformers' config class, not a field")
        check_finite(source, key, value)
        name = klass.attribute_map.get(key, key)  # GPT-2's n_embd is hidden_size's
        declared = klass.types.get(name)
        if declared is not None and not _takes(declared, value):
            raise field_error(source, key, value, f"transformers' {klass.name} takes {declared} here")
        why = value is not None and out_of_range(name, value)
        if why:
            raise field_error(source, key, value, why)
    return klass


def _takes(declared: str, value) -> bool:
    """accepts(), where every alternative is a JSON type; an alternative no JSON value is (torch.dtype, a nested
    config class) is left to the class itself, which the oracle builds."""
    try:
        return accepts(declared, value)
    except ValueError:
        return True


def value(raw: dict, klass: ConfigClass, name: str):
    """The attribute `name` as the class would hold it (GPT-2's num_hidden_layers is its field n_layer): written
    under the field's name or any alias of it, else the class's literal default."""
    field = klass.attribute_map.get(name, name)
    for key in (field, name, *(k for k, f in klass.attribute_map.items() if f == field)):
        if key in raw:
            return raw[key]
    return klass.defaults.get(field)


def layer_windows(raw: dict, klass: ConfigClass) -> list[int | None]:
    """Each layer's sliding window where the config says it (its layer_types, or a window on every layer of a class
    without a layer schedule); no window where use_sliding_window is off or the schedule is the class's to derive."""
    layers, window = value(raw, klass, "num_hidden_layers"), value(raw, klass, "sliding_window")
    if not isinstance(layers, int) or isinstance(layers, bool):
        return [None]  # layers kept in a nested config (a multimodal class's text_config): no window known to limit
    if not isinstance(window, int) or isinstance(window, bool) or value(raw, klass, "use_sliding_window") is False:
        return [None] * layers
    types = raw.get("layer_types")
    if isinstance(types, list) and len(types) == layers:
        return [window if isinstance(t, str) and "sliding" in t else None for t in types]
    return [window] * layers if "layer_types" not in klass.types else [None] * layers
