"""A config.json is untrusted input: read it within limits, then check every field against what the family's
transformers config class accepts, before anything is built from it.

Both the emitter and the harness (fixtures, --config, shrinking) go through here, so a bad config is refused
once, the same way, with one sentence naming the file, the field and the value. Nothing here imports torch
or transformers: the config classes' field types are mirrored (here for PreTrainedConfig, in families.py for
each family's class), and tests/test_config_input.py holds the mirror to the installed transformers.
"""
from __future__ import annotations

import ast
import json
import math
import os
import re
import stat
from itertools import accumulate
from pathlib import Path

from .families import FAMILIES, Family

MAX_FILE_BYTES = 1 << 20  # published configs are a few KB
MAX_NESTING = 32          # they nest 3 deep; this keeps every recursive reader (json, deepcopy) far from Python's limit
MAX_LAYERS = 1024         # the deepest published decoders have ~130; parsing, emitting and shrinking are linear in it
MAX_HEAD_DIM = 4096       # the RoPE tables are computed on the host and written into the graph, head_dim / 2 wide
MAX_INT = 2**31 - 1       # token ids, positions and shapes are i32 in the graphs
MAX_LABELS = 1 << 16      # transformers builds an id2label dict of num_labels entries
TORCH_DTYPES = ("bfloat16", "float16", "float32", "float64")  # transformers reads the name as getattr(torch, name)

# PreTrainedConfig's own dataclass fields, as annotated (JSON's view: no torch.dtype in a file).
PRETRAINED_FIELDS = {
    "transformers_version": "str | None", "architectures": "list[str] | None",
    "output_hidden_states": "bool | None", "return_dict": "bool | None", "dtype": "str | None",
    "chunk_size_feed_forward": "int", "is_encoder_decoder": "bool",
    "id2label": "dict[int, str] | dict[str, str] | None", "label2id": "dict[str, int] | dict[str, str] | None",
    "problem_type": "Literal['regression', 'single_label_classification', 'multi_label_classification'] | None",
}
# Legacy keys, no fields, that PreTrainedConfig.__post_init__ and its RoPE conversion still read, with the type
# they use them as: the legacy RoPE dialect, and values it converts (getattr(torch, torch_dtype), range(num_labels)).
PRETRAINED_LEGACY_FIELDS = {
    "rope_theta": "int | float | None", "rope_scaling": "dict | None", "partial_rotary_factor": "int | float | None",
    "torch_dtype": "str | None", "num_labels": "int",
}
# PreTrainedConfig's methods, properties and class attributes: transformers sets every other key of a config.json
# as an attribute, so a key of one of these names replaces what transformers itself calls or reads (or, for a
# property without a setter, fails). `cls` and `self` are the parameters that the config is passed next to.
RESERVED_NAMES = frozenset("""
    _attn_implementation _auto_class _check_received_keys _decode_special_floats _dict_from_json_file
    _encode_special_floats _experts_implementation _get_config_dict _get_files_timestamps
    _get_generation_parameters _getattr_without_heterogeneous_validation _hasattr_without_heterogeneous_validation
    _iter_config_keys_with_heterogeneous_adjustment _remove_keys_not_serialized
    _update_heterogeneous_to_dict_output _upload_modified_files _validate_axial_rope_parameters
    _validate_default_rope_parameters _validate_dynamic_rope_parameters _validate_linear_rope_parameters
    _validate_llama3_rope_parameters _validate_longrope_rope_parameters _validate_proportional_rope_parameters
    _validate_yarn_rope_parameters allow_global_per_layer_attribute_access attribute_map base_config_key
    base_model_ep_plan base_model_fsdp_plan base_model_pp_plan base_model_tp_plan convert_rope_params_to_dict
    default_config_fields default_rope_type default_theta dict_dtype_to_str extra_config_files extra_files
    from_dict from_json_file from_pretrained get_config_dict get_mtp_config get_text_config
    ignore_keys_at_rope_validation is_custom_code is_heterogeneous is_remote_code nested_rope_parameter_keys
    per_layer_attributes push_to_hub register_for_auto_class save_pretrained serialize_explicit_per_layer_config
    standardize_rope_params sub_configs sub_configs_defaults to_dict to_diff_dict to_json_file to_json_string
    update update_from_string use_return_dict validate validate_architecture validate_layer_type
    validate_output_attentions validate_rope validate_token_ids
""".split()) | {"cls", "self"}
AT_LEAST = {  # where transformers would divide by the value or count with it
    "sliding_window_pattern": 1, "no_rope_layer_interval": 1, "chunk_size_feed_forward": 0, "num_labels": 0,
}
AT_MOST = {"num_hidden_layers": MAX_LAYERS, "head_dim": MAX_HEAD_DIM, "num_labels": MAX_LABELS}
# torch's Dropout refuses a p outside [0, 1], and two config classes an initializer_range outside it
PROBABILITIES = ("initializer_range", "attention_dropout", "residual_dropout")

# MoE families whose decoder layers build an MoE block only where the expert count is above 0 (transformers'
# Qwen2MoeDecoderLayer, Qwen3MoeDecoderLayer): there 0 experts is a dense model; elsewhere a router with nothing to pick
DENSE_WITHOUT_EXPERTS = ("qwen2_moe", "qwen3_moe")

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class ConfigError(ValueError):
    """A config that is refused; the message is one sentence naming file, field and value."""


def printable(text: str) -> str:
    """text with its control characters escaped, so that a message that quotes it stays one line."""
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def show(value, limit: int = 80) -> str:
    """A value as JSON writes it (NaN and Infinity too), cut short for a one-line message."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def field_error(source: str, name: str, value, why: str) -> ConfigError:
    """`<source>: field '<name>' = <value>: <why>.`, one line whatever the source, name and value hold."""
    return ConfigError(f"{printable(source)}: field '{printable(name)[:80]}' = {show(value)}: {why}.")


def read_json_object(path: Path, error: type[ValueError]) -> dict:
    """A JSON object from a regular file of at most MAX_FILE_BYTES of UTF-8 nested at most MAX_NESTING deep,
    or `error` with one sentence naming the file and the problem."""
    where = printable(str(path))
    try:
        mode = os.stat(path).st_mode  # follows symlinks: the target is what would be read
        if not stat.S_ISREG(mode):
            target = os.path.realpath(path)
            via = f", which resolves to {printable(target)}" if target != os.path.abspath(path) else ""
            raise error(f"{where}: not a regular file but {_file_kind(mode)}{via}.")
        # O_NONBLOCK: should the file have become a FIFO since stat, opening it must not wait for a writer;
        # the read is bounded, should it have become a device
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise error(f"{where}: cannot read the file ({e.strerror}).") from None
    if len(data) > MAX_FILE_BYTES:
        raise error(f"{where}: more than {MAX_FILE_BYTES} bytes, far more than any config.json needs.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}).") from None
    brackets = re.findall(r"[\[\]{}]", _JSON_STRING.sub('""', text))
    depth = max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0)
    if depth > MAX_NESTING:
        raise error(f"{where}: nested {depth} levels deep, more than the {MAX_NESTING} a config.json may be.")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from None
    except ValueError:  # the one other refusal of json.loads: an integer longer than Python converts
        raise error(f"{where}: not valid JSON (an integer with too many digits to convert).") from None
    if not isinstance(raw, dict):
        raise error(f"{where}: the top level must be a JSON object, not {type(raw).__name__}.")
    return raw


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "another kind of file")


def implemented(model_type) -> bool:
    """Whether the built-in emitter implements model_type (a family of families.py), so its tables apply."""
    return model_type in FAMILIES


def check_input(raw: dict, source: str) -> Family:
    """The config's family, once every key is one transformers can set, every number finite, every field of the
    family's config class (or key it reads) of the type that class declares, and within archval's limits."""
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise field_error(source, "model_type", model_type,
                          f"not a supported family (supported: {', '.join(FAMILIES)})")
    family = FAMILIES[model_type]
    attribute = {written: name for name, written in family.aliases.items()}
    types = {**PRETRAINED_FIELDS, **PRETRAINED_LEGACY_FIELDS, **family.fields, **family.legacy_fields}
    for key, value in raw.items():
        if key in RESERVED_NAMES or (key.startswith("__") and key.endswith("__")):
            raise field_error(source, key, value, "names an attribute of transformers' config class, not a field")
        check_finite(source, key, value)
        name = attribute.get(key, key)  # EXAONE's num_layers is num_hidden_layers
        declared = types.get(key, types.get(name))
        if declared is None:
            continue  # transformers keeps it as it is, unread
        if not accepts(declared, value):
            raise field_error(source, key, value, f"transformers' {model_type} config takes {declared} here")
        why = value is not None and name not in family.unbounded and out_of_range(name, value)
        if why:
            raise field_error(source, key, value, why)
    _check_router(raw, family, source)
    return family


def _check_router(raw: dict, family: Family, source: str) -> None:
    """Top-k at least 1 and no more than the experts: transformers builds a router with fewer experts than it
    picks and fails only at the first token (`selected index k out of range`)."""
    if family.experts_field is None:
        return
    top_k = raw.get("num_experts_per_tok", family.defaults.get("num_experts_per_tok"))
    written = next((k for k in (family.experts_field, family.aliases.get(family.experts_field)) if k in raw),
                   family.experts_field)
    experts = raw.get(written, family.defaults.get(family.experts_field))
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (top_k, experts)):
        return  # absent from both the file and the class's defaults: the emitter names it
    if top_k < 1:
        raise field_error(source, "num_experts_per_tok", top_k, "must be at least 1 (the experts each token is routed to)")
    if experts == 0 and raw["model_type"] not in DENSE_WITHOUT_EXPERTS:
        raise field_error(source, written, experts, f"must be at least num_experts_per_tok ({top_k}): "
                                                    "transformers would build a router with no expert to pick")
    if 0 < experts < top_k:
        raise field_error(source, "num_experts_per_tok", top_k, f"exceeds the number of experts ({written} = {experts})")


def attribute(raw: dict, name: str):
    """The value transformers' config class reads as attribute `name` from a checked config.json, under the key
    the family writes it as (EXAONE's num_layers is num_hidden_layers)."""
    family = FAMILIES.get(raw.get("model_type"))
    return raw[family.aliases.get(name, name) if family else name]


def check_finite(source: str, path: str, value) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise field_error(source, path, value, "not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(source, f"{path}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(source, f"{path}[{i}]", item)


def accepts(declared: str, value) -> bool:
    """Whether transformers' strict dataclass validation takes value for a field annotated `declared`
    (huggingface_hub.dataclasses.type_validator: a bool is no int, an int no float)."""
    return any(_accepts_one(alternative, value) for alternative in _alternatives(declared))


def _alternatives(declared: str) -> list[str]:
    """'int | list[int] | None' -> ['int', 'list[int]', 'None']: split at the | outside brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(declared):
        depth += c == "["
        depth -= c == "]"
        if c == "|" and depth == 0:
            parts.append(declared[start:i].strip())
            start = i + 1
    return parts + [declared[start:].strip()]


def _accepts_one(kind: str, value) -> bool:
    simple = {"None": value is None, "bool": isinstance(value, bool), "str": isinstance(value, str),
              "int": isinstance(value, int) and not isinstance(value, bool), "float": isinstance(value, float),
              "dict": isinstance(value, dict)}
    if kind in simple:
        return simple[kind]
    if kind.startswith("list[") and kind.endswith("]"):
        return isinstance(value, list) and all(_accepts_one(kind[5:-1], item) for item in value)
    if kind.startswith("dict[") and kind.endswith("]"):
        key_kind, value_kind = (k.strip() for k in kind[5:-1].split(","))
        return isinstance(value, dict) and all(_accepts_one(key_kind, k) and _accepts_one(value_kind, v)
                                               for k, v in value.items())
    if kind.startswith("Literal[") and kind.endswith("]"):
        return isinstance(value, str) and value in ast.literal_eval(kind[7:])
    raise ValueError(f"no check for the declared type '{kind}'")


def out_of_range(name: str, value) -> str | None:
    """Why a value of the declared type is still refused, or None."""
    ints = [value] if isinstance(value, int) and not isinstance(value, bool) else \
        [v for v in value if isinstance(v, int) and not isinstance(v, bool)] if isinstance(value, list) else []
    if name.endswith("_token_id") and any(i < 0 for i in ints):
        return "a token id must be null or at least 0 (transformers declares ids outside the vocabulary invalid)"
    if name in AT_LEAST and isinstance(value, (int, float)) and value < AT_LEAST[name]:  # not EXAONE 4's "LLLG"
        return f"must be at least {AT_LEAST[name]}"
    if name in AT_MOST and value > AT_MOST[name]:
        return f"more than the {AT_MOST[name]} archval takes"
    if any(i > MAX_INT for i in ints):
        return f"more than {MAX_INT}, the largest i32, which token ids, positions and shapes are in the graphs"
    if name in PROBABILITIES and not 0 <= value <= 1:
        return "must be between 0 and 1"
    if name in ("dtype", "torch_dtype") and value not in TORCH_DTYPES:
        return f"not a dtype a checkpoint is stored in ({', '.join(TORCH_DTYPES)})"
    if name == "id2label" and not all(map(_is_integer, value)):
        return "transformers reads every key of id2label as an integer"
    return None


def _is_integer(key) -> bool:
    """Whether int() takes it, as transformers does with each id2label key."""
    try:
        int(key)
    except ValueError:
        return False
    return True


def layer_windows(raw: dict, family: Family) -> list[int | None]:
    """Each layer's sliding window as transformers applies it (None: the layer attends to everything before it):
    the family's schedule or the config's layer_types, and no window at all where the config has none or the
    family's flag (Qwen's use_sliding_window) is off. For a config check_input has accepted."""
    def get(name):
        written = family.aliases.get(name, name)
        value = raw.get(written, raw.get(name))
        return family.defaults.get(name) if value is None else value

    layers = get("num_hidden_layers")
    gate = family.window_needs_flag
    window = None if gate and not raw.get(gate, False) else (
        raw["sliding_window"] if "sliding_window" in raw else family.defaults.get("sliding_window"))
    if not isinstance(layers, int) or window is None:
        return [None] * (layers if isinstance(layers, int) else 0)
    types = raw.get("layer_types") or family.schedule(raw, layers)
    if types is None:  # a config the parser refuses (EXAONE 4 without layer_types it cannot derive)
        return [None] * layers
    return [window if t == "sliding_attention" else None for t in types]
