"""The family × graph-kind matrix (present/matrix.py): the index opens on it and support.md writes it in Markdown,
from the records alone; every verdict shows as itself, a kind a family lacks as n/a, apart from the emitter's
refusal (UNSUPPORTED); each cell carries its share of the bound and, on hover, its error, bound and reason."""
import html
import re

from archval.harness.core import fixtures, summary
from archval.harness.core.case import new_record
from archval.harness.present.matrix import NOT_APPLICABLE, matrix
from archval.harness.present.publish import publish
from test_report import assert_renders, browser  # noqa: F401 - the headless browser fixture and its checks

RUN = summary.run_info("pytest", ["pytest", "tests/test_matrix.py"], None)


def judged(family: str, graph: str, error: float | None = None, refused: str = "", errored: str = ""):
    """A record as a case leaves it, without running one: the presentation reads nothing else."""
    record = new_record(fixtures.load(family), graph)
    if refused:
        record.refused("emit", refused)
    elif errored:
        record.errored("compile", errored)
    else:
        record.max_abs_diff = error
        record.check("bound", "compare", error <= record.bound,
                     f"max |Δlogit| = {error:.3e} exceeds the bound {record.bound:.1e}", error, record.bound)
    return record


def every_verdict():
    return [judged("llama", "prefill", 2e-5), judged("llama", "decode", 7.3),
            judged("mixtral", "prefill", 1e-5), judged("mixtral", "decode", 3e-5), judged("mixtral", "moe_block", 2e-6),
            judged("qwen2", "prefill", errored="stage 'compile': iree-compile exited with 1: <bad>"),
            judged("qwen2", "decode", errored="stage 'compile': iree-compile exited with 1: <bad>"),
            judged("gemma2", "prefill", refused="this emitter has no sliding windows | yet"),
            judged("gemma2", "decode", refused="this emitter has no sliding windows | yet")]


def test_the_matrix_has_a_cell_per_case_and_tells_not_applicable_from_unsupported():
    m = matrix(every_verdict())
    assert m.kinds == ["prefill", "decode", "moe_block"]
    verdicts = {family: [c.verdict for c in cells] for family, cells in m.rows}
    assert verdicts == {"gemma2": ["UNSUPPORTED", "UNSUPPORTED", NOT_APPLICABLE],
                        "llama": ["PASS", "FAIL", NOT_APPLICABLE],
                        "mixtral": ["PASS", "PASS", "PASS"],
                        "qwen2": ["ERROR", "ERROR", NOT_APPLICABLE]}
    llama = dict(m.rows)["llama"]
    assert llama[0].margin == "0.2%" and llama[1].margin == "730×"
    assert "max |Δ| 7.300e+00 against the bound 1e-02 (730× of it)" in llama[1].title
    assert "exceeds the bound 1.0e-02" in llama[1].title and "exceeds" not in llama[0].title
    assert "no moe_block case for llama" in llama[2].title
    assert "this emitter has no sliding windows" in dict(m.rows)["gemma2"][0].title


def test_the_index_opens_on_the_matrix_coloured_by_verdict_with_reasons_on_hover(tmp_path):
    records = every_verdict()
    said = publish(records, RUN, tmp_path)
    assert said[-1] == f"reports: {tmp_path / 'index.html'} and a page per family"
    page = (tmp_path / "index.html").read_text()
    assert page.index('<table class="matrix"') < page.index('<table class="sortable" id="results">')
    cells = re.findall(r'<td class="([A-Za-z]+)" title="([^"]*)">', page)
    assert sorted({verdict for verdict, _ in cells}) == ["ERROR", "FAIL", "PASS", "UNSUPPORTED", "na"]
    assert len(cells) == 12  # 4 families × 3 kinds, n/a included
    titles = {html.unescape(t) for _, t in cells}
    assert any(t.startswith("FAIL: llama decode; max |Δ| 7.300e+00") and "exceeds the bound" in t for t in titles)
    assert any("iree-compile exited with 1: <bad>" in t for t in titles)  # escaped in the page, whole on hover
    assert '<a href="llama.html#decode">FAIL</a>' in page and 'class="margin">730×</span>' in page


def test_support_md_is_the_same_matrix_in_markdown(tmp_path):
    publish(every_verdict(), RUN, tmp_path)
    support = (tmp_path / "support.md").read_text()
    assert "| family | prefill | decode | moe_block |" in support
    assert "| llama | PASS (0.2%) | FAIL (730×) | n/a |" in support
    assert "| gemma2 | UNSUPPORTED | UNSUPPORTED | n/a |" in support
    assert "| mixtral | PASS (0.1%) | PASS (0.3%) | PASS (2.0%) |" in support
    assert "| qwen2 | ERROR | ERROR | n/a |" in support
    assert "4 passed, 1 failed, 2 errors, 2 unsupported" in support


def test_the_matrix_renders_each_verdict_in_its_own_colour(tmp_path, browser):
    publish(every_verdict(), RUN, tmp_path)
    assert_renders(browser, tmp_path / "index.html", charts=0)
    colours = browser.execute_script("""const seen = {};
        document.querySelectorAll('#matrix td').forEach(td => { seen[td.className] = getComputedStyle(td).background; });
        return seen;""")
    assert sorted(colours) == ["ERROR", "FAIL", "PASS", "UNSUPPORTED", "na"]
    assert len(set(colours.values())) == 5, colours
