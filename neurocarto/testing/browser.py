"""The page as Playwright sees it: where screenshots go, the graph's Cytoscape instance, a page opened and waited
for, and where a graph node is on the screen."""
from __future__ import annotations

from neurocarto.testing.serving import ROOT

SHOTS = ROOT / "test-artifacts" / "screenshots"
CY = "document.getElementById('graph')._cyreg.cy"        # the graph's Cytoscape instance, in the page's script


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
