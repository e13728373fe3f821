"""A model type's transformers config class read from its source (ast): its fields' declared types and defaults,
and its attribute_map, without importing transformers (whose config modules import torch, ~2 s).

transformers 5's config classes are strict dataclasses: each field is an annotated class attribute with a
default, inherited from the base classes (PreTrainedConfig's own, another model's config). The class is found
as transformers finds it (models/auto/auto_mappings.py's CONFIG_MAPPING_NAMES, with configuration_auto.py's
additions and its module-name rule); bases are followed through the module's `from ... import` statements.
A default that is no literal (a default_factory, a computed value) is DERIVED: the class computes it.
"""
from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DERIVED = "derived"  # a default that is no literal: the class computes it
AUTO = ("models", "auto")


@dataclass(frozen=True)
class ConfigClass:
    name: str                          # the class's name: Cohere2MoeConfig
    types: dict[str, str]              # field -> its annotation, as written ("int | None")
    defaults: dict[str, object]        # field -> its literal default, or DERIVED
    attribute_map: dict[str, str]      # a key config.json may write -> the field it sets


class UnknownModelType(ValueError):
    """transformers has no config class for the model type."""


def root() -> Path:
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModelType("transformers is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def config_class(model_type: str) -> ConfigClass:
    """The installed transformers' config class of model_type; UnknownModelType where it has none."""
    names, modules = _mappings()
    if model_type not in names:
        raise UnknownModelType(f"transformers {_version()} has no config class for model type '{model_type}'")
    folder = modules.get(model_type, model_type.replace("-", "_"))
    path = root() / "models" / folder / f"configuration_{folder.split('.')[-1]}.py"
    if not path.is_file() or f"class {names[model_type]}(" not in path.read_text(encoding="utf-8"):
        path = _defining(names[model_type])  # another model's class (gpt-sw3's GPT2Config), as transformers falls back
    return _read_class(str(path), names[model_type])


def _defining(name: str) -> Path:
    """The configuration module that defines class name."""
    for path in sorted((root() / "models").glob("*/configuration_*.py")):
        if f"class {name}(" in path.read_text(encoding="utf-8"):
            return path
    raise UnknownModelType(f"no configuration module of transformers {_version()} defines {name}")


def known(model_type: str) -> bool:
    return model_type in _mappings()[0]


@lru_cache(maxsize=1)
def _version() -> str:
    import importlib.metadata
    return importlib.metadata.version("transformers")


@lru_cache(maxsize=1)
def _mappings() -> tuple[dict[str, str], dict[str, str]]:
    """(model type -> config class name, model type -> module folder where it is not the type's own name)."""
    found = {"CONFIG_MAPPING_NAMES": {}, "SPECIAL_MODEL_TYPE_TO_MODULE_NAME": {}}
    for source in ("auto_mappings.py", "configuration_auto.py"):
        path = root().joinpath(*AUTO, source)
        if path.is_file():
            _collect(ast.parse(path.read_text(encoding="utf-8")), found)
    return found["CONFIG_MAPPING_NAMES"], found["SPECIAL_MODEL_TYPE_TO_MODULE_NAME"]


def _collect(tree: ast.Module, found: dict[str, dict]) -> None:
    """The mappings' literal entries: `NAME = {...}` / OrderedDict([...]) / OrderedDict(**{...}, **NAME) and
    `NAME.update({...})`, in source order."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and getattr(node.targets[0], "id", None) in found:
            found[node.targets[0].id].update(_literal_mapping(node.value))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "update" and \
                getattr(node.value.func.value, "id", None) in found and node.value.args:
            found[node.value.func.value.id].update(_literal_mapping(node.value.args[0]))


def _literal_mapping(node: ast.expr) -> dict:
    if isinstance(node, ast.Call):  # OrderedDict([...]) or OrderedDict(**{...}, **NAME)
        entries = {}
        for arg in node.args:
            entries.update(_literal_mapping(arg))
        for keyword in node.keywords:
            entries.update(_literal_mapping(keyword.value))
        return entries
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return {}
    return dict(value) if isinstance(value, (dict, list, tuple)) else {}


@lru_cache(maxsize=None)
def _read_class(path: str, name: str) -> ConfigClass:
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnknownModelType(f"transformers' {name} has no source at {path}") from None
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if node is None:
        raise UnknownModelType(f"{path} defines no class {name}")
    types, defaults, attribute_map = {}, {}, {}
    for base in node.bases:  # the bases' fields first: a field the class declares again replaces theirs
        inherited = _base(tree, Path(path), base)
        if inherited is not None:
            types.update(inherited.types)
            defaults.update(inherited.defaults)
            attribute_map.update(inherited.attribute_map)
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            annotation = ast.unparse(statement.annotation)
            if statement.target.id == "attribute_map":
                attribute_map.update(_literal(statement.value) or {})
            elif not annotation.startswith("ClassVar"):
                types[statement.target.id] = annotation
                defaults[statement.target.id] = _literal(statement.value) if statement.value is not None else DERIVED
        elif isinstance(statement, ast.Assign) and [getattr(t, "id", None) for t in statement.targets] == ["attribute_map"]:
            attribute_map.update(_literal(statement.value) or {})
    return ConfigClass(name, types, defaults, attribute_map)


def _literal(node: ast.expr | None):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return DERIVED


def _base(tree: ast.Module, path: Path, base: ast.expr) -> ConfigClass | None:
    """A base class's fields: one of this module's classes, or one it imports from transformers."""
    name = getattr(base, "id", None)
    if name is None:
        return None
    if any(isinstance(n, ast.ClassDef) and n.name == name for n in tree.body):
        return _read_class(str(path), name)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(a.name == name and a.asname is None for a in node.names):
            folder = path.parent
            for _ in range(max(node.level - 1, 0)):
                folder = folder.parent
            module = folder.joinpath(*(node.module or "").split(".")).with_suffix(".py")
            if node.level and module.is_file():
                return _read_class(str(module), name)
    return None
