"""The structural gate: emit every case, sign it, compare with its golden. Never imports torch.

Cases are the test fixtures (fixtures/<name>/) and the published real-scale configs
(fixtures/real/<checkpoint>/), emitted at full size: weights are arguments, so no
weights are needed. A golden is either a signature with the text beside it, or, for a
published config the emitter refuses, the recorded refusal (a finding, kept visible).
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .signature import drift, golden_paths, load_golden, signature
from ..core import cache, fixtures, kinds
from ..core.emitter_protocol import DEFAULT_EMITTER, CaseError, EmitterRefused, builtin_identity, emit
from ..core.files import write_atomic
from ..core.graph import GraphError
from ..core.record import StructuralBrief

REAL_DIR = fixtures.FIXTURES_DIR / "real"
GRAPHS = kinds.signed()
MATCH, DRIFT, MISSING, REFUSED, ERROR = "match", "DRIFT", "MISSING-GOLDEN", "refused (as recorded)", "ERROR"
PASSING = (MATCH, REFUSED)


@dataclass(frozen=True)
class StructuralCase:
    name: str
    directory: Path

    @property
    def config_path(self) -> Path:
        return self.directory / "config.json"


@dataclass
class StructuralResult:
    """One case and graph kind signed and compared with its golden."""
    case: str
    graph: str
    status: str = ERROR
    detail: list[str] = field(default_factory=list)  # why it is not a match: the drift, the refusal, the error
    text: str | None = None  # the emitted text (None: refused, or not emitted)
    rewrote: list[str] = field(default_factory=list)  # --update-goldens: the golden files written or removed
    emit_s: float | None = None  # the emission's wall time
    sha256: str | None = None
    signature: dict | None = None  # the text's signature
    golden: dict | None = None  # the golden's signature

    @property
    def passed(self) -> bool:
        return self.status in PASSING

    def line(self) -> str:
        sha = f"  sha256 {self.sha256[:12]}" if self.sha256 else ""
        said = f"{self.case:<30} {self.graph:<8} {self.status}{sha}"
        said += "".join(f"\n    {item}" for item in self.rewrote)
        return said + ("" if self.status == MATCH else "".join(f"\n    {d}" for d in self.detail))

    def brief(self) -> StructuralBrief:
        """What a validation record keeps: status, drift, and @main's signature in brief beside the golden's."""
        def main(signature: dict | None) -> dict:
            return (signature or {}).get("functions", {}).get("main", {})
        found = main(self.signature)
        return StructuralBrief(self.status, self.detail, self.sha256, len(found.get("args", [])), found.get("results"),
                               found.get("ops"), main(self.golden).get("ops"))


def cases() -> list[StructuralCase]:
    found = [StructuralCase(n, fixtures.FIXTURES_DIR / n) for n in fixtures.names()]
    if REAL_DIR.is_dir():
        found += [StructuralCase(f"real/{d.name}", d) for d in sorted(REAL_DIR.iterdir())
                  if (d / "config.json").is_file()]
    return found


def orphan_goldens() -> list[str]:
    """Golden files that no case and graph kind produces."""
    known = {c.directory for c in cases()}
    expected = {p for c in cases() for g in GRAPHS for p in (*golden_paths(c.directory, g), refusal_path(c.directory, g))}
    return sorted(str(p.relative_to(fixtures.FIXTURES_DIR)) for p in fixtures.FIXTURES_DIR.rglob("golden/*")
                  if p.is_file() and (p.parent.parent not in known or p not in expected))


def refusal_path(case_dir: Path, graph: str) -> Path:
    return case_dir / "golden" / f"{graph}.refusal.txt"


def _golden_files(text: str | None, sig: dict | None, refusal: str | None) -> dict[str, str]:
    if refusal is not None:
        return {"refusal": refusal + "\n"}
    return {"signature": json.dumps(sig, indent=1, sort_keys=True) + "\n", "text": text}


def _golden_if_same(case: StructuralCase, graph: str, text: str, golden_sha: str | None = None) -> dict | None:
    """The golden signature when the emitted text is byte for byte the golden's, from which that
    signature was taken: a match without parsing (parsing is most of a structural run). golden_sha: the text
    is the golden file's own, read just now, of this SHA-256."""
    sig_path, text_path = golden_paths(case.directory, graph)
    if not (sig_path.is_file() and text_path.is_file()):
        return None
    try:
        recorded = json.loads(sig_path.read_text())
    except json.JSONDecodeError:
        return None  # the full check reports the broken golden
    same = recorded.get("sha256") == (golden_sha or hashlib.sha256(text.encode()).hexdigest()) and (
        golden_sha is not None or text_path.read_text() == text)
    return recorded if same else None


def _emitted_path(case: StructuralCase, graph: str) -> Path:
    """Where the sha256 of the built-in emitter's text for this config and kind is kept, under a key of what
    that text is a function of: the emitter's identity, the config's bytes, the kind."""
    config = hashlib.sha256(case.config_path.read_bytes()).hexdigest()
    return cache.cache_dir() / f"{cache.key('emitted', builtin_identity(), config, graph)}.emitted"


def _golden_text_if_emitted(case: StructuralCase, graph: str) -> tuple[str | None, str | None]:
    """(the golden text, its SHA-256) when the built-in emitter, as it is now, wrote that very text for this
    config before (a published config's graphs run to megabytes: emitting them is most of a warm run); else
    (None, None)."""
    sha, text_path = cache.read_entry(_emitted_path(case, graph)), golden_paths(case.directory, graph)[1]
    if sha is None or not text_path.is_file():
        return None, None
    text = text_path.read_text()
    return (text, sha.decode()) if hashlib.sha256(text.encode()).hexdigest() == sha.decode() else (None, None)


def check(case: StructuralCase, graph: str, emitter, update: bool = False,
          text: str | None = None) -> StructuralResult:
    """Emit (or take the text given: a mutant's; or, from the built-in emitter unchanged, the golden text it
    wrote before), sign and compare one case; with update, rewrite only the golden files that differ."""
    result = StructuralResult(case.name, graph)
    sig = refusal = None
    start = time.perf_counter()
    builtin, golden_sha = text is None and tuple(emitter) == DEFAULT_EMITTER, None
    try:
        if builtin and not update:
            text, golden_sha = _golden_text_if_emitted(case, graph)
        if text is None:
            text = emit(emitter, case.config_path, graph)
            result.emit_s = round(time.perf_counter() - start, 4)
            if builtin:
                cache.write_entry(_emitted_path(case, graph), hashlib.sha256(text.encode()).hexdigest().encode())
        recorded = None if update else _golden_if_same(case, graph, text, golden_sha)
        if recorded is not None:  # the signature is a function of the text: no need to parse it again
            result.status, result.text, result.sha256 = MATCH, text, recorded["sha256"]
            result.signature = result.golden = recorded
            return result
        sig = signature(text)
    except EmitterRefused as e:
        refusal = str(e)
    except (CaseError, GraphError) as e:
        result.detail = [str(e)]
        return result
    result.text, result.sha256, result.signature = text, sig and sig["sha256"], sig

    sig_path, text_path = golden_paths(case.directory, graph)
    ref_path = refusal_path(case.directory, graph)
    if update:
        wanted = _golden_files(text, sig, refusal)
        paths = {"signature": sig_path, "text": text_path, "refusal": ref_path}
        for kind, path in paths.items():
            content = wanted.get(kind)
            current = path.read_text() if path.is_file() else None
            if content is None and current is not None:
                path.unlink()
                result.rewrote.append(f"removed {case.name}/{path.relative_to(case.directory)}")
            elif content is not None and content != current:
                write_atomic(path, content)
                result.rewrote.append(f"wrote {case.name}/{path.relative_to(case.directory)}")

    recorded_refusal = ref_path.read_text().strip() if ref_path.is_file() else None
    golden = load_golden(case.directory, graph)
    result.golden = golden and golden[0]
    if refusal is not None:
        if recorded_refusal == refusal:
            result.status, result.detail = REFUSED, [refusal]
        else:
            result.status = DRIFT if (recorded_refusal or golden) else MISSING
            result.detail = [f"the emitter refuses: {refusal}",
                                f"the golden records: {recorded_refusal or 'a signature'}" if (recorded_refusal or golden)
                                else "no golden recorded"]
        return result
    if golden is None:
        result.status = DRIFT if recorded_refusal else MISSING
        result.detail = ([f"the golden records a refusal ({recorded_refusal}) but the emitter now emits a graph"]
                            if recorded_refusal else ["no golden recorded (run --update-goldens)"])
        return result
    changes = drift(*golden, sig, text)
    result.status, result.detail = (DRIFT, changes) if changes else (MATCH, [])
    return result


def of_case(family: str, graph: str, text: str | None = None) -> StructuralResult | None:
    """A fixture's graph kind against its golden, as the gate's structural pass checks it: the built-in emission,
    or the given text (a mutant's); None for a kind the goldens do not record."""
    if graph not in GRAPHS:
        return None
    return check(StructuralCase(family, fixtures.FIXTURES_DIR / family), graph, DEFAULT_EMITTER, text=text)


def run(emitter, update: bool = False, names: list[str] | None = None, jobs: int = 2,
        graphs: list[str] | None = None) -> list[StructuralResult]:
    """The cases named (None: all), each signed graph kind of graphs (None: every one)."""
    selected = [c for c in cases() if names is None or c.name in names]
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each emission is its own process
        return list(pool.map(lambda job: check(*job, emitter, update),
                             [(c, g) for c in selected for g in GRAPHS if graphs is None or g in graphs]))
