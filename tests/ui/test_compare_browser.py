"""Comparing two runs in a real browser: the compare views from the URL, a table row's concept ringed in both
projections and its matches linked in the graphs, a node picked in one graph ringing its matches in the other run's
projection, and the URL in a new page restoring the comparison."""
import pytest

from neurocarto.store.comparisons import compare
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun
from neurocarto.testing.browser import SHOTS, node_point, open_page
from neurocarto.testing.serving import served_app

COMPARE_CY = "document.getElementById('compare-graph')._cyreg.cy"
RINGS = "(side) => document.querySelector('#compare-projection .js-plotly-plot')._fullData.slice(-2)[side].x.length"


@pytest.fixture(scope="module")
def server(compared_runs, tmp_path_factory):
    cache, key_a, key_b = compared_runs
    with Store(cache) as store:
        compare(StoredRun(store, key_a), StoredRun(store, key_b))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served_app(cache, key_a, tmp_path_factory.mktemp("server") / "app.log") as base:
        yield base, key_a, key_b


def wait_compare(page) -> None:
    page.wait_for_function(f"() => {{ const e = document.getElementById('compare-graph'); return e && e._cyreg && "
                           f"{COMPARE_CY}.nodes('[score]').length > 0 && document.querySelector("
                           "'#compare-projection .js-plotly-plot') && document.querySelectorAll("
                           "'#compare-table tr[data-concept]').length > 2; }", timeout=60000)


def test_comparing_two_runs_in_the_browser(server, browser):
    base, key_a, key_b = server
    page = open_page(browser, f"{base}/?run={key_a}&class=Sneaker&compare={key_b}")
    wait_compare(page)
    assert page.is_hidden("#views") and page.is_visible("#compare-views")
    assert page.evaluate(f"() => {COMPARE_CY}.edges('.match').length") > 0
    page.screenshot(path=SHOTS / "30-compare.png")

    page.click("#compare-table th[data-sort='size']")       # sorted by size, largest first
    page.wait_for_function("() => document.querySelector(\"#compare-table th[data-sort='size']\").textContent"
                           ".endsWith('▼')")
    sizes = page.eval_on_selector_all("#compare-table tr[data-concept] td:nth-child(5)", "cells => cells.map(c => +c.textContent)")
    assert sizes == sorted(sizes, reverse=True)
    page.click("#compare-table tr[data-concept] td:nth-child(3)")
    page.wait_for_function(f"() => ({RINGS})(0) > 0 && ({RINGS})(1) >= 0", timeout=30000)
    assert page.evaluate(RINGS, 0) >= 2
    page.screenshot(path=SHOTS / "31-compare-row-picked.png")

    node = page.evaluate(f"() => {COMPARE_CY}.edges('.match')[0].source().id()")
    page.mouse.click(*node_point(page, node, "compare-graph"))
    page.wait_for_function(f"() => {COMPARE_CY}.getElementById('{node}').hasClass('selected')", timeout=30000)
    matched = page.evaluate(f"() => {COMPARE_CY}.edges('.match').filter(e => e.source().id() === '{node}')"
                            ".map(e => e.target().id())")
    page.wait_for_function(f"(matched) => ({RINGS})(1) > 0 && matched.every("
                           f"id => {COMPARE_CY}.getElementById(id).hasClass('selected'))", arg=matched, timeout=30000)
    page.screenshot(path=SHOTS / "32-compare-node-picked.png")

    again = open_page(browser, page.url)
    wait_compare(again)
    assert f"compare={key_b}" in again.url and again.is_visible("#compare-views")
    again.close()
