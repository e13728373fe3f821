"""The harness's shape, checked: no import cycle, each layer importing only the layers below it, the
built-in emitter's internals imported only where the built-in emitter is checked, one atomic writer,
and no module longer than ~300 lines without a reason stated here."""
import ast
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from archval.harness import ROOT
from archval.harness.core.record import Record

HARNESS = ROOT / "harness"
# Each layer may import itself and the layers listed (data flows run -> records -> presentation).
MAY_IMPORT = {
    "core": {"core", "backends"},  # the case runner (core/case.py) runs the backends, which use core's graph and cache
    "backends": {"core", "backends"},
    "checks": {"core", "backends", "checks"},
    "present": {"core", "present"},
    "pool": {"core", "backends", "checks", "present", "pool"},  # the workers run a family's cases and write its page
    "modes": {"core", "backends", "checks", "present", "pool", "modes"},
    "cli": {"core", "modes", "pool", "present"},
    "pytest_plugin": {"core", "checks", "modes", "pool", "present", "pytest_selection"},  # options, fixtures, reports
    "pytest_selection": {"core", "modes", "pool"},  # which tests a pytest run takes
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
    return {module_name(p): p for p in HARNESS.rglob("*.py")}


def module_name(path: Path) -> str:
    """The module a file is, installed: harness/core/case.py -> archval.harness.core.case."""
    return "archval." + ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def absolute(path: Path, node: ast.ImportFrom) -> str:
    """The module a `from` import names, relative ones resolved against the file's own package."""
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")[: None if path.name == "__init__.py" else -1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


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
        elif isinstance(node, ast.ImportFrom):
            module = absolute(path, node)
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
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


# The modules that write a Record's fields, and why: every other one reads records, and none writes one after
# run_case returns but the post-case pipeline, which the gate and pytest both call.
RECORD_WRITERS = {
    "archval.harness.core.record": "the record's own methods (check, errored, refused)",
    "archval.harness.core.case": "run_case and its errors, as the case runs",
    "archval.harness.core.kinds": "each graph kind's judgement, inside run_case",
    "archval.harness.core.batched": "the serving kinds' judgement (rows, isolation), inside run_case",
    "archval.harness.core.continued": "the chunked, verify and embeddings kinds' judgement, inside run_case",
    "archval.harness.core.precision": "a bf16 graph's derived bound, inside run_case",
    "archval.harness.core.reference": "the three-way comparison, inside run_case",
    "archval.harness.core.messages": "clip_record, called by run_case and the pipeline",
    "archval.harness.core.summary": "a record read back from summary.json (an older layout converted)",
    "archval.harness.modes.merge": "a shard's record read back: a bundle that was not copied is dropped",
    "archval.harness.checks.finish": "the post-case pipeline: what follows run_case, in the gate and under pytest",
}
RECORD_MUTATORS = {"errored", "refused", "failed", "clip_record"}  # Record's methods, core/case.py's and messages'


def record_writes(path: Path) -> set[str]:
    """Each assignment to an attribute named as a Record field (or to an item of one) and each call of a method or
    function that changes a record, in the module; attributes of self (another class's own) are not counted."""
    fields, found = {f.name for f in dataclasses.fields(Record)}, set()

    def written(target):
        if isinstance(target, (ast.Tuple, ast.List)):
            return [t for e in target.elts for t in written(e)]
        while isinstance(target, ast.Subscript):
            target = target.value
        return [target] if isinstance(target, ast.Attribute) and target.attr in fields else []
    tree = ast.parse(path.read_text())
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                and (n.module or "").startswith("archval.harness.core") for a in n.names}
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("append", "extend", "update", "setdefault", "pop", "clear"):
                targets = [node.func.value]
            elif node.func.attr in RECORD_MUTATORS:
                found.add(f"{ast.unparse(node.func)}()")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in RECORD_MUTATORS & imported:
            found.add(f"{node.func.id}()")
        found |= {ast.unparse(t) for target in targets for t in written(target)
                  if not (isinstance(t.value, ast.Name) and t.value.id == "self")}
    return found


def test_no_module_but_the_case_and_the_post_case_pipeline_writes_a_record():
    """One writer of a record after run_case (checks/finish.py): the gate and pytest finish a case alike."""
    found = {name: sorted(record_writes(path)) for name, path in modules().items() if name not in RECORD_WRITERS}
    assert {name: writes for name, writes in found.items() if writes} == {}


def test_the_record_writers_check_finds_a_write_after_run_case(tmp_path):
    """The check above has teeth: a mode that sets a record's field, errs it or clips it is found."""
    mode = tmp_path / "mode.py"
    mode.write_text("from archval.harness.core.case import failed, run_case\n"
                    "def run(fixture):\n    record = run_case(fixture)\n    record.replay = 'mine'\n"
                    "    record.timings['x'] = 1.0\n    record.checks.append(None)\n"
                    "    record.errored('s', 'm')\n    failed(record, 's', 'm')\n    return record\n")
    assert record_writes(mode) == {"record.replay", "record.timings", "record.checks", "record.errored()", "failed()"}


def test_docs_architecture_says_which_package_imports_which():
    """docs/architecture.md's table, row by row: each package's imports of the others, the built-in emitter (whole,
    or its config reader alone) and the oracles, exactly."""
    rows = re.findall(r"^\| `harness/(\w+)(?:\.py)?` \| (.*) \|$", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    said = {package: {name.replace("/", ".").removesuffix(".py") for name in re.findall(r"`([^`]+)`", cell)}
            for package, cell in rows}
    found = {package: set() for package in said}
    for name, path in modules().items():
        for target in imports(path):
            shown = (layer(target) if target in modules() else "emitter.config_input"
                     if target.startswith("archval.emitter.config_input") else target.split(".")[1]
                     if target.startswith(("archval.emitter", "archval.oracles")) else None)
            if layer(name) in found and shown not in (None, layer(name)):
                found[layer(name)].add(shown)
    assert said and found == said


def test_no_package_runs_anything_when_imported():
    """harness's __init__.py files define and import, and guess nothing (the command a user types is set by the
    entry point, core/summary.py); importing the oracle leaves torch's threads as they were (an oracle made sets
    them, oracles/hf.py)."""
    allowed = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.Assign, ast.AnnAssign)
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in HARNESS.rglob("__init__.py")
             for node in ast.parse(path.read_text()).body
             if not isinstance(node, allowed) and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
             or "argv" in ast.unparse(node)]
    assert found == []
    said = subprocess.run([sys.executable, "-c", "import torch; torch.set_num_threads(3); import archval.oracles.hf; "
                           "print(torch.get_num_threads())"], capture_output=True, text=True, check=True).stdout
    assert said.split() == ["3"]


def test_one_atomic_writer():
    writers = [name for name, path in modules().items()
               if "mkstemp(" in path.read_text() or "os.replace(" in path.read_text()]
    assert writers == ["archval.harness.core.files"]


def test_no_module_is_long_without_a_reason():
    long = {name: len(path.read_text().splitlines()) for name, path in modules().items()
            if len(path.read_text().splitlines()) > LONGEST}
    assert set(long) <= set(LONG_MODULES), long


PACKAGES = ("harness", "emitter", "oracles", "fixtures")  # installed as archval.<name> (archval/__init__.py)


def project_files() -> list[Path]:
    return sorted(p for top in PACKAGES for p in (ROOT / top).rglob("*.py"))


def test_every_import_inside_the_project_is_relative_and_resolves_to_a_file():
    """A checkout's import graph is what static tools (an editor's go-to-definition, an import-graph viewer, a
    type checker) read from the files: inside harness/, emitter/, oracles/ and fixtures/ every import of the
    project is relative (no `archval.` name, which only archval/__init__.py's search path resolves at run time,
    and no bare `harness.`, which only works from the checkout's root), and each resolves, by the filesystem
    alone, to a module file or a package's __init__.py (or a name that __init__.py defines)."""
    unresolved = []
    for path in project_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if not node.level else []
            else:
                continue
            unresolved += [f"{path.relative_to(ROOT)}: import {n}" for n in names
                           if n.split(".")[0] in ("archval",) + PACKAGES]
            if isinstance(node, ast.ImportFrom) and node.level:
                unresolved += [f"{path.relative_to(ROOT)}:{node.lineno}: {problem}"
                               for problem in _unresolved(path, node)]
    assert unresolved == []


def _unresolved(path: Path, node: ast.ImportFrom) -> list[str]:
    """What a relative import names that no file provides, found by walking up the directories."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    target = base.joinpath(*node.module.split(".")) if node.module else base
    if target.with_suffix(".py").is_file():
        return []
    if not (target / "__init__.py").is_file():
        return [f"{'.' * node.level}{node.module or ''} is no file under {base.relative_to(ROOT) or '.'}"]
    init = ast.parse((target / "__init__.py").read_text())
    defined = {n.id for a in ast.walk(init) if isinstance(a, ast.Assign) for n in a.targets if isinstance(n, ast.Name)}
    defined |= {a.name for a in ast.walk(init) if isinstance(a, (ast.FunctionDef, ast.ClassDef))}
    defined |= {(a.asname or a.name).split(".")[0] for n in ast.walk(init)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    return [f"{a.name} is neither a module of {target.relative_to(ROOT)} nor defined in its __init__.py"
            for a in node.names if not ((target / f"{a.name}.py").is_file() or (target / a.name).is_dir()
                                        or a.name in defined or a.name == "*")]
