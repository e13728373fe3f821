"""The harness's shape, checked: no import cycle, each layer importing only the layers below it, the
built-in emitter's internals imported only where the built-in emitter is checked, one atomic writer,
and no module longer than ~300 lines without a reason stated here."""
import ast
from pathlib import Path

from archval.harness import ROOT

HARNESS = ROOT / "harness"
# Each layer may import itself and the layers listed (data flows run -> records -> presentation).
MAY_IMPORT = {
    "core": {"core", "backends"},  # the case runner (core/case.py) runs the backends, which use core's graph and cache
    "backends": {"core", "backends"},
    "checks": {"core", "backends", "checks"},
    "present": {"core", "present"},
    "modes": {"core", "backends", "checks", "present", "modes"},
    "cli": {"core", "modes", "present"},
    "pytest_plugin": {"core", "checks", "modes", "present", "pytest_selection"},  # options, fixtures, reports
    "pytest_selection": {"core", "modes"},  # which tests a pytest run takes
    "pytest_suite": {"core", "present"},  # the cases a downstream pytest run collects
}
LONG_MODULES = {  # module: why it is longer than LONGEST lines
    "archval.harness.present.charts": "four hand-written SVG charts beside the one small drawing class they share",
    "archval.harness.core.record": "the record's whole schema: a dataclass per part, each field commented for docs/record.md",
    "archval.harness.checks.mutants": "the catalogue of deliberate bugs: a table row or a small core subclass per "
                                      "mechanism of every family, each with its predicate",
}
LONGEST = 300


def modules() -> dict[str, Path]:
    return {"archval." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in HARNESS.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """Every module an import statement names, at the top or inside a function (not those only a type
    checker reads, under `if TYPE_CHECKING:`)."""
    tree, found = ast.parse(path.read_text()), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def harness_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()}


def layer(module: str) -> str | None:
    """harness's folder or top module a module is in: archval.harness.core.case -> core."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["archval", "harness"] else None


def test_no_import_cycle():
    graph, state, path = harness_graph(), {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [f"{module} imports {target}" for module, targets in harness_graph().items()
             for target in targets if layer(module) in MAY_IMPORT and layer(target) not in MAY_IMPORT[layer(module)]
             and layer(target) is not None]
    assert wrong == []


# emitter/config_input.py reads a config.json as transformers' config classes would take it: the
# harness must refuse bad input before any emitter or oracle sees it, so it shares that reader.
SHARED_WITH_THE_EMITTER = {"archval.emitter.config_input"}


def test_only_the_checks_of_the_built_in_emitter_import_it():
    """The core, the backends, the presentation and the modes work for any emitter."""
    found = [name for name, path in modules().items()
             if any((m == "archval.emitter" or m.startswith("archval.emitter."))
                    and not any(m == s or m.startswith(f"{s}.") for s in SHARED_WITH_THE_EMITTER)
                    for m in imports(path)) and layer(name) != "checks"]
    assert found == []


def test_one_atomic_writer():
    writers = [name for name, path in modules().items()
               if "mkstemp(" in path.read_text() or "os.replace(" in path.read_text()]
    assert writers == ["archval.harness.core.files"]


def test_no_module_is_long_without_a_reason():
    long = {name: len(path.read_text().splitlines()) for name, path in modules().items()
            if len(path.read_text().splitlines()) > LONGEST}
    assert set(long) <= set(LONG_MODULES), long


def test_every_import_of_the_project_goes_through_the_archval_namespace():
    """Installed, only `archval` exists: a bare `harness`, `emitter`, `oracles` or `fixtures` import works in a
    checkout (its root is on the path) and nowhere else, or imports another distribution's module."""
    bare = ("harness", "emitter", "oracles", "fixtures")
    ours = [p for p in sorted(ROOT.glob("*/**/*.py")) if not p.relative_to(ROOT).parts[0].startswith((".", "build"))]
    found = [f"{path.relative_to(ROOT)} imports {m}" for path in ours for m in imports(path) if m.split(".")[0] in bare]
    assert found == []
