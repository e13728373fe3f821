"""Which fields of a config.json the oracle never reads: a graph that implements them is not what the oracle
computes, so no comparison of the two can judge it (docs/binding.md#fields-the-oracle-never-reads).

A field counts as read when the oracle's transformers config class can take it (its declared fields, its
attribute_map, any name its configuration module's code mentions, as __post_init__ reads legacy keys) or the
oracle class's modeling module reads it from a config (`config.X`, `self.config.X`, `getattr(config, "X")`).
Both modules are read as source (ast), never imported or run. PreTrainedConfig's own keys are read by every
class. core/oracle_cache.py keeps the answer with the oracle's run, so a warm run needs no transformers.
"""
from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache

from ..emitter.config_input import PRETRAINED_FIELDS, PRETRAINED_LEGACY_FIELDS

# What every config.json may carry that PreTrainedConfig itself consumes or keeps as metadata.
EVERY_CLASS = {"model_type", "_name_or_path", "auto_map", "transformers_version", "architectures",
               *PRETRAINED_FIELDS, *PRETRAINED_LEGACY_FIELDS}
# Published configs carry these without any forward reading them: nothing a graph computes depends on them.
INERT = {"cache_implementation": "generation's choice of cache", "pretraining_tp": "tensor parallelism in pretraining",
         "quantization_config": "how the checkpoint stores its weights (gpt-oss-20b's mxfp4), which transformers "
                                "converts on load: the forward is the same function of the weights",
         "aux_loss_alpha": "the weight of a training-only load-balancing loss",
         "seq_aux": "whether that training-only loss is sequence-wise", "ep_size": "expert parallelism in serving"}
INERT_UNLESS = {"max_window_layers": "use_sliding_window"}  # read only where that switch is on
SAME_AS = {"hidden_act": "hidden_activation"}  # Gemma 2/3 configs repeat their activation under the legacy name
# Per model type: fields the original training code read, which transformers' class never reads because it
# implements exactly one of their values. Each is inert only at that value (a value, or a function of the config
# as the class is built from it, for one that must agree with a field the class does read); any other value is
# a model the class cannot compute, and stays named.
INERT_FOR = {
    "deepseek_v3": {
        "scoring_func": ("sigmoid", "DeepseekV3TopkRouter always scores the experts by sigmoid"),
        "topk_method": ("noaux_tc", "the router always takes its top-k by the correction-biased scores inside the "
                                    "topk_group best groups (DeepSeek's noaux_tc)"),
        "moe_layer_freq": (1, "every layer from first_k_dense_replace on routes to experts"),
    },
    "starcoder2": {
        "mlp_type": ("default", "Starcoder2MLP is always the ungated c_fc -> act -> c_proj ('default')"),
        "norm_type": ("layer_norm", "Starcoder2's norms are always nn.LayerNorm (with bias)"),
    },
    "cohere2": {
        "order_of_interleaved_layers": ("local_attn_first", "Cohere2Config's layer_types put the sliding (local) "
                                                            "layers first, a global one every sliding_window_pattern"),
        "position_embedding_type": ("rope_gptj", "Cohere2's rotate_half always rotates GPT-J's interleaved pairs"),
        "rotary_pct": (lambda given: (given.get("rope_parameters") or given.get("rope_scaling") or {}).get(
            "partial_rotary_factor", given.get("partial_rotary_factor", 1.0)),
            "Cohere2's rotary embedding rotates the fraction its rope parameters give (the whole head by default)"),
        "use_embedding_sharing": (lambda given: given.get("tie_word_embeddings", True),
                                  "the head is tied exactly where tie_word_embeddings (default true) says"),
        "use_gated_activation": (True, "Cohere2MLP is always gated: down(act(gate(x)) * up(x))"),
    },
    "gpt_oss": {  # OpenAI's own names, beside the ones transformers reads
        "experts_per_token": (lambda given: given.get("num_experts_per_tok", 4),
                              "GptOssTopKRouter routes each token to num_experts_per_tok experts"),
        "initial_context_length": (lambda given: (given.get("rope_parameters") or given.get("rope_scaling") or {}).get(
            "original_max_position_embeddings", 4096),
            "YaRN's original context, which transformers reads from the RoPE parameters"),
    },
}


def unread(config: dict, class_name: str, given: dict) -> list[str]:
    """The fields of `given` (config as the oracle's class `class_name` is built from it) that neither its
    config class nor its modeling code reads, sorted; leaving out those that cannot change a forward: a value
    that switches nothing on (false, null, 0, empty), dropout (the oracle runs in eval mode), INERT's, and
    INERT_FOR's at the one value the class implements."""
    known = _read_by(given["model_type"], class_name)
    def matters(key):
        value = given[key]
        if value in (False, None, 0, "", [], {}) or "dropout" in key or key in INERT:
            return False
        if key in INERT_UNLESS and not given.get(INERT_UNLESS[key]):
            return False
        if key in INERT_FOR.get(given["model_type"], {}):
            expected = INERT_FOR[given["model_type"]][key][0]
            if value == (expected(given) if callable(expected) else expected):
                return False
        return not (key in SAME_AS and given.get(SAME_AS[key]) == value)
    return sorted(k for k in given if k not in known and k not in EVERY_CLASS and matters(k))


@lru_cache(maxsize=None)
def _read_by(model_type: str, class_name: str) -> frozenset[str]:
    from transformers.models.auto import modeling_auto
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    names = set()
    config_type = model_type if model_type in CONFIG_MAPPING_NAMES else None
    if config_type:
        names |= _mentioned(_source(f"transformers.models.{_folder(config_type)}.configuration_{_folder(config_type)}"))
    modeling_types = [t for t, c in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items() if c == class_name]
    for t in modeling_types:
        source = _source(f"transformers.models.{_folder(t)}.modeling_{_folder(t)}")
        if source is not None:
            names |= _config_reads(source)
            break
    return frozenset(names)


def _folder(model_type: str) -> str:
    """transformers' module folder of a model type (gemma3_text lives in gemma3)."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name
    return model_type_to_module_name(model_type)


def _source(module: str) -> ast.Module | None:
    spec = importlib.util.find_spec(module.rsplit(".", 1)[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = f"{folder}/{module.rsplit('.', 1)[1]}.py"
        try:
            with open(path, encoding="utf-8") as f:
                return ast.parse(f.read())
        except FileNotFoundError:
            continue
    return None


def _mentioned(tree: ast.Module | None) -> set[str]:
    """Every name, attribute and identifier-like string the module's code uses (docstrings left out)."""
    if tree is None:
        return set()
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and node.value.isidentifier():
            found.add(node.value)
    return found


def _config_reads(tree: ast.Module | None) -> set[str]:
    """The attributes the modeling code reads from anything named config: config.X, self.config.X, getattr."""
    if tree is None:
        return set()
    is_config = lambda node: (isinstance(node, ast.Name) and node.id.endswith("config")) or (
        isinstance(node, ast.Attribute) and node.attr.endswith("config"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_config(node.value):
            found.add(node.attr)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr") \
                and len(node.args) >= 2 and is_config(node.args[0]) and isinstance(node.args[1], ast.Constant):
            found.add(node.args[1].value)
    return found
