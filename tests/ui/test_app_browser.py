"""The app in a real browser (Playwright driving Debian's Chromium), on a small real run.

Screenshots of every step go to test-artifacts/screenshots/ (printed at the start).
"""
import io
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest

from neurocarto.testing.browser import CY, SHOTS, node_point, open_page, wait_graph
from neurocarto.testing.serving import served_app
from neurocarto.ui.snapshot import CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@pytest.fixture(scope="module")
def server(small_fashion_run, tmp_path_factory):
    _config, execution, manifest = small_fashion_run
    SHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots in {SHOTS}")
    with served_app(execution.cache, manifest["key"], tmp_path_factory.mktemp("server") / "app.log") as base:
        yield base, manifest


def first_cluster_node(page) -> str:
    return page.evaluate(f"() => {{ const n = {CY}.nodes('.cluster'); return (n.length ? n : {CY}.nodes('[score]'))[0].id(); }}")


def test_a_session_in_the_browser(server, browser):
    base, manifest = server
    page = open_page(browser, base + "/")
    wait_graph(page)
    page.screenshot(path=SHOTS / "01-opened.png")

    # choose a class through the search box
    page.wait_for_function("() => (document.getElementById('class-value') || {}).textContent")
    page.click("#class")
    page.wait_for_selector(".dash-dropdown-search")
    page.keyboard.type("NEAK")       # a case-insensitive substring, emphasised in the matching names
    page.wait_for_function("() => [...document.querySelectorAll('mark')].some(m => m.textContent === 'neak')")
    assert page.locator(".dash-dropdown-options [role=option]").all_inner_texts() == ["Sneaker"]
    page.screenshot(path=SHOTS / "02a-type-ahead.png")
    page.get_by_role("option", name="Sneaker").click()
    page.wait_for_function("() => document.getElementById('graph-title').textContent.includes('Sneaker')")
    wait_graph(page)
    page.wait_for_url(lambda url: "class=Sneaker" in url)
    page.screenshot(path=SHOTS / "02-class-sneaker.png")

    # every slider mark's label lies inside the control that clips it (none cut off at the ends)
    clipped = page.evaluate("""() => [...document.querySelectorAll('.graph-controls > div')].flatMap(box => {
        const outer = box.getBoundingClientRect();
        return [...box.querySelectorAll('.dash-slider-mark')].filter(mark => {
            const r = mark.getBoundingClientRect(); return r.left < outer.left - 0.5 || r.right > outer.right + 0.5;
        }).map(mark => mark.textContent); })""")
    assert clipped == []

    # hover a graph node: its members light up in the projection
    node = first_cluster_node(page)
    members = page.evaluate(f"(id) => {CY}.getElementById(id).data('members').length", node)
    x, y = node_point(page, node)
    page.mouse.move(x, y)
    page.wait_for_function(f"() => {{ const g = document.querySelector('#projection .js-plotly-plot');"
                           f" const t = g._fullData.find(t => t.name === 'highlighted'); return t && t.x.length === {members}; }}")
    page.wait_for_function("() => getComputedStyle(document.getElementById('graph-hover')).visibility === 'visible'")
    page.wait_for_function(f"() => document.getElementById('graph-hover').innerText.includes('{node}')")
    label = page.evaluate(f"(id) => {CY}.getElementById(id).data('label')", node)
    assert "%" in label and label in page.inner_text("#graph-hover")       # e.g. "Sneaker 91% (3)"
    page.screenshot(path=SHOTS / "03-hover-node.png")
    header = page.locator("h1, header").first.bounding_box()
    page.mouse.move(header["x"] + 5, header["y"] + 5)         # straight off the graph, no step over its canvas
    page.wait_for_function("() => getComputedStyle(document.getElementById('graph-hover')).visibility === 'hidden'")

    # click it: selected in both views, its members' patches in the example panel
    page.mouse.click(x, y)
    page.wait_for_selector(".node-title")
    assert node in page.inner_text("#examples")
    page.wait_for_function("() => [...document.querySelectorAll('#examples img')].some(i => i.naturalWidth > 0)")
    assert page.evaluate(f"(id) => {CY}.getElementById(id).hasClass('selected')", node)
    page.wait_for_url(lambda url: "select=" in url)
    page.wait_for_function("(label) => { const g = document.querySelector('#projection .js-plotly-plot');"
                           " return g.layout.shapes.length === 1 && g.layout.annotations.at(-1).text === label; }", arg=label)
    assert label.split(" (")[0] in page.inner_text("#examples")         # the same label in the example panel
    page.screenshot(path=SHOTS / "04-node-selected.png")

    # concept cascade from the selected node
    page.click("#mode input")
    page.wait_for_function(f"() => {CY}.nodes('.chain').length >= 2")
    page.wait_for_url(lambda url: "mode=cascade" in url)
    page.screenshot(path=SHOTS / "05-cascade.png")

    # the slider hides low-scoring nodes (and their edges)
    before = page.evaluate(f"() => {CY}.nodes('[score]').length")
    handle = page.locator("#threshold .rc-slider-handle, #threshold [role=slider]").first
    handle.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    page.wait_for_url(lambda url: "threshold=0.5" in url)
    page.wait_for_function(f"() => {CY}.nodes('[score]').length < {before}")
    page.screenshot(path=SHOTS / "06-threshold.png")

    # click a point in the projection: the neuron and its 10 most related neurons
    point = page.evaluate("""() => {
        const g = document.querySelector('#projection .js-plotly-plot');
        const l = g._fullLayout, t = g._fullData[0];
        const box = g.getBoundingClientRect();
        return [box.left + l._size.l + l.xaxis.d2p(t.x[0]), box.top + l._size.t + l.yaxis.d2p(t.y[0])];
    }""")
    page.mouse.move(point[0], point[1])     # WebGL points are picked on hover first
    page.wait_for_selector("#projection-tooltip img")
    neuron_id = page.inner_text("#projection-tooltip strong")
    page.screenshot(path=SHOTS / "07-hover-point.png")
    page.mouse.click(point[0], point[1])
    page.wait_for_selector(".related-neuron")
    assert page.locator(".related-neuron").count() == 10
    page.wait_for_function("() => { const g = document.querySelector('#projection .js-plotly-plot');"
                           " const t = g._fullData.find(t => t.name === 'highlighted'); return t && t.x.length >= 10; }")
    page.screenshot(path=SHOTS / "08-neuron-selected.png")

    # the URL restores the same view in a new page
    page.wait_for_url(lambda url: quote(neuron_id) in url)
    shared = page.url
    other = open_page(browser, shared)
    wait_graph(other)
    other.wait_for_selector(".related-neuron")
    assert "Sneaker" in other.inner_text("#graph-title")
    assert node in other.inner_text("#examples")       # the selected node (maybe below the threshold now)
    chain = f"() => {CY}.nodes('.chain').map(n => n.id()).sort().join()"
    assert other.evaluate(chain) == page.evaluate(chain) != ""
    assert other.evaluate(f"() => {CY}.nodes('[score]').length") == page.evaluate(f"() => {CY}.nodes('[score]').length")
    other.screenshot(path=SHOTS / "09-restored-from-url.png")


def node_count(page) -> int:
    return page.evaluate(f"() => {CY}.nodes('[score]').length")


def test_the_cut_regroups_the_graph_and_the_selection_follows(server, browser):
    base, _ = server
    page = open_page(browser, base + "/?class=Bag&detail=all")      # every node: the counts show the regrouping
    wait_graph(page)
    page.wait_for_function("() => document.getElementById('graph-title').textContent.includes('Bag')")
    own = node_count(page)
    node = first_cluster_node(page)
    members = page.evaluate(f"(id) => {CY}.getElementById(id).data('members').length", node)
    x, y = node_point(page, node)
    page.mouse.click(x, y)
    page.wait_for_selector(".node-title")
    page.wait_for_url(lambda url: "select=" in url and "cut=auto" in url)

    handle = page.locator("#cut [role=slider]").first
    handle.focus()
    page.keyboard.press("Home")             # the floor: the coarsest cut, clusters merged into larger concepts
    page.wait_for_url(lambda url: "cut=0.05" in url)
    page.wait_for_function(f"() => {CY}.nodes('[score]').length < {own}")
    assert not page.locator("#cut-auto input").is_checked()
    coarse = node_count(page)
    assert page.evaluate(f"() => {CY}.nodes('.selected').length") == 1       # the selection followed its neuron
    page.wait_for_selector(".node-title")
    assert page.evaluate(f"() => {CY}.nodes('.selected')[0].data('members').length") >= members
    page.screenshot(path=SHOTS / "11-cut-coarse.png")

    page.keyboard.press("End")              # the finest cut: only near-duplicates stay together
    page.wait_for_url(lambda url: "cut=0.6" in url)
    page.wait_for_function(f"() => {CY}.nodes('[score]').length > {coarse}")
    fine = node_count(page)
    assert fine >= own
    page.screenshot(path=SHOTS / "12-cut-fine.png")

    shared = page.url
    page.click("#cut-auto input")           # back to each layer's own cut
    page.wait_for_url(lambda url: "cut=auto" in url)
    page.wait_for_function(f"() => {CY}.nodes('[score]').length === {own}")

    other = open_page(browser, shared)      # the URL carries the cut
    wait_graph(other)
    other.wait_for_function(f"() => {CY}.nodes('[score]').length === {fine}")
    assert not other.locator("#cut-auto input").is_checked()
    assert other.evaluate(f"() => {CY}.nodes('.selected').length") == 1


@pytest.mark.parametrize("query, message", [
    ("?cut=0.9", "cut must be “auto” or a Jaccard threshold from 0.05 to 0.6, not “0.9”"),
    ("?run=nope", "Unknown run “nope”"),
    ("?class=Unicorn", "Unknown class “Unicorn”"),
    ("?select=mixed9:1", "Unknown neuron or node “mixed9:1”"),
])
def test_bad_urls_explain_and_stay_usable(server, browser, query, message):
    base, _ = server
    page = open_page(browser, base + "/" + query)
    page.wait_for_selector("#message:not(:empty)")
    assert message in page.inner_text("#message")
    wait_graph(page)
    page.screenshot(path=SHOTS / f"10-bad-url-{query.split('=')[0].strip('?')}.png")
    if "cut=" in query:
        assert page.locator("#cut-auto input").is_checked()


def test_image_routes(server):
    base, manifest = server
    key = manifest["key"]
    with urllib.request.urlopen(f"{base}/patch/{key}/0/0.png", timeout=20) as response:
        assert response.headers["Content-Type"] == "image/png" and "max-age" in response.headers["Cache-Control"]
        assert response.read().startswith(b"\x89PNG")
    with urllib.request.urlopen(f"{base}/mosaic/{key}/0.png", timeout=20) as response:
        assert response.read().startswith(b"\x89PNG")
    with urllib.request.urlopen(f"{base}/members/{key}/0.1.2.png", timeout=20) as response:   # a cluster node's image
        from PIL import Image
        mosaic = Image.open(io.BytesIO(response.read()))
        assert mosaic.size == (128, 128)        # 2×2 patches of 64²
    for bad in (f"/members/{key}/0.1.2.3.4.5.6.7.8.9.png", f"/members/{key}/0..1.png", f"/members/{key}/a.1.png",
                f"/members/{key}/99999999.png", f"/members/{key}/-1.2.png", "/members/nope/0.png",
                f"/patch/{key}/999999/0.png", f"/patch/{key}/0/99.png", "/patch/nope/0/0.png",
                f"/patch/{key}/-1/0.png", f"/patch/{key}/..%2F..%2Fetc%2Fpasswd/0.png", f"/mosaic/{key}/99999.png",
                f"/patch/{key}/0/0.png/../../../../app.py"):
        with pytest.raises(urllib.error.HTTPError, match="404") as error:
            urllib.request.urlopen(base + bad, timeout=20)
        assert error.value.code == 404, bad


def test_no_path_reaches_a_file(server):
    """Dash answers unknown paths with its page, never with a file of the project or the system."""
    base, _ = server
    for path in ("/../app.py", "/app.py", "/%2e%2e/%2e%2e/etc/passwd", "/assets/../app.py", "/assets/%2e%2e/app.py"):
        try:
            body = urllib.request.urlopen(base + path, timeout=20).read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            assert error.code in (400, 404), path
            continue
        assert "def main" not in body and "root:" not in body, path


def test_exports_png_and_svg_of_both_views(server, browser, tmp_path):
    base, _ = server
    page = open_page(browser, base + "/?class=Bag")
    errors = []      # uncaught page errors (cytoscape-svg logs harmless console noise, so console is not checked)
    page.on("pageerror", lambda e: errors.append(str(e)))
    wait_graph(page)
    page.click("#paper input")
    page.wait_for_timeout(500)
    page.screenshot(path=SHOTS / "11-paper-style.png")
    for view in ("projection", "graph"):
        for kind in ("png", "svg"):
            with page.expect_download(timeout=30000) as download:
                page.click(f"#export-{view}-{kind}")
            path = tmp_path / f"{view}.{kind}"
            download.value.save_as(path)
            content = path.read_bytes()
            if kind == "png":
                assert content.startswith(b"\x89PNG") and len(content) > 5000, view
            else:
                assert b"<svg" in content[:2000] and len(content) > 2000, view
    assert errors == []


READABILITY = f"""() => {{
    const cy = {CY}, zoom = cy.zoom(), box = document.getElementById('graph').getBoundingClientRect();
    const nodes = cy.nodes('[score]'), rows = cy.nodes('.row-label');
    const sizes = nodes.map(n => n.renderedWidth()).sort((a, b) => a - b);
    const fonts = nodes.map(n => parseFloat(n.style('font-size')) * zoom)
        .concat(rows.map(n => parseFloat(n.style('font-size')) * zoom));
    const inside = nodes.every(n => {{ const p = n.renderedPosition(); return p.x >= 0 && p.y >= 0
        && p.x <= box.width && p.y <= box.height; }});
    return {{nodes: nodes.length, edges: cy.edges().length, zoom: zoom, p5: sizes[Math.floor(0.05 * sizes.length)],
             font: Math.min(...fonts), inside: inside, height: cy.elements('[score], .row-label').renderedBoundingBox().h,
             panel: box.height}};
}}"""


def readability(page) -> dict:
    """Once the summary is laid out for the panel's present size and fitted to it."""
    page.wait_for_function(f"() => {{ const f = {CY}.getElementById('frame:1'), e = document.getElementById('graph');"
                           " if (f.length !== 1) return false; const r = f.renderedPosition();"
                           " return f.position('x') === Math.round(e.clientWidth)"
                           " && f.position('y') === Math.round(e.clientHeight)"
                           " && Math.abs(r.x - e.clientWidth) < 2 && Math.abs(r.y - e.clientHeight) < 2; }",
                           timeout=30000)
    page.wait_for_load_state("networkidle")
    return page.evaluate(READABILITY)


def assert_readable(page, label: str, graph_nodes: int) -> None:
    """At 1600×900 and 1280×720: nodes ≥ 28 px (5th percentile), labels and layer names ≥ 11 px, ≤ 3 edges a node,
    the panel's height used, every node on screen; "all nodes" shows them all."""
    for width, height in ((1600, 900), (1280, 720)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_function(f"() => window.innerWidth === {width}")
        page.wait_for_timeout(400)          # the panel's new size reaches the server, the summary is redrawn
        found = readability(page)
        page.screenshot(path=SHOTS / f"13-readable-{label}-{width}x{height}.png")
        print(label, width, height, found)
        assert found["p5"] >= 28 and found["font"] >= 11 and found["inside"], found
        assert found["edges"] <= 3 * found["nodes"] and found["height"] >= 0.75 * found["panel"], found
    page.click("#graph-detail input[value=all]")
    page.wait_for_url(lambda url: "detail=all" in url)
    page.wait_for_function(f"() => {CY}.nodes('[score]').length === {graph_nodes}")
    page.screenshot(path=SHOTS / f"13-readable-{label}-all-nodes.png")


def test_the_graph_summary_is_readable_without_zoom(server, browser, small_fashion_run):
    base, manifest = server
    _config, execution, _ = small_fashion_run
    from neurocarto.store.disk import Store

    with Store(execution.cache) as store:
        coat = store.get_json(manifest["key"], "graph/4")
    page = open_page(browser, base + "/?class=Coat")
    wait_graph(page)
    assert_readable(page, "default", len(coat["nodes"]))


def test_a_graph_of_hundreds_of_nodes_is_readable_without_zoom(browser, tmp_path):
    """The synthetic 100K-neuron run: 40 layers, over 300 nodes per class."""
    from neurocarto.store.disk import Store
    from neurocarto.testing.synthetic_run import write_synthetic_run

    key = write_synthetic_run(tmp_path / "store", 100_000)
    with Store(tmp_path / "store") as store:
        nodes = len(store.get_json(key, "graph/123")["nodes"])
    assert nodes >= 300
    with served_app(tmp_path / "store", key, tmp_path / "app.log") as base:
        page = open_page(browser, base + "/?class=class%20123")
        wait_graph(page)
        assert_readable(page, "synthetic", nodes)
