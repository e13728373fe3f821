"""Reports: the gate writes an index and a page per family that a real browser renders without
errors and without the network, and a failing family's page says where it fails, what the strict
bound, the three-way comparison and the localisation found."""
import csv
import html
import io
import json
import os
import re
import shlex
import shutil
import sys
from dataclasses import replace

import numpy as np
import pytest

from archval.emitter import Config
from archval.harness.checks import builtin, localise, mutants
from archval.harness.cli import main
from archval.harness.core import compare, fixtures, summary, triangulate
from archval.harness.core.case import new_record, run_case
from archval.harness.core.record import STRICT, MutantFacts
from archval.harness.present import index, pages
from archval.harness.present.console import agreement
from archval.harness.present.publish import publish

RUN = summary.run_info("pytest", ["pytest", "tests/test_report.py"], None)


def write(records, directory) -> list[str]:
    """Publishes the records as a run does; the problems met (the last line says where the reports are)."""
    return publish(records, RUN, directory)[:-1]

FAIL_RED = (0xC6, 0x28, 0x28)  # the FAIL badge (report.css)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through chromedriver (Debian's chromium + chromium-driver; .ci/run installs them)."""
    driver_path, why = shutil.which("chromedriver"), None
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        why = "selenium is not installed (pip install the project)"
    if not why and not driver_path:
        why = "chromedriver is not on PATH (apt-get install chromium chromium-driver)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the browser checks")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1600"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def render(browser, page) -> dict:
    """Open a page from disk; what a person would see go wrong: console messages, resources fetched,
    charts that did not lay out."""
    browser.get(page.as_uri())
    collapsed = browser.execute_script("""const shut = [...document.querySelectorAll('details.detail:not([open])')];
        shut.forEach(d => d.open = true);  // as a reader opens a pass's detail: it must lay out too
        return shut.map(d => d.id);""")
    return {"collapsed": collapsed} | browser.execute_script("""return {
        ready: document.readyState, title: document.title,
        fetched: performance.getEntriesByType('resource').map(e => e.name),
        duplicate_ids: [...document.querySelectorAll('[id]')].map(e => e.id).filter((id, i, all) => all.indexOf(id) !== i),
        charts: [...document.querySelectorAll('svg')].map(s => { const b = s.getBoundingClientRect();
                                                                return [b.width, b.height]; })};""") | {
        "console": [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]}


def assert_renders(browser, page, charts: int) -> dict:
    seen = render(browser, page)
    assert seen["ready"] == "complete" and seen["title"], seen
    assert seen["console"] == [], seen["console"]
    assert seen["fetched"] == [], f"{page.name} is not self-contained: it fetched {seen['fetched']}"
    assert seen["duplicate_ids"] == [], seen["duplicate_ids"]
    assert len(seen["charts"]) == charts and all(w > 100 and h > 100 for w, h in seen["charts"]), seen["charts"]
    return seen


def screenshot_has(browser, colour) -> bool:
    from PIL import Image
    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    return any(c == colour for _, c in image.getcolors(maxcolors=1 << 20))


def test_gate_writes_an_index_and_a_page_per_family_that_render(tmp_path, browser, capsys):
    assert main(["--family", "qwen2", "--reports", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"reports: {tmp_path / 'index.html'}" in out
    records = json.loads((tmp_path / "summary.json").read_text())["records"]
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["family"], r["graph"], r["verdict"]) for r in rows] == \
        [(r["family"], r["graph"], r["verdict"]) for r in records] == [("qwen2", "prefill", "PASS"), ("qwen2", "decode", "PASS")]
    assert float(rows[0]["max_abs_diff"]) == records[0]["max_abs_diff"]

    assert_renders(browser, tmp_path / "index.html", charts=0)
    links = browser.execute_script("return [...document.querySelectorAll('#results a')].map(a => a.getAttribute('href'))")
    assert links == ["qwen2.html#prefill", "qwen2.html#decode"]
    # prefill: |Δ| per vocabulary index and the scatter; decode: |Δ| per step and the scatter
    assert_renders(browser, tmp_path / "qwen2.html", charts=4)
    text = browser.find_element("tag name", "body").text
    for shown in ("Against the golden: match", "qkv_bias", "Reproduce: ./validate_arch.sh --family qwen2",
                  "transformers", "IREE compiler", f"{records[1]['max_abs_diff']:.3e}", "17/17 tokens", "oracle"):
        assert shown in text, shown
    assert not screenshot_has(browser, FAIL_RED)


def _mutant_record(fixture, name):
    bug = mutants.MUTANTS[name]
    record = run_case(fixture, bug.graph, texts=bug.texts(fixture.config_path))
    assert record.verdict == "FAIL", record.message
    record.mutant = MutantFacts(name, bug.description)
    return record


def test_a_failing_page_says_which_metric_fails_where_and_by_how_much(tmp_path, browser):
    fixture = fixtures.load("llama")
    decode_bug, prefill_bug = _mutant_record(fixture, "cache_slot_off_by_one"), _mutant_record(fixture, "rope_theta_default")
    passing = run_case(fixture)
    broken = run_case(fixtures.load("qwen2"), texts={"prefill": "this is not StableHLO"})
    assert broken.verdict == "ERROR"
    assert write([passing, decode_bug, prefill_bug, broken], tmp_path) == []

    assert_renders(browser, tmp_path / "llama--cache_slot_off_by_one.html", charts=2)
    worst = decode_bug.decode.timeline[decode_bug.decode.worst_step]
    where = browser.find_element("id", "decode-where").text
    assert (f"max |Δlogit| = {worst.max_abs_diff:.3e} at step {worst.step} (slot {fixture.prompt_len - 1 + worst.step}, "
            f"position {worst.position}), "
            f"vocab index {decode_bug.logits.worst_index}, exceeds the bound 1.0e-02 by "
            f"{worst.max_abs_diff - 1e-2:.3e}") in where
    first_over = next(t for t in decode_bug.decode.timeline if t.max_abs_diff > 1e-2)
    assert (f"first at step {first_over.step} (slot {fixture.prompt_len - 1 + first_over.step}, position "
            f"{first_over.position}") in where
    row = browser.find_element("id", f"decode-step-{worst.step}")
    assert "over" in row.get_attribute("class").split() and "over the bound" in row.text
    assert browser.find_element("id", "verdict").text == "FAIL"
    assert screenshot_has(browser, FAIL_RED)

    assert_renders(browser, tmp_path / "llama--rope_theta_default.html", charts=2)
    where = browser.find_element("id", "prefill-where").text
    assert (f"max |Δlogit| = {prefill_bug.max_abs_diff:.3e} at slot {fixture.prompt_len - 1}, position "
            f"{fixture.prompt_positions()[-1]} (the prompt's "
            f"last token), vocab index {prefill_bug.logits.worst_index}, exceeds the bound") in where

    assert_renders(browser, tmp_path / "llama.html", charts=2)
    assert_renders(browser, tmp_path / "qwen2.html", charts=0)  # an ERROR has no numbers to draw
    assert "does not parse" in browser.find_element("id", "prefill-where").text

    assert_renders(browser, tmp_path / "index.html", charts=0)
    verdicts = lambda: [r.text for r in browser.find_elements("css selector", "#results tbody td:nth-child(3)")]
    assert verdicts() == ["FAIL", "FAIL", "ERROR", "PASS"]  # failing rows first
    browser.find_element("css selector", "#results th:nth-child(4)").click()  # sort by max |Δlogit|
    diffs = [r.max_abs_diff or -1 for r in (broken, passing, decode_bug, prefill_bug)]
    shown = [c.get_attribute("data-sort") for c in browser.find_elements("css selector", "#results tbody td:nth-child(4)")]
    assert [float(x) for x in shown] == sorted(diffs)


def test_a_report_failure_is_said_and_fails_the_run(tmp_path, monkeypatch, capsys):
    """The cases' verdicts stand (summary.json is written), but a run whose index is missing does not pass."""
    def broken(*args, **kwargs):
        raise RuntimeError("template exploded")
    monkeypatch.setattr(index, "render", broken)  # the index is written by the gate's own process
    assert main(["--family", "qwen2", "--reports", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "reports: index.html and summary.csv not written: RuntimeError: template exploded" in out
    assert out.splitlines()[-2:] == ["reports: incomplete (1 problem above): the run cannot pass", "RESULT: FAIL"]
    assert {r.verdict for r in summary.read(tmp_path / "summary.json")[1]} == {"PASS"}


def test_a_page_for_nan_logits_names_them_and_still_draws(tmp_path):
    """NaN/Inf reach the tables and the charts leave them out instead of failing the page."""
    fixture = fixtures.load("llama")
    oracle = np.linspace(-2, 2, fixture.config["vocab_size"], dtype=np.float32)
    graph = oracle.copy()
    graph[7], graph[9] = np.nan, np.inf
    comparison = compare.compare_logits(oracle, graph)
    record = new_record(fixture, "prefill")
    record.checks, record.max_abs_diff = compare.logit_checks(comparison, fixture.bound), comparison.max_abs_diff
    record.logits = comparison.result(fixture.prompt_len - 1, oracle, graph, fixture.bound)
    assert write([record], tmp_path) == []
    page = (tmp_path / "llama.html").read_text()
    assert "NaN/Inf: the graph&#39;s logits hold 2 non-finite values (bound 0)" in page
    assert page.count("<svg") == 2


def test_a_flip_that_takes_an_out_of_bound_error_is_labelled_a_failure_everywhere(tmp_path):
    """An error of 5.3 swaps the top tokens of an oracle whose gap is 0.1: the gap is within 2|Δ|, but only an
    error far over the bound explains the swap, so it is no near tie: the console, the argmax row and the gap
    row say what the values say (issue 20: the page had marked both rows ok)."""
    fixture = fixtures.load("llama")
    oracle = np.zeros(fixture.config["vocab_size"], np.float32)
    oracle[24], oracle[33] = 1.0, 0.9
    graph = oracle.copy()
    graph[24], graph[33] = -4.3, 1.0
    comparison = compare.compare_logits(oracle, graph)
    record = new_record(fixture, "prefill")
    record.checks, record.max_abs_diff = compare.logit_checks(comparison, fixture.bound), comparison.max_abs_diff
    record.logits = comparison.result(fixture.prompt_len - 1, oracle, graph, fixture.bound)
    assert not record.logits.near_tie_flip and agreement(record) == "argmax differs"
    assert write([record], tmp_path) == []
    rows = {row.split("</td>")[0].split(">")[-1]: row
            for row in (tmp_path / "llama.html").read_text().split("<tr")[1:]}
    assert rows["argmax"].rstrip().endswith("FAILS</td></tr>"), rows["argmax"]
    assert "flip possible</td></tr>" in rows["oracle top-1/top-2 gap"], rows["oracle top-1/top-2 gap"]


def page_rows(page) -> dict[str, str]:
    """A page's table rows by their first cell's text, each row's cells' text joined by ' | '."""
    rows = [[" ".join(html.unescape(re.sub(r"<[^>]+>", "", cell)).split())
             for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
            for row in page.read_text().split("<tr")[1:]]
    return {cells[0]: " | ".join(cells) for cells in rows if cells}


def test_a_failing_page_says_its_numbers_plainly(tmp_path):
    """Issue 31: the gap row's bound is the bound alone and its status whether a flip is possible; a margin far
    over its bound is a ratio (732× the bound, not 73217.5% of it); a token's cache slot and its position apart
    (position 14 of a 13-token prompt); the built-in emitter's flags show an empty list as none and a plain RoPE
    without the llama3 and YaRN parameters it does not read."""
    fixture = fixtures.load("llama")
    prefill, decode = _mutant_record(fixture, "rope_theta_default"), _mutant_record(fixture, "cache_slot_off_by_one")
    for record in (prefill, decode):
        record.emitter_flags = builtin.flags(fixture.config_path)
    assert write([prefill, decode], tmp_path) == []
    rows = page_rows(tmp_path / "llama--rope_theta_default.html")
    gap = rows["oracle top-1/top-2 gap"]
    assert gap.split(" | ")[2] == f"> 2 × |Δ| = {2 * prefill.max_abs_diff:.3e}"
    assert gap.split(" | ")[-1] == ("flip possible" if prefill.logits.oracle_top2_gap <= 2 * prefill.max_abs_diff
                                    else "no flip possible")
    ratio = prefill.max_abs_diff / prefill.bound
    assert ratio > 10 and f"({ratio:,.0f}× the bound)" in rows["max |Δlogit|"], rows["max |Δlogit|"]
    assert "% of the bound" not in rows["max |Δlogit| vs the strict bound"]
    assert f">{ratio:,.0f}×</td>" in (tmp_path / "index.html").read_text()  # the index's column of bound
    last = f"slot {fixture.prompt_len - 1}, position {fixture.prompt_positions()[-1]}"
    assert fixture.prompt_positions()[-1] >= fixture.prompt_len and rows["max |Δlogit|"].split(" | ")[4].startswith(last)
    assert rows["weight_names"] == "weight_names | none"
    assert rows["rope_full"] == "rope_full | theta=500000.0, kind=default"
    timeline = (tmp_path / "llama--cache_slot_off_by_one.html").read_text().split('id="decode-step-5">')[1]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", timeline.split("</tr>")[0])
    assert cells[:3] == ["5", str(fixture.prompt_len + 4), str(decode.decode.timeline[5].position)]


def test_a_passing_page_shows_the_three_way_comparison_and_the_noise_ratio(tmp_path, browser):
    record = run_case(fixtures.load("llama"))
    x, n = record.xla, record.noise
    assert record.verdict == "PASS" and x.verdict == triangulate.AGREE, record.message
    assert write([record], tmp_path) == []
    assert_renders(browser, tmp_path / "llama.html", charts=2)
    metrics = browser.find_element("css selector", "#prefill table.metrics").text
    assert (f"max |Δlogit| vs the strict bound {record.max_abs_diff:.3e} ({n.noise_ratio:.1f}× the noise "
            f"floor) ≤ {n.strict_factor:g}× noise floor {n.noise_floor:.2e} = "
            f"{n.strict_bound:.2e}") in metrics
    three_way = browser.find_element("id", "prefill-three-way").text
    for label, key in (("oracle – IREE", "oracle_iree"), ("oracle – XLA", "oracle_xla"), ("IREE – XLA", "iree_xla")):
        assert f"{label} {getattr(x, key):.3e} ≤ {x.bound:.2e} agree" in three_way, label
    assert pages.THREE_WAY_SENTENCES[triangulate.AGREE] in three_way
    assert "would have passed" not in browser.find_element("id", "prefill").text
    with open(tmp_path / "summary.csv", newline="") as f:
        [row] = list(csv.DictReader(f))
    assert list(row)[-3:] == ["xla_verdict", "noise_ratio", "bundle"]
    assert (row["xla_verdict"], float(row["noise_ratio"])) == (triangulate.AGREE, n.noise_ratio)
    assert_renders(browser, tmp_path / "index.html", charts=0)
    cells = [c.text for c in browser.find_elements("css selector", "#results tbody td")][-4:-2]  # before time, why
    assert cells == [f"{n.noise_ratio:.1f}", triangulate.AGREE]


@pytest.fixture(scope="module")
def strict_only_mutant():
    """llama with attention scores 0.1% too large: within the fixed 1e-2 bound, far over the strict one; with
    the localisation the gate adds to a failing prefill case."""
    fixture = fixtures.load("llama")
    record = _mutant_record(fixture, "attn_scale_permille")
    assert record.fixed_verdict == "PASS" and record.max_abs_diff < record.bound, record
    bug = mutants.MUTANTS["attn_scale_permille"]
    return replace(record, localisation=localise.of_builtin(fixture, bug.config(Config.from_json(fixture.config_path)),
                                                            bug.core))


def test_a_mutant_only_the_strict_bound_catches_says_the_fixed_bound_alone_would_have_passed_it(
        tmp_path, browser, strict_only_mutant):
    record = replace(strict_only_mutant, localisation=None)
    assert write([record], tmp_path) == []
    assert_renders(browser, tmp_path / "llama--attn_scale_permille.html", charts=2)
    assert "the fixed bound alone would have passed it" in browser.find_element("id", "prefill-strict-note").text.lower()
    strict = next(r for r in browser.find_elements("css selector", "#prefill table.metrics tr")
                  if "vs the strict bound" in r.text)
    assert "over" in strict.get_attribute("class").split() and strict.text.endswith("FAILS")
    three_way = browser.find_element("id", "prefill-three-way").text
    assert "IREE and XLA agree against the oracle: the emitter's graph is wrong" in three_way
    assert f"oracle – IREE {record.xla.oracle_iree:.3e} ≤ {record.xla.bound:.2e} disagree" in three_way


def test_a_localised_failure_shows_its_summary_and_a_chart_per_tap(tmp_path, browser, strict_only_mutant):
    found = strict_only_mutant.localisation
    assert found.first is not None
    assert write([strict_only_mutant], tmp_path) == []
    assert_renders(browser, tmp_path / "llama--attn_scale_permille.html", charts=3)  # |Δ| per index, the scatter, the taps
    shown = browser.find_element("id", "prefill-localisation")
    assert found.summary in shown.text
    chart = browser.find_element("id", "llama--attn_scale_permille-prefill-taps")
    assert len(chart.find_elements("css selector", ".error-points circle")) == len(found.taps)
    assert f"first over: layer {found.first.layer} {found.first.point}" in chart.text


def test_missing_or_failed_diagnoses_render_as_such(tmp_path, browser, strict_only_mutant):
    """XLA's error and a failed localisation are said; a record without the diagnoses (the mutation
    tests' xla=False, or --fixed-bound-only) says they were not run."""
    failed = replace(strict_only_mutant, mutant=replace(strict_only_mutant.mutant, name="xla_failed"),
                     xla=triangulate.unavailable("XLA compile: unsupported op"),
                     localisation=localise.unlocalised(RuntimeError("taps exploded")))
    bare = replace(strict_only_mutant, mutant=replace(strict_only_mutant.mutant, name="bare"), xla=None, noise=None,
                   localisation=None, checks=[c for c in strict_only_mutant.checks if c.name != STRICT])
    assert write([failed, bare], tmp_path) == []
    assert_renders(browser, tmp_path / "llama--xla_failed.html", charts=2)
    assert "XLA compile: unsupported op" in browser.find_element("id", "prefill-three-way").text
    assert "Localisation failed: RuntimeError: taps exploded" in browser.find_element("id", "prefill-localisation").text
    assert_renders(browser, tmp_path / "llama--bare.html", charts=2)
    section = browser.find_element("id", "prefill").text
    assert "XLA: not run." in section and "Strict bound (noise floor): not run" in section
    assert "vs the strict bound" not in section and "Localisation" not in section
    with open(tmp_path / "summary.csv", newline="") as f:
        rows = {r["mutant"]: r for r in csv.DictReader(f)}
    assert rows["xla_failed"]["xla_verdict"] == "ERROR: XLA compile: unsupported op"
    assert (rows["bare"]["xla_verdict"], rows["bare"]["noise_ratio"]) == ("", "")


def test_the_index_says_why_and_where_filters_by_verdict_and_keeps_numbers_on_one_line(tmp_path, browser):
    from archval.harness.core.record import Localisation
    fixture = fixtures.load("llama")
    passing, failing = run_case(fixture), _mutant_record(fixture, "rope_theta_default")
    failing.localisation = Localisation(None, None, [], 10.0, "layer 0 attention leaves the noise floor first")
    broken = run_case(fixtures.load("qwen2"), texts={"prefill": "this is not StableHLO"})
    assert write([passing, failing, broken], tmp_path) == []
    seen = assert_renders(browser, tmp_path / "index.html", charts=0)
    rows = {row.find_element("css selector", "td").text.split("\n")[0] + " " + row.get_attribute("class"): row
            for row in browser.find_elements("css selector", "#results tbody tr")}
    why = {key: row.find_element("css selector", "td.why").text for key, row in rows.items()}
    assert why["llama PASS"] == ""
    assert why["llama FAIL"] == f"{failing.message}\nlocalised: layer 0 attention leaves the noise floor first"
    assert " ".join(why["qwen2 ERROR"].split()) == " ".join(broken.message.split())
    browser.find_element("css selector", "#filter input[value=PASS]").click()
    shown = [r.get_attribute("class") for r in browser.find_elements("css selector", "#results tbody tr")
             if r.is_displayed()]
    assert shown == ["FAIL", "ERROR"]
    assert seen["collapsed"] == []
    # a long reason squeezes the other columns: a number must still not break at its exponent's sign
    assert write([passing, broken], tmp_path / "squeezed") == []
    assert_renders(browser, tmp_path / "squeezed" / "index.html", charts=0)
    one_line = browser.execute_script("""return [...document.querySelectorAll('td.num')].filter(td => {
        const r = document.createRange(); r.selectNodeContents(td);
        return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1; }).map(td => td.textContent);""")
    assert one_line == [], f"numbers wrapped at 1280 px: {one_line}"


def test_a_pass_page_collapses_its_detail_and_a_fail_page_does_not(tmp_path, browser):
    fixture = fixtures.load("llama")
    assert write([run_case(fixture), run_case(fixture, "decode"), _mutant_record(fixture, "rope_theta_default")],
                 tmp_path) == []
    assert render(browser, tmp_path / "llama.html")["collapsed"] == ["prefill-detail", "decode-detail"]
    assert render(browser, tmp_path / "llama--rope_theta_default.html")["collapsed"] == []


def test_a_run_removes_the_pages_an_earlier_run_wrote_and_nothing_else(tmp_path):
    fixture = fixtures.load("llama")
    broken = run_case(fixtures.load("qwen2"), texts={"prefill": "this is not StableHLO"})
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "mine.html").write_text("mine too")
    passing = new_record(fixture, "prefill")
    passing.check("bound", "compare", True)
    assert write([passing, broken], tmp_path) == []
    assert (tmp_path / "qwen2.html").is_file()
    assert write([passing], tmp_path) == []
    assert not (tmp_path / "qwen2.html").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"notes.txt", "mine.html", "llama.html", "index.html",
                                                     "summary.json", "support.md", "summary.csv", "junit.xml",
                                                     ".archval-written.json"}


def test_a_page_names_the_emitter_that_wrote_its_graphs_and_shows_parsed_flags_for_the_built_in_only(tmp_path):
    """Under `pytest --emitter CMD` the run's emitter is CMD, yet a mutant's graph is the built-in emitter's:
    each page names the emitter its records say wrote the graphs, never the run's in their stead."""
    from archval.harness.checks import builtin
    fixture, external = fixtures.load("llama"), (sys.executable, "my emitter.py", "--fast")
    run = summary.run_info("pytest", ["pytest", "--emitter", shlex.join(external)], shlex.join(external))
    theirs = new_record(fixture, "prefill", emitter=external)
    ours = new_record(fixture, "prefill")
    ours.emitter_flags = builtin.flags(fixture.config_path)
    ours.mutant = MutantFacts("eps_10x", "RMSNorm epsilon 10x the config's")
    for record in (theirs, ours):
        record.check("bound", "compare", True)
    publish([theirs, ours], run, tmp_path)
    page = html.unescape((tmp_path / "llama.html").read_text())
    assert f'<code id="emitter">{shlex.join(external)}</code>' in page
    assert "How it reads the config is its own" in page and "rms_norm_eps" not in page
    page = (tmp_path / "llama--eps_10x.html").read_text()
    assert '<code id="emitter">built-in (python -m archval.emitter)</code>' in page
    assert "Its flags as it parses this config" in page and "rms_norm_eps" in page


def test_summary_csv_neutralises_formulas_and_keeps_numbers_numbers():
    """An emitter's words reach `message`: a cell beginning like a formula is text in a spreadsheet; a
    negative margin is still a number."""
    said = {"a": '=HYPERLINK("http://evil","click")', "b": "+cmd|' /C calc'!A0", "c": "-2+3", "d": "@SUM(A1)",
            "=e": "plain words"}
    records = []
    for family, message in said.items():
        record = replace(new_record(fixtures.load("llama"), "prefill"), family=family, max_abs_diff=0.5)
        record.check("bound", "compare", False, message, 0.5, 1e-2)
        records.append(record)
    _, text = index.render(records, RUN, set(), [])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(r["message"] for r in rows) == sorted(["'=HYPERLINK(\"http://evil\",\"click\")", "'+cmd|' /C calc'!A0",
                                                         "'-2+3", "'@SUM(A1)", "plain words"])
    assert sorted(r["family"] for r in rows) == ["'=e", "a", "b", "c", "d"]
    for row in rows:
        assert float(row["margin"]) == pytest.approx(-0.49) and row["margin"].startswith("-")
        assert float(row["max_abs_diff"]) == 0.5
