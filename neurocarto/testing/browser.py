"""The page as Playwright sees it: where screenshots go, the graph's Cytoscape instance, a page opened and waited
for, where a graph node is on the screen, and the projection filter toggled and timed as the benchmarks do."""
from __future__ import annotations

import statistics
import time

from neurocarto.testing.serving import ROOT

SHOTS = ROOT / "test-artifacts" / "screenshots"
CY = "document.getElementById('graph')._cyreg.cy"        # the graph's Cytoscape instance, in the page's script
POINTS = "() => document.querySelector('#projection .js-plotly-plot')._fullData.reduce((s, t) => s + t.x.length, 0)"


def open_page(browser, url: str, width: int = 1600, height: int = 900):
    """A new page of `url` (downloads accepted), once its graph element exists."""
    page = browser.new_context(accept_downloads=True, viewport={"width": width, "height": height}).new_page()
    page.goto(url)
    page.wait_for_function("() => window._cyGraph !== undefined || document.querySelector('#graph') !== null")
    return page


def wait_graph(page, at_least: int = 1) -> None:
    """Until the graph shows at least `at_least` scored nodes."""
    page.wait_for_function(f"() => {{ const e = document.getElementById('graph'); return e && e._cyreg && "
                           f"e._cyreg.cy.nodes('[score]').length >= {at_least}; }}", timeout=30000)


def node_point(page, node_id: str, graph: str = "graph") -> tuple[float, float]:
    """The page coordinates of a graph node's centre (in the Cytoscape element `graph`)."""
    box = page.locator(f"#{graph}").bounding_box()
    position = page.evaluate(f"(id) => document.getElementById('{graph}')._cyreg.cy.getElementById(id)"
                             ".renderedPosition()", node_id)
    return box["x"] + position["x"], box["y"] + position["y"]


def toggle_filter(page, state: dict) -> float:
    """Switch the projection between all neurons and the class's (`state["class"]` says which is shown); the
    seconds until the drawn points change."""
    before = page.evaluate(POINTS)
    state["class"] = not state["class"]
    started = time.perf_counter()
    page.check(f"#projection-filter input[value={'class' if state['class'] else 'all'}]")
    page.wait_for_function(f"(before) => ({POINTS})() !== before", arg=before, timeout=60000)
    return time.perf_counter() - started


def percentiles(values: list[float]) -> str:
    """"p50 / p95" of seconds, in ms."""
    ordered = sorted(values)
    return (f"{statistics.median(ordered) * 1000:.0f} / {ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000:.0f}"
            if ordered else "—")
