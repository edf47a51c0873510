"""The app's callbacks: module-level functions `callback(catalog, *values)` that read runs (StoredRun) and build
views with figures.py and graph_view.py; `register_callbacks` wires them to the page's components."""
from __future__ import annotations

import math
import sys
from types import ModuleType

import numpy as np
from dash import Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from neurocarto.concepts.lit_graph import image_path, node_values
from neurocarto.errors import NeuroCartoError
from neurocarto.store.explanations import explained_of, reference_from_url, url_of_reference
from neurocarto.store.stored_run import AUTO, parse_cut
from neurocarto.ui.figures import (class_bar_figure, concept_outlines, layer_marker, legend_title, node_title,
                                   overlay_traces, projection_figure)
from neurocarto.ui.graph_view import Frame, cascade, graph_elements, graph_stylesheet
from neurocarto.ui.inputs import MAX_NODES, bounded_callback, chosen_cut, share
from neurocarto.ui.layout import IDLE_POLL_MS, PROGRESS_POLL_MS
from neurocarto.ui.panels import class_options_of, concept_name, neuron_block, node_looks, patch_image, patch_url
from neurocarto.ui.progress_view import incomplete_runs, launch_panel, progress_line, progress_panel, run_progress
from neurocarto.ui.url_state import ViewState, read_query
from neurocarto.ui.projection_labels import SHOWN, concept_labels, dominant_classes, visible_range
from neurocarto.ui.wiring import callbacks_of, triggered, wired, with_catalog

EMPTY_SELECTION = {"nodes": [], "neuron": None, "neurons": []}


@wired(Output("run", "value"), Output("class", "options", allow_duplicate=True), Output("class", "value"),
       Output("threshold", "value"), Output("mode", "value"), Output("paper", "value"),
       Output("cut-auto", "value"), Output("cut", "value"), Output("graph-detail", "value"),
       Output("selection", "data"), Output("test-method", "value"), Output("image-pick", "data"),
       Output("compare", "value"), Output("projection-show", "value"), Output("message", "children"),
       Input("url", "pathname"), Input("ready", "data"), State("url", "search"),
       prevent_initial_call="initial_duplicate")
def restore(catalog, _pathname, ready, search):
    """The view the URL asks for (again when a run being computed completes: `ready`); unknown names give a
    message and a usable default; a run still being computed, none (its progress shows)."""
    query, problems = read_query(search)
    run_key = query.get("run") or ready or (catalog.keys[0] if catalog.keys else None)
    computing = [key for key, _ in incomplete_runs(catalog.store)]
    starting = catalog.launched is not None and catalog.launched.poll() is None
    if run_key in computing or (not catalog.keys and (computing or starting)):
        return (None, [], None, 0, [], [], ["auto"], no_update, "summary", EMPTY_SELECTION, no_update, no_update,
                None, no_update, None)
    if not catalog.keys:
        return (None, [], None, 0, [], [], ["auto"], no_update, "summary", EMPTY_SELECTION, no_update, no_update,
                None, no_update, "The store holds no complete run: run `python -m neurocarto precompute` (or `python app.py`).")
    if catalog.get(run_key) is None:
        problems.append(f"{catalog.unavailable(run_key)}; showing {catalog.keys[0]}. Runs: {', '.join(catalog.keys)}.")
        run_key = catalog.keys[0]
    run = catalog.get(run_key)
    class_index = 0
    if "class" in query:
        found = run.class_index(query["class"])
        if found is None:
            names = ", ".join(run.class_names[:12]) + (", …" if len(run.class_names) > 12 else "")
            problems.append(f"Unknown class “{query['class']}”; showing {run.class_names[0]}. Classes: {names}.")
        else:
            class_index = found
    try:
        cut = parse_cut(query.get("cut"), run.floor)
    except NeuroCartoError as problem:
        problems.append(f"{problem}; showing each layer's default.")
        cut = AUTO
    selection = dict(EMPTY_SELECTION)
    if "select" in query:
        graph = run.graph(class_index, cut)
        for item in list(dict.fromkeys(query["select"].split(",")))[:MAX_NODES]:
            if run.resolve_nodes(graph, [item], cut):
                selection["nodes"] = selection["nodes"] + [item]
            elif run.neuron_index(item) is not None:
                selection["neuron"] = run.neuron_index(item)
            else:
                problems.append(f"Unknown neuron or node “{item}”: expected layer:channel or layer:c<channel> "
                                f"(a cluster), e.g. {run.neuron_ids[0]}.")
    try:
        threshold = float(query.get("threshold", 0))
    except ValueError:
        threshold = math.nan
    if not math.isfinite(threshold):
        problems.append(f"threshold must be a number between 0 and 1, not “{query['threshold'][:40]}”.")
    threshold = share(threshold, run)
    mode = ["cascade"] if query.get("mode") == "cascade" else []
    paper = ["paper"] if query.get("style") == "paper" else []
    cut_auto, cut_value = (["auto"], no_update) if cut == AUTO else ([], cut)  # the slider only moves for a value
    detail = "all" if query.get("detail") == "all" else "summary"
    test = "mean" if query.get("test") == "mean" else "zero"
    pick = no_update
    if "image" in query:
        reference = reference_from_url(query["image"])
        if reference is None:
            problems.append(f"Unknown image “{query['image'][:70]}”: expected a run image's index (0 … "
                            f"{len(run.image_labels) - 1}) or an uploaded image's SHA-256.")
        else:
            pick = {"reference": reference, "switch": "class" not in query}
    compare = query.get("compare")
    if compare is not None and (compare == run_key or catalog.get(compare) is None):
        problems.append(f"Unknown run to compare with “{compare[:70]}”: runs {', '.join(catalog.keys)}.")
        compare = None
    show = ["labels"]
    if "projection" in query:
        show = [item for item in query["projection"].split(",") if item in SHOWN]
    return (run_key, class_options_of(run), class_index, threshold, mode, paper, cut_auto, cut_value, detail,
            selection, test, pick, compare, show, " ".join(problems) or None)


@wired(Output("progress", "children"), Output("progress", "style"), Output("views", "style"),
       Output("ready", "data"), Output("run", "options"), Output("progress-focus", "data"),
       Output("progress-poll", "interval"),
       Input("progress-poll", "n_intervals"), State("url", "search"), State("progress-focus", "data"))
def poll_progress(catalog, _n, search, focus):
    """The progress of the URL's run while it is computed (the views hidden), else while no run is complete of the
    newest run not complete, else of a run a precompute is writing (above the views); when the run shown
    completes, the run selector learns of it and, if its views were hidden, `restore` opens it. Polled every
    second while something is shown, else every IDLE_POLL_MS."""
    shown, hidden = {}, {"display": "none"}
    if focus is not None and catalog.get(focus["key"]) is not None:
        return ([], hidden, shown, focus["key"] if focus["switch"] else no_update, catalog.options(), None,
                IDLE_POLL_MS)
    wanted = read_query(search)[0].get("run")
    incomplete = [key for key, _ in incomplete_runs(catalog.store)]
    switch = wanted in incomplete or (not catalog.keys and bool(incomplete))
    target = (wanted if wanted in incomplete else incomplete[0]) if switch else next(
        (key for key in incomplete if catalog.store.writer_of(key) is not None), None)
    if target is None:
        starting = launch_panel(catalog.launched) if not catalog.keys else None
        return (starting or [], shown if starting else hidden, shown, no_update, no_update, None,
                PROGRESS_POLL_MS if starting else IDLE_POLL_MS)
    progress = run_progress(catalog.store, target)
    panel = progress_panel(progress) if switch else progress_line(progress)     # views open: one line that expands
    return (panel, shown, hidden if switch else shown, no_update, no_update, {"key": target, "switch": switch},
            PROGRESS_POLL_MS)


@wired(Output("url", "search"), Input("run", "value"), Input("class", "value"),
       Input("threshold", "value"), Input("mode", "value"), Input("paper", "value"),
       Input("cut-choice", "data"), Input("graph-detail", "value"), Input("selection", "data"),
       Input("test-method", "value"), Input("explained", "data"), Input("compare", "value"),
       Input("projection-show", "value"), prevent_initial_call=True)
def to_url(catalog, run_key, class_index, threshold, mode, paper, cut_choice, detail, selection, test, image,
           compare=None, show=("labels",)):
    """The view as a URL; with a selection, the method of its concept test (its stored result shows for it); the
    explained image; the run compared with it."""
    run = catalog.get(run_key)
    if run is None or class_index is None:
        return no_update
    selected = list(selection["nodes"]) + ([run.neuron_ids[selection["neuron"]]]
                                           if selection["neuron"] is not None else [])
    return ViewState(run.key, run.class_names[class_index], threshold, f"{chosen_cut(run, cut_choice)}",
                     tuple(selected), bool(mode), detail == "all", bool(paper), test if selected else None,
                     url_of_reference(image) if image and explained_of(run, image) is not None else None,
                     compare if compare and compare != run.key and catalog.get(compare) is not None else None,
                     tuple(show if show is not None else ("labels",))).query()


@wired(Output("cut", "min"), Output("cut", "marks"), Output("cut", "disabled"),
       Output("cut-auto", "options"), Input("run", "value"))
def cut_control(catalog, run_key):
    """The slider spans the run's hierarchy (its floor up to MAX_CUT); the checkbox names the run's own cut."""
    run = catalog.get(run_key)
    if run is None:
        return no_update, no_update, True, no_update
    marks = {run.floor: f"{run.floor:g}", 0.2: "0.2", 0.4: "0.4", 0.6: "0.6"}
    label = f"layer defaults ({run.cut_range()})"
    return run.floor, marks, False, [{"label": label, "value": "auto"}]


@wired(Output("class", "options"), Input("run", "value"), Input("class", "search_value"),
       prevent_initial_call=True)
def class_options(catalog, run_key, search):
    return class_options_of(catalog.get(run_key), search or "")


@wired(Output("graph", "elements"), Output("graph", "layout"), Output("graph-title", "children"),
       Input("run", "value"), Input("class", "value"), Input("threshold", "value"), Input("mode", "value"),
       Input("cut-choice", "data"), Input("selection", "data"), Input("graph-detail", "value"),
       Input("graph-size", "data"), Input("paper", "value"), Input("explained", "data"))
def draw_graph(catalog, run_key, class_index, threshold, mode, cut_choice, selection, detail, size, paper, image):
    """The summary laid out for the panel's measured size at zoom 1, or every node fitted; with an explained image,
    each node as bright as the image makes it fire and the image's path drawn as a cascade is."""
    run = catalog.get(run_key)
    if run is None or class_index is None:
        return [], no_update, "Class graph"
    cut = chosen_cut(run, cut_choice)
    graph = run.graph(int(class_index), cut)
    selected = [node["id"] for node in run.resolve_nodes(graph, selection["nodes"], cut)]
    chain, lit = None, None
    explained = explained_of(run, image) if image else None
    if explained is not None:
        lit = node_values(graph, explained.percentiles)
        path_nodes, path_edges = image_path(graph, lit)
        chain = set(path_nodes), {f"{source}->{target}" for source, target in path_edges}
    if "cascade" in (mode or []) and selected:
        chain = cascade(graph, selected[-1])
    frame = None if detail == "all" else Frame.of(size)
    elements = graph_elements(graph, run.layer_names, run.neuron_ids, node_looks(run, graph), threshold or 0,
                              set(selected), chain, frame, bool(paper), lit)
    layout = {"name": "preset", "fit": True, "padding": 0 if frame else 30, "animate": False}
    title = f"Class graph: {run.class_names[int(class_index)]}"
    if explained is not None:
        title += f" · lit by image {image[4:]}" if image.startswith("run:") else " · lit by the uploaded image"
    return elements, layout, title


@wired(Output("projection", "figure"),
       Input("run", "value"), Input("class", "value"), Input("projection-filter", "value"),
       Input("selection", "data"), Input("hovered", "data"), Input("paper", "value"),
       Input("cut-choice", "data"), Input("projection-image", "data"), Input("projection-show", "value"),
       State("projection", "relayoutData"))
def draw_projection(catalog, run_key, class_index, shown_filter, selection, hovered, paper, cut_choice, image,
                    show=("labels",), relayout=None):
    """The whole scatter when what is shown changes (coloured by the percentiles of the explained image once its
    explanation is on screen, `projection-image`, else by layer or by class; concept labels where they fit, density
    shading, as `show` asks); otherwise only its two overlay traces and the outlines, or for another explained image
    only the points' colours (Patches); nothing for another class when nothing drawn depends on it."""
    run = catalog.get(run_key)
    if run is None:
        return {}
    cut = chosen_cut(run, cut_choice)
    graph = run.graph(int(class_index), cut) if class_index is not None else None
    selected = [] if graph is None else run.resolve_nodes(graph, selection["nodes"], cut, outside=True)
    members = [n for node in selected for n in node["members"]]
    highlighted = list(hovered or []) + members + list(selection.get("neurons") or [])
    if selection["neuron"] is not None:
        highlighted += run.neighbor_table[selection["neuron"], :10].tolist()
    overlays_only = {"hovered.data"} | ({"selection.data", "cut-choice.data"}
                                       if shown_filter != "clusters" else set())
    concepts = [(node["members"], concept_name(run, node)) for node in selected]
    show = show or []
    labels = concept_labels(run, cut, visible_range(relayout), bool(paper)) if "labels" in show else []
    fired = triggered()
    if fired and fired <= overlays_only:
        patch, first = Patch(), len(run.layer_names)
        for offset, trace in enumerate(overlay_traces(run.projection, highlighted, selection["neuron"])):
            patch["data"][first + offset] = trace
        outlines = concept_outlines(run.projection, concepts, bool(paper))
        patch["layout"]["shapes"] = outlines["shapes"]
        patch["layout"]["annotations"] = labels + outlines["annotations"]
        return patch
    shown = None
    if shown_filter == "class" and graph is not None:
        shown = np.zeros(len(run.neuron_ids), dtype=bool)
        shown[[n for node in graph["nodes"] for n in node["members"]]] = True
    elif shown_filter == "clusters" and graph is not None:
        shown = np.zeros(len(run.neuron_ids), dtype=bool)
        shown[members] = True
    explained = explained_of(run, image) if image else None
    values = None if explained is None else explained.percentiles
    class_free = shown_filter != "class" and not selection["nodes"]     # nothing drawn depends on the class shown
    if fired and fired <= {"class.value", "projection-image.data"} and "class" not in show and (
            class_free or "class.value" not in fired):      # another class or image: at most the colours change
        if "projection-image.data" not in fired:
            return no_update
        patch, visible = Patch(), np.ones(len(run.neuron_ids), dtype=bool) if shown is None else shown
        for index in range(len(run.layer_names)):
            points = np.flatnonzero((run.layer_of == index) & visible)
            patch["data"][index]["marker"] = layer_marker(index, points, bool(paper), values)
        patch["layout"]["legend"]["title"]["text"] = legend_title(bool(paper), values is not None, False)
        patch["layout"]["meta"] = image if values is not None else None
        return patch
    figure = projection_figure(run.projection, run.layer_of, run.layer_names, shown, highlighted,
                               selection["neuron"], paper=bool(paper), concepts=concepts, values=values,
                               labels=labels, density="density" in show,
                               classes=dominant_classes(run) if "class" in show else None, class_names=run.class_names)
    figure["layout"]["meta"] = image if values is not None else None    # the image its points are coloured by
    return figure


@wired(Output("projection", "figure", allow_duplicate=True), Input("projection", "relayoutData"),
       State("run", "value"), State("class", "value"), State("selection", "data"), State("paper", "value"),
       State("cut-choice", "data"), State("projection-show", "value"), prevent_initial_call=True)
def relabel_projection(catalog, relayout, run_key, class_index, selection, paper, cut_choice, show):
    """Zoomed or panned: the concept labels of what is now in view (more, smaller concepts as one zooms in)."""
    run = catalog.get(run_key)
    if run is None or "labels" not in (show or []) or not relayout or not any(
            key.startswith(("xaxis.range", "xaxis.autorange")) for key in relayout):
        return no_update
    cut = chosen_cut(run, cut_choice)
    graph = run.graph(int(class_index), cut) if class_index is not None else None
    selected = [] if graph is None else run.resolve_nodes(graph, selection["nodes"], cut, outside=True)
    outlines = concept_outlines(run.projection, [(node["members"], concept_name(run, node)) for node in selected],
                                bool(paper))
    patch = Patch()
    patch["layout"]["annotations"] = concept_labels(run, cut, visible_range(relayout), bool(paper)) + outlines[
        "annotations"]
    return patch


@wired(Output("graph", "stylesheet"), Input("paper", "value"))
def graph_style(catalog, paper):
    return graph_stylesheet(paper=bool(paper))


@wired(Output("graph", "generateImage"), Output("compare-graph", "generateImage"),
       Input("export-graph-png", "n_clicks"), Input("export-graph-svg", "n_clicks"), State("compare", "value"),
       prevent_initial_call=True)
def export_graph(catalog, _png, _svg, compare):
    """The graph shown (both runs' graphs while comparing) downloaded as PNG or SVG."""
    kind = "svg" if ctx.triggered_id == "export-graph-svg" else "png"
    image = {"type": kind, "action": "download", "filename": "graph", "options": {"bg": "white", "full": True,
                                                                                   "scale": 2}}
    return (no_update, image) if compare else (image, no_update)


@wired(Output("selection", "data", allow_duplicate=True), Input("graph", "tapNodeData"),
       State("selection", "data"), prevent_initial_call=True)
def tap_node(catalog, node, selection):
    if not node or node["id"].startswith("row:"):
        return no_update
    nodes = list(selection["nodes"])
    nodes = [n for n in nodes if n != node["id"]] if node["id"] in nodes else nodes + [node["id"]]
    return {"nodes": nodes, "neuron": None, "neurons": []}


@wired(Output("selection", "data", allow_duplicate=True), Input("projection", "clickData"),
       Input("projection", "selectedData"), State("selection", "data"), prevent_initial_call=True)
def pick_neurons(catalog, click, lasso, selection):
    """A click picks one neuron; a box or lasso, a set (a click in lasso mode also clears the lasso)."""
    if "projection.clickData" in triggered() and click and "customdata" in (click.get("points") or [{}])[0]:
        return {"nodes": selection["nodes"], "neuron": int(click["points"][0]["customdata"]), "neurons": []}
    points = [int(p["customdata"]) for p in (lasso or {}).get("points", []) if "customdata" in p]
    if not points:
        return no_update
    return {"nodes": selection["nodes"], "neuron": None, "neurons": sorted(set(points))}


@wired(Output("hovered", "data"), Input("graph", "mouseoverNodeData"), State("run", "value"))
def hover_node(catalog, node, run_key):
    run = catalog.get(run_key)
    if not node or run is None or "members" not in node:
        return []
    return [i for i in map(run.neuron_index, node["members"]) if i is not None]


@wired(Output("graph-hover", "children"), Input("graph", "mouseoverNodeData"), State("run", "value"))
def hover_box(catalog, node, run_key):
    """The hovered node's label and a larger mosaic: up to 9 members' top patches, or a neuron's first 4."""
    run = catalog.get(run_key)
    if not node or run is None or "members" not in node:
        return no_update
    neurons = [i for i in map(run.neuron_index, node["members"][:9]) if i is not None]
    if not neurons:
        return no_update
    image = (html.Img(src=f"/members/{run.key}/{'.'.join(str(n) for n in neurons)}.png", width=150)
             if len(neurons) > 1 else html.Div(className="patch-grid", children=[
                 html.Img(src=f"/patch/{run.key}/{neurons[0]}/{rank}.png", width=48, height=48)
                 for rank in range(min(9, run.patch_count))]))
    return [html.Strong(node["id"]), html.Div(node["label"]), image]


@wired(Output("projection-tooltip", "show"), Output("projection-tooltip", "bbox"),
       Output("projection-tooltip", "children"), Input("projection", "hoverData"), State("run", "value"))
def hover_point(catalog, hover, run_key):
    run = catalog.get(run_key)
    if not hover or run is None or not hover.get("points"):
        return False, no_update, no_update
    point = hover["points"][0]
    if "customdata" not in point or "bbox" not in point:  # an event fired while Plotly redraws has no point
        return False, no_update, no_update
    neuron = int(point["customdata"])
    url = patch_url(run.key)
    grid = html.Div(className="patch-grid", children=[
        html.Img(src=url(neuron, rank), width=48, height=48) for rank in range(min(9, run.patch_count))])
    label = html.Div(f"top images: {run.concept_label([neuron])}", className="tooltip-label")
    return True, point["bbox"], [html.Strong(run.neuron_ids[neuron]), label, grid]


@wired(Output("examples", "children"), Input("run", "value"), Input("class", "value"),
       Input("cut-choice", "data"), Input("selection", "data"))
def examples(catalog, run_key, class_index, cut_choice, selection):
    run = catalog.get(run_key)
    if run is None:
        return [html.H2("Examples")]
    if triggered() == {"class.value"} and not selection["nodes"]:
        return no_update        # a neuron's examples do not depend on the class (an explained image switches it)
    cut = chosen_cut(run, cut_choice)
    graph = run.graph(int(class_index), cut) if class_index is not None else {"nodes": []}
    url = patch_url(run.key)
    blocks = [html.H2("Examples")]
    if selection["neuron"] is not None:
        neuron = selection["neuron"]
        blocks += neuron_block(run, neuron, url, "selected neuron")
        blocks.append(html.H3("Most related neurons"))
        related = html.Div(className="related", children=[
            html.Div(className="related-neuron", children=[
                html.Span(run.neuron_ids[n]),
                html.Div(className="patches", children=[patch_image(run, url, n, r, 40)
                                                        for r in range(min(4, run.patch_count))])])
            for n in run.neighbor_table[neuron, :10]])
        blocks.append(related)
    for node in run.resolve_nodes(graph, selection["nodes"], cut, outside=True):
        members = node["members"]
        size, similarity = run.cluster_similarity(cut, node["cluster"], node["layer_index"]) \
            if node["cluster"] >= 0 else (0, 0.0)
        blocks.append(html.H3(node_title(node, size, similarity), className="node-title"))
        blocks.append(html.Div(f"top images: {run.concept_label(members)}", className="node-label"))
        for member in members[:10]:
            blocks += neuron_block(run, member, url, None, count=6)
        blocks.append(dcc.Graph(figure=class_bar_figure(run.top_image_classes(members), run.class_names),
                                config={"displayModeBar": False}))
    if selection.get("neurons"):
        chosen = selection["neurons"]
        blocks.append(html.H3(f"{len(chosen)} neurons selected in the projection"))
        for member in chosen[:12]:
            blocks += neuron_block(run, member, url, None, count=6)
    if len(blocks) == 1:
        blocks.append(html.P("Select a node or a neuron to see its examples."))
    return blocks


def register_callbacks(app: Dash, catalog, *modules: ModuleType) -> None:
    """Wire the callbacks of this module and of `modules` to `app`, each reading runs from `catalog` (.keys, newest
    first; .get(key) → StoredRun or None; .jobs, the background cache), its inputs checked
    (`inputs.bounded_callback`); then the page's client-side callbacks."""

    callback = bounded_callback(app, catalog)
    for module in (sys.modules[__name__], *modules):
        for function, dependencies, options in callbacks_of(module):
            callback(*dependencies, **options)(with_catalog(function, catalog))
        for function, *dependencies in getattr(module, "CLIENTSIDE", ()):
            app.clientside_callback(function, *dependencies, prevent_initial_call=True)

    app.clientside_callback(       # moving the slider unticks the default; the views read only `cut-choice`
        """function(cut, auto) {
            const fired = window.dash_clientside.callback_context.triggered.map(t => t.prop_id);
            const moved = fired.includes('cut.value') && !fired.includes('cut-auto.value');
            const own = !moved && (auto || []).includes('auto');
            return [moved ? [] : window.dash_clientside.no_update, own ? 'auto' : cut];
        }""",
        Output("cut-auto", "value", allow_duplicate=True), Output("cut-choice", "data"),
        Input("cut", "value"), Input("cut-auto", "value"), prevent_initial_call=True)

    app.clientside_callback(
        """function(png, svg) {
            const kind = window.dash_clientside.callback_context.triggered_id === 'export-projection-svg' ? 'svg' : 'png';
            const comparing = document.getElementById('compare-views').style.display !== 'none';
            const figure = document.querySelector(comparing ? '#compare-projection .js-plotly-plot'
                                                            : '#projection .js-plotly-plot');
            window.Plotly.downloadImage(figure, {format: kind, filename: 'projection', scale: kind === 'png' ? 2 : 1,
                                                 width: figure.clientWidth, height: figure.clientHeight});
            return kind;
        }""",
        Output("export-projection-png", "title"), Input("export-projection-png", "n_clicks"),
        Input("export-projection-svg", "n_clicks"), prevent_initial_call=True)
