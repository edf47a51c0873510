"""`python -m neurocarto snapshot`: the app's views rendered headlessly (Playwright + Chromium) to PNG or SVG.

The app is served in this process on a free 127.0.0.1 port; the page is opened at the URL that carries the
wanted state, and each view is exported with the same functions as the page's export buttons (Plotly's
image export, cytoscape's PNG/SVG), so a scripted figure matches what a user would export by hand.
"""
from __future__ import annotations

import base64
import io
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote

from neurocarto.errors import NeuroCartoError
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun
from neurocarto.ui.url_state import ViewState

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIEWS = ("both", "projection", "graph", "page")     # page: the whole window as the user sees it (PNG only)
GRAPH = "document.getElementById('{}')._cyreg.cy"
PROJECTION = "document.querySelector('#{} .js-plotly-plot')"


MIN_WINDOW, MAX_WINDOW, MAX_SCALE = (640, 360), 8000, 8     # below 640×360 the views have no room
PIXELS_PER_INCH = 132       # graph panel px per printed inch: its 14 px paper labels print at 7.6 pt
PAPER_ASPECT = 1.3          # a paper graph's height ÷ width


@dataclass(frozen=True)
class SnapshotRequest:
    run: str
    class_name: str | None = None
    select: tuple[str, ...] = ()
    threshold: float = 0.0
    cut: str = "auto"               # the hierarchy's cut: "auto" (each layer's default) or a Jaccard threshold
    cascade: bool = False
    paper: bool = False
    view: str = "both"
    width: int = 1600
    height: int = 900
    scale: float = 2.0
    width_in: float | None = None   # the figure's printed width in inches (PNG at `dpi`; SVG sized in inches)
    dpi: int = 300
    compare: str | None = None      # a second run: the compare views (computed first if the store lacks them)
    projection: tuple[str, ...] = ("labels",)   # concept labels, density shading, colour by class

    @property
    def graph_script(self) -> str:
        """JavaScript naming the graph view's Cytoscape."""
        return GRAPH.format("compare-graph" if self.compare else "graph")

    @property
    def projection_script(self) -> str:
        """JavaScript naming the projection view's Plotly figure."""
        return PROJECTION.format("compare-projection" if self.compare else "projection")


def output_format(out: Path) -> str:
    kind = out.suffix.lower().lstrip(".")
    if kind not in ("png", "svg"):
        raise NeuroCartoError(f"--out {out}: the file must end in .png or .svg")
    return kind


def page_query(key: str, request: SnapshotRequest) -> str:
    """The app URL's query for the requested state (`ui.url_state`, as the app writes it)."""
    return ViewState(key, request.class_name, request.threshold, request.cut, tuple(request.select), request.cascade,
                     paper=request.paper, compare=request.compare, projection=tuple(request.projection)).query()


def snapshot(cache: Path, request: SnapshotRequest, out: Path, chromium: Path = CHROMIUM) -> Path:
    """Render the requested views of a stored run into `out` (.png or .svg)."""
    kind = output_format(out)
    if request.view not in VIEWS:
        raise NeuroCartoError(f"--view {request.view}: expected one of {', '.join(VIEWS)}")
    if request.view == "page" and kind != "png":
        raise NeuroCartoError("--view page is a screenshot of the window: write it to a .png")
    if not 0 <= request.threshold <= 1:
        raise NeuroCartoError(f"--threshold {request.threshold}: expected a share between 0 and 1")
    if not (MIN_WINDOW[0] <= request.width <= MAX_WINDOW and MIN_WINDOW[1] <= request.height <= MAX_WINDOW):
        raise NeuroCartoError(f"--width {request.width} --height {request.height}: the window must be from "
                              f"{MIN_WINDOW[0]}×{MIN_WINDOW[1]} to {MAX_WINDOW}×{MAX_WINDOW} pixels")
    if not 0 < request.scale <= MAX_SCALE:
        raise NeuroCartoError(f"--scale {request.scale:g}: expected more than 0 and at most {MAX_SCALE} "
                              "image pixels per screen pixel")
    if request.width_in is not None and not 1 <= request.width_in <= 20:
        raise NeuroCartoError(f"--width-in {request.width_in:g}: expected a printed width from 1 to 20 inches "
                              "(3.5 for one column of a two-column paper, 7 for the page)")
    if not 72 <= request.dpi <= 1200:
        raise NeuroCartoError(f"--dpi {request.dpi}: expected 72 to 1200")
    with Store(cache) as store:
        key = store.resolve(request.run)
        run = StoredRun(store, key)
        if not run.complete:
            raise NeuroCartoError(f"run {request.run} is not complete: `python -m neurocarto precompute` finishes it")
        if request.class_name is not None and run.class_index(request.class_name) is None:
            raise NeuroCartoError(f"Unknown class “{request.class_name}”; the run's classes: "
                                  f"{', '.join(run.class_names)}")
        if request.compare:
            from neurocarto.store.comparisons import compare

            other = store.resolve(request.compare)
            compare(StoredRun(store, key), StoredRun(store, other), request.cut)
            request = replace(request, compare=other)
    sync_playwright = _playwright()
    if not chromium.exists():
        raise NeuroCartoError(f"snapshot drives Chromium, not found at {chromium}: install it "
                              "(apt-get install chromium) or name it with --chromium PATH")
    from neurocarto.ui.app import create_app

    with _served(create_app(cache, key, compute_jobs=False).server) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page(viewport={"width": request.width, "height": request.height},
                                    device_scale_factor=request.scale if request.view == "page" else 1)
            page.goto(base + "/" + page_query(key, request))
            _wait_until_drawn(page, request)
            message = page.inner_text("#message").strip()
            if message:
                raise NeuroCartoError(message)
            if request.view == "page":
                parts = [page.screenshot()]
            else:
                views = ["projection", "graph"] if request.view == "both" else [request.view]
                scale = request.scale
                if request.width_in is not None and request.view == "graph":
                    width = round(PIXELS_PER_INCH * request.width_in)
                    _frame_graph(page, request.graph_script, width, round(width * PAPER_ASPECT))
                    scale = request.width_in * request.dpi / width
                parts = [_export(page, request, view, kind, scale, fit_height=len(views) > 1) for view in views]
        finally:
            browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure = _side_by_side_png(parts) if kind == "png" else _side_by_side_svg(parts)
    if request.width_in is not None:
        figure = _printed_png(figure, request.width_in, request.dpi) if kind == "png" else _printed_svg(
            figure, request.width_in)
    out.write_bytes(figure)
    return out


def _frame_graph(page, graph: str, width: int, height: int) -> None:
    """Lay the graph summary out for a panel of width × height px (the printed figure's) instead of the window's."""
    page.evaluate(f"() => window.dash_clientside.set_props('graph-size', {{data: {{width: {width}, height: {height}}}}})")
    page.wait_for_function(f"() => {{ const f = {graph}.getElementById('frame:1');"
                           f" return f.length === 1 && f.position('x') === {width}; }}", timeout=60000)
    page.wait_for_load_state("networkidle", timeout=60000)
    page.wait_for_timeout(300)


def _printed_png(png: bytes, width_in: float, dpi: int) -> bytes:
    """The PNG at width_in × dpi pixels wide, with its dpi recorded."""
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    width = round(width_in * dpi)
    if image.width != width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", dpi=(dpi, dpi))
    return buffer.getvalue()


def _printed_svg(svg: bytes, width_in: float) -> bytes:
    """The SVG sized in inches (its drawing kept by a viewBox)."""
    text = svg.decode()
    width, height = _svg_size(text)
    root = re.search(r"<svg\b[^>]*>", text).group(0)
    sized = re.sub(r'\s(width|height)="[^"]*"', "", root)
    if "viewBox=" not in sized:
        sized = sized[:-1] + f' viewBox="0 0 {width:g} {height:g}">'
    sized = sized[:-1] + f' width="{width_in:g}in" height="{width_in * height / width:.4g}in">'
    return text.replace(root, sized, 1).encode()


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise NeuroCartoError("snapshot needs Playwright: pip install playwright (it drives the system's "
                              "Chromium; `playwright install` is not needed)") from None
    return sync_playwright


class _served:
    """The WSGI app on a free 127.0.0.1 port in a background thread, for the duration of a `with`."""

    def __init__(self, wsgi_app):
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *_args) -> None:
                pass

        self._server = make_server("127.0.0.1", 0, wsgi_app, threaded=True, request_handler=Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_port}"

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def _wait_until_drawn(page, request: SnapshotRequest) -> None:
    """Until the views hold the requested state and no callback is in flight."""
    graph = "compare-graph" if request.compare else "graph"
    drawn = f" && {request.graph_script}.nodes().length > 0" if request.compare else ""   # after the comparison is read
    page.wait_for_function(f"() => {{ const e = document.getElementById('{graph}'); const g = {request.projection_script};"
                           f" return e && e._cyreg && g && g._fullData && g._fullData.length > 0{drawn}; }}",
                           timeout=60000)
    page.wait_for_load_state("networkidle", timeout=60000)
    if request.paper:
        page.wait_for_function(f"() => {request.projection_script}._fullLayout.font.size >= 14", timeout=30000)
    page.wait_for_function("() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=60000)
    page.wait_for_timeout(300)     # cytoscape draws its patch images on the next frames


def _export(page, request: SnapshotRequest, view: str, kind: str, scale: float, fit_height: bool = False) -> bytes:
    """One view as PNG or SVG bytes, by the page's own export functions.

    With `fit_height`, the whole graph is drawn at the projection's height (for side-by-side figures).
    """
    graph, projection = request.graph_script, request.projection_script
    if view == "graph":
        if kind == "svg":
            return page.evaluate(f"() => {graph}.svg({{full: true, bg: 'white'}})").encode()
        size = f"maxHeight: {projection}.clientHeight * {scale}" if fit_height else f"scale: {scale}"   # not both
        uri = page.evaluate(f"() => {graph}.png({{output: 'base64uri', full: true, bg: 'white', {size}}})")
    else:
        uri = page.evaluate(f"""() => {{ const g = {projection};
            return window.Plotly.toImage(g, {{format: '{kind}', width: g.clientWidth, height: g.clientHeight,
                                              scale: {scale if kind == 'png' else 1}}}); }}""")
    header, payload = uri.split(",", 1)
    return base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode()


def _side_by_side_png(parts: list[bytes]) -> bytes:
    from PIL import Image

    images = [Image.open(io.BytesIO(part)).convert("RGB") for part in parts]
    if len(images) == 1:
        return parts[0]
    gap = 24
    canvas = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)),
                       "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, (canvas.height - image.height) // 2))
        x += image.width + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _svg_size(svg: str) -> tuple[float, float]:
    root = re.search(r"<svg\b[^>]*>", svg).group(0)
    width, height = (re.search(rf'\b{name}="([\d.]+)', root) for name in ("width", "height"))
    if width and height:
        return float(width.group(1)), float(height.group(1))
    view_box = re.search(r'viewBox="[\d.\-]+ [\d.\-]+ ([\d.]+) ([\d.]+)"', root)
    return float(view_box.group(1)), float(view_box.group(2))


def _side_by_side_svg(parts: list[bytes]) -> bytes:
    """One SVG holding each part as a nested <svg>, left to right, each scaled to the first one's height."""
    texts = [re.sub(r"^<\?xml[^>]*>\s*", "", part.decode()) for part in parts]
    if len(texts) == 1:
        return texts[0].encode()
    gap, x, placed = 24, 0.0, []
    sizes = [_svg_size(text) for text in texts]
    height = sizes[0][1]
    for text, (part_width, part_height) in zip(texts, sizes):
        width = part_width * height / part_height
        root = re.search(r"<svg\b[^>]*>", text).group(0)
        attributes = re.sub(r'\s(x|y|width|height|viewBox)="[^"]*"', "", root[4:-1])
        view_box = re.search(r'viewBox="[^"]*"', root)
        view_box = view_box.group(0) if view_box else f'viewBox="0 0 {part_width:g} {part_height:g}"'
        placed.append(f'<svg x="{x:g}" y="0" width="{width:g}" height="{height:g}" {view_box}{attributes}>'
                      + text[len(root) + text.index(root):])
        x += width + gap
    width = x - gap
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
            f'width="{width:g}" height="{height:g}" viewBox="0 0 {width:g} {height:g}">'
            f'<rect width="100%" height="100%" fill="white"/>{"".join(placed)}</svg>').encode()


def figure_file(figure: dict, out: Path, width: int = 900, height: int = 500, chromium: Path = CHROMIUM) -> Path:
    """A Plotly figure (a dict) drawn by plotly.js in headless Chromium into `out` (.png at 2×, or .svg)."""
    import json

    import plotly

    kind = output_format(out)
    if not chromium.exists():
        raise NeuroCartoError(f"drawing a figure needs Chromium, not found at {chromium}: apt-get install chromium")
    script = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    sync_playwright = _playwright()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=list(CHROMIUM_FLAGS))
        try:
            page = browser.new_page()
            page.set_content("<div id='figure'></div>")
            page.add_script_tag(path=str(script))
            uri = page.evaluate(f"""(figure) => window.Plotly.newPlot('figure', figure.data, figure.layout)
                .then((plot) => window.Plotly.toImage(plot, {{format: '{kind}', width: {width}, height: {height},
                                                            scale: {2 if kind == 'png' else 1}}}))""",
                                json.loads(json.dumps(figure)))
        finally:
            browser.close()
    header, payload = uri.split(",", 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(payload) if header.endswith(";base64") else unquote(payload).encode())
    return out
