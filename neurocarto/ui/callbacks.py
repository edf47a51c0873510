"""Wiring: every callback reads the precomputed run (RunData) and builds views with figures.py."""
from __future__ import annotations

import math
from urllib.parse import parse_qs, urlencode

import numpy as np
from dash import Dash, Input, Output, Patch, State, ctx, dcc, html, no_update

from ..errors import NeuroCartoError
from .rundata import AUTO, parse_cut
from .figures import class_bar_figure, concept_outlines, node_title, overlay_traces, projection_figure
from .graph_view import Frame, NodeLook, cascade, graph_elements, graph_stylesheet
from .inputs import MAX_NODES, bounded_callback, share

EMPTY_SELECTION = {"nodes": [], "neuron": None, "neurons": []}


def register_callbacks(app: Dash, catalog) -> None:
    """`catalog` knows the runs: .keys (newest first), .get(key) → RunData or None."""

    callback = bounded_callback(app, catalog)

    def patch_url(run_key: str):
        return lambda neuron, rank: f"/patch/{run_key}/{int(neuron)}/{int(rank)}.png"

    @callback(Output("run", "value"), Output("class", "options", allow_duplicate=True), Output("class", "value"),
                  Output("threshold", "value"), Output("mode", "value"), Output("paper", "value"),
                  Output("cut-auto", "value"), Output("cut", "value"), Output("graph-detail", "value"),
                  Output("selection", "data"), Output("message", "children"),
                  Input("url", "pathname"), State("url", "search"),
                  prevent_initial_call="initial_duplicate")
    def restore(_pathname, search):
        """Initial view from the URL; unknown names give a message and a usable default."""
        problems = []
        try:
            query = {k: v[0] for k, v in parse_qs(search.lstrip("?"), max_num_fields=20).items()}
        except ValueError:
            query = {}
            problems.append("The URL holds more settings than the app has; showing the default view.")
        if not catalog.keys:
            return (None, [], None, 0, [], [], ["auto"], no_update, "summary", EMPTY_SELECTION,
                    "The store holds no complete run: run `python -m neurocarto precompute` (or `python app.py`).")
        run_key = query.get("run") or catalog.keys[0]
        if catalog.get(run_key) is None:
            problems.append(f"{catalog.unavailable(run_key)}; showing {catalog.keys[0]}. Runs: {', '.join(catalog.keys)}.")
            run_key = catalog.keys[0]
        data = catalog.get(run_key)
        class_index = 0
        if "class" in query:
            found = data.class_index(query["class"])
            if found is None:
                names = ", ".join(data.class_names[:12]) + (", …" if len(data.class_names) > 12 else "")
                problems.append(f"Unknown class “{query['class']}”; showing {data.class_names[0]}. Classes: {names}.")
            else:
                class_index = found
        try:
            cut = parse_cut(query.get("cut"), data.floor)
        except NeuroCartoError as problem:
            problems.append(f"{problem}; showing each layer's default.")
            cut = AUTO
        if cut != AUTO and not data.cuttable:
            problems.append("This run's graphs hold its own cut only: run `python -m neurocarto precompute` for it "
                            "again to store the weights any cut needs.")
            cut = AUTO
        selection = dict(EMPTY_SELECTION)
        if "select" in query:
            graph = data.graph(class_index, cut)
            for item in list(dict.fromkeys(query["select"].split(",")))[:MAX_NODES]:
                if data.resolve_nodes(graph, [item], cut):
                    selection["nodes"] = selection["nodes"] + [item]
                elif data.neuron_index(item) is not None:
                    selection["neuron"] = data.neuron_index(item)
                else:
                    problems.append(f"Unknown neuron or node “{item}”: expected layer:channel or layer:c<channel> "
                                    f"(a cluster), e.g. {data.neuron_ids[0]}.")
        try:
            threshold = float(query.get("threshold", 0))
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            problems.append(f"threshold must be a number between 0 and 1, not “{query['threshold'][:40]}”.")
        threshold = share(threshold, data)
        mode = ["cascade"] if query.get("mode") == "cascade" else []
        paper = ["paper"] if query.get("style") == "paper" else []
        cut_auto, cut_value = (["auto"], no_update) if cut == AUTO else ([], cut)  # the slider only moves for a value
        detail = "all" if query.get("detail") == "all" else "summary"
        return (run_key, class_options_of(data), class_index, threshold, mode, paper, cut_auto, cut_value, detail,
                selection, " ".join(problems) or None)

    @callback(Output("url", "search"), Input("run", "value"), Input("class", "value"),
                  Input("threshold", "value"), Input("mode", "value"), Input("paper", "value"),
                  Input("cut-choice", "data"), Input("graph-detail", "value"), Input("selection", "data"),
                  prevent_initial_call=True)
    def to_url(run_key, class_index, threshold, mode, paper, cut_choice, detail, selection):
        data = catalog.get(run_key)
        if data is None or class_index is None:
            return no_update
        query = {"run": data.key, "class": data.class_names[class_index], "threshold": f"{threshold:g}",
                 "cut": f"{chosen_cut(data, cut_choice)}"}
        selected = list(selection["nodes"]) + ([data.neuron_ids[selection["neuron"]]]
                                               if selection["neuron"] is not None else [])
        if selected:
            query["select"] = ",".join(selected)
        if mode:
            query["mode"] = "cascade"
        if detail == "all":
            query["detail"] = "all"
        if paper:
            query["style"] = "paper"
        return "?" + urlencode(query)

    app.clientside_callback(       # moving the slider unticks the default; the views read only `cut-choice`
        """function(cut, auto) {
            const fired = window.dash_clientside.callback_context.triggered.map(t => t.prop_id);
            const moved = fired.includes('cut.value') && !fired.includes('cut-auto.value');
            const own = !moved && (auto || []).includes('auto');
            return [moved ? [] : window.dash_clientside.no_update, own ? 'auto' : cut];
        }""",
        Output("cut-auto", "value", allow_duplicate=True), Output("cut-choice", "data"),
        Input("cut", "value"), Input("cut-auto", "value"), prevent_initial_call=True)

    @callback(Output("cut", "min"), Output("cut", "marks"), Output("cut", "disabled"),
                  Output("cut-auto", "options"), Input("run", "value"))
    def cut_control(run_key):
        """The slider spans the run's hierarchy (its floor up to MAX_CUT); the checkbox names the run's own cut."""
        data = catalog.get(run_key)
        if data is None:
            return no_update, no_update, True, no_update
        marks = {data.floor: f"{data.floor:g}", 0.2: "0.2", 0.4: "0.4", 0.6: "0.6"}
        label = f"layer defaults ({data.cut_range()})"
        return data.floor, marks, not data.cuttable, [{"label": label, "value": "auto"}]

    @callback(Output("class", "options"), Input("run", "value"), Input("class", "search_value"),
                  prevent_initial_call=True)
    def class_options(run_key, search):
        return class_options_of(catalog.get(run_key), search or "")

    @callback(Output("graph", "elements"), Output("graph", "layout"), Output("graph-title", "children"),
                  Input("run", "value"), Input("class", "value"), Input("threshold", "value"), Input("mode", "value"),
                  Input("cut-choice", "data"), Input("selection", "data"), Input("graph-detail", "value"),
                  Input("graph-size", "data"), Input("paper", "value"))
    def draw_graph(run_key, class_index, threshold, mode, cut_choice, selection, detail, size, paper):
        """The summary laid out for the panel's measured size at zoom 1, or every node fitted."""
        data = catalog.get(run_key)
        if data is None or class_index is None:
            return [], no_update, "Class graph"
        cut = chosen_cut(data, cut_choice)
        graph = data.graph(int(class_index), cut)
        selected = [node["id"] for node in data.resolve_nodes(graph, selection["nodes"], cut)]
        chain = None
        if "cascade" in (mode or []) and selected:
            chain = cascade(graph, selected[-1])
        frame = None if detail == "all" else Frame.of(size)
        elements = graph_elements(graph, data.layer_names, data.neuron_ids, node_looks(data, graph), threshold or 0,
                                  set(selected), chain, frame, bool(paper))
        layout = {"name": "preset", "fit": True, "padding": 0 if frame else 30, "animate": False}
        return elements, layout, f"Class graph: {data.class_names[int(class_index)]}"

    @callback(Output("projection", "figure"),
                  Input("run", "value"), Input("class", "value"), Input("projection-filter", "value"),
                  Input("selection", "data"), Input("hovered", "data"), Input("paper", "value"),
                  Input("cut-choice", "data"))
    def draw_projection(run_key, class_index, shown_filter, selection, hovered, paper, cut_choice):
        """The whole scatter when what is shown changes; otherwise only its two overlay traces (a Patch)."""
        data = catalog.get(run_key)
        if data is None:
            return {}
        cut = chosen_cut(data, cut_choice)
        graph = data.graph(int(class_index), cut) if class_index is not None else None
        selected = [] if graph is None else data.resolve_nodes(graph, selection["nodes"], cut)
        members = [n for node in selected for n in node["members"]]
        highlighted = list(hovered or []) + members + list(selection.get("neurons") or [])
        if selection["neuron"] is not None:
            highlighted += data.neighbors[selection["neuron"], :10].tolist()
        overlays_only = {"hovered.data"} | ({"selection.data", "cut-choice.data"}
                                           if shown_filter != "clusters" else set())
        concepts = [(node["members"], concept_name(data, node)) for node in selected]
        triggered = set(ctx.triggered_prop_ids)
        if triggered and triggered <= overlays_only:
            patch, first = Patch(), len(data.layer_names)
            for offset, trace in enumerate(overlay_traces(data.projection, highlighted, selection["neuron"])):
                patch["data"][first + offset] = trace
            for key, value in concept_outlines(data.projection, concepts, bool(paper)).items():
                patch["layout"][key] = value
            return patch
        shown = None
        if shown_filter == "class" and graph is not None:
            shown = np.zeros(len(data.neuron_ids), dtype=bool)
            shown[[n for node in graph["nodes"] for n in node["members"]]] = True
        elif shown_filter == "clusters" and graph is not None:
            shown = np.zeros(len(data.neuron_ids), dtype=bool)
            shown[members] = True
        return projection_figure(data.projection, data.layer_of, data.layer_names, shown, highlighted,
                                 selection["neuron"], paper=bool(paper), concepts=concepts)

    @callback(Output("graph", "stylesheet"), Input("paper", "value"))
    def graph_style(paper):
        return graph_stylesheet(paper=bool(paper))

    @callback(Output("graph", "generateImage"), Input("export-graph-png", "n_clicks"),
                  Input("export-graph-svg", "n_clicks"), prevent_initial_call=True)
    def export_graph(_png, _svg):
        kind = "svg" if ctx.triggered_id == "export-graph-svg" else "png"
        return {"type": kind, "action": "download", "filename": "graph", "options": {"bg": "white", "full": True,
                                                                                      "scale": 2}}

    app.clientside_callback(
        """function(png, svg) {
            const kind = window.dash_clientside.callback_context.triggered_id === 'export-projection-svg' ? 'svg' : 'png';
            const figure = document.querySelector('#projection .js-plotly-plot');
            window.Plotly.downloadImage(figure, {format: kind, filename: 'projection', scale: kind === 'png' ? 2 : 1,
                                                 width: figure.clientWidth, height: figure.clientHeight});
            return kind;
        }""",
        Output("export-projection-png", "title"), Input("export-projection-png", "n_clicks"),
        Input("export-projection-svg", "n_clicks"), prevent_initial_call=True)

    @callback(Output("selection", "data", allow_duplicate=True), Input("graph", "tapNodeData"),
                  State("selection", "data"), prevent_initial_call=True)
    def tap_node(node, selection):
        if not node or node["id"].startswith("row:"):
            return no_update
        nodes = list(selection["nodes"])
        nodes = [n for n in nodes if n != node["id"]] if node["id"] in nodes else nodes + [node["id"]]
        return {"nodes": nodes, "neuron": None, "neurons": []}

    @callback(Output("selection", "data", allow_duplicate=True), Input("projection", "clickData"),
                  Input("projection", "selectedData"), State("selection", "data"), prevent_initial_call=True)
    def pick_neurons(click, lasso, selection):
        """A click picks one neuron; a box or lasso, a set (a click in lasso mode also clears the lasso)."""
        triggered = ctx.triggered_prop_ids
        if "projection.clickData" in triggered and click and "customdata" in (click.get("points") or [{}])[0]:
            return {"nodes": selection["nodes"], "neuron": int(click["points"][0]["customdata"]), "neurons": []}
        points = [int(p["customdata"]) for p in (lasso or {}).get("points", []) if "customdata" in p]
        if not points:
            return no_update
        return {"nodes": selection["nodes"], "neuron": None, "neurons": sorted(set(points))}

    @callback(Output("hovered", "data"), Input("graph", "mouseoverNodeData"), State("run", "value"))
    def hover_node(node, run_key):
        data = catalog.get(run_key)
        if not node or data is None or "members" not in node:
            return []
        return [i for i in map(data.neuron_index, node["members"]) if i is not None]

    @callback(Output("graph-hover", "children"), Input("graph", "mouseoverNodeData"), State("run", "value"))
    def hover_box(node, run_key):
        """The hovered node's label and a larger mosaic: up to 9 members' top patches, or a neuron's first 4."""
        data = catalog.get(run_key)
        if not node or data is None or "members" not in node:
            return no_update
        neurons = [i for i in map(data.neuron_index, node["members"][:9]) if i is not None]
        if not neurons:
            return no_update
        image = (html.Img(src=f"/members/{data.key}/{'.'.join(str(n) for n in neurons)}.png", width=150)
                 if len(neurons) > 1 else html.Div(className="patch-grid", children=[
                     html.Img(src=f"/patch/{data.key}/{neurons[0]}/{rank}.png", width=48, height=48)
                     for rank in range(min(9, data.patch_count))]))
        return [html.Strong(node["id"]), html.Div(node["label"]), image]

    @callback(Output("projection-tooltip", "show"), Output("projection-tooltip", "bbox"),
                  Output("projection-tooltip", "children"), Input("projection", "hoverData"), State("run", "value"))
    def hover_point(hover, run_key):
        data = catalog.get(run_key)
        if not hover or data is None or not hover.get("points"):
            return False, no_update, no_update
        point = hover["points"][0]
        if "customdata" not in point or "bbox" not in point:  # an event fired while Plotly redraws has no point
            return False, no_update, no_update
        neuron = int(point["customdata"])
        url = patch_url(data.key)
        grid = html.Div(className="patch-grid", children=[
            html.Img(src=url(neuron, rank), width=48, height=48) for rank in range(min(9, data.patch_count))])
        label = html.Div(f"top images: {data.concept_label([neuron])}", className="tooltip-label")
        return True, point["bbox"], [html.Strong(data.neuron_ids[neuron]), label, grid]

    @callback(Output("examples", "children"), Input("run", "value"), Input("class", "value"),
                  Input("cut-choice", "data"), Input("selection", "data"))
    def examples(run_key, class_index, cut_choice, selection):
        data = catalog.get(run_key)
        if data is None:
            return [html.H2("Examples")]
        cut = chosen_cut(data, cut_choice)
        graph = data.graph(int(class_index), cut) if class_index is not None else {"nodes": []}
        url = patch_url(data.key)
        blocks = [html.H2("Examples")]
        if selection["neuron"] is not None:
            neuron = selection["neuron"]
            blocks += neuron_block(data, neuron, url, "selected neuron")
            blocks.append(html.H3("Most related neurons"))
            related = html.Div(className="related", children=[
                html.Div(className="related-neuron", children=[
                    html.Span(data.neuron_ids[n]),
                    html.Div(className="patches", children=[html.Img(src=url(n, r), width=40, height=40)
                                                            for r in range(min(4, data.patch_count))])])
                for n in data.neighbors[neuron, :10]])
            blocks.append(related)
        for node in data.resolve_nodes(graph, selection["nodes"], cut) if graph["nodes"] else []:
            members = node["members"]
            size, similarity = data.cluster_similarity(cut, node["cluster"], node["layer_index"]) \
                if node["cluster"] >= 0 else (0, 0.0)
            blocks.append(html.H3(node_title(node, size, similarity), className="node-title"))
            blocks.append(html.Div(f"top images: {data.concept_label(members)}", className="node-label"))
            for member in members[:10]:
                blocks += neuron_block(data, member, url, None, count=6)
            blocks.append(dcc.Graph(figure=class_bar_figure(data.top_image_classes(members), data.class_names),
                                    config={"displayModeBar": False}))
        if selection.get("neurons"):
            chosen = selection["neurons"]
            blocks.append(html.H3(f"{len(chosen)} neurons selected in the projection"))
            for member in chosen[:12]:
                blocks += neuron_block(data, member, url, None, count=6)
        if len(blocks) == 1:
            blocks.append(html.P("Select a node or a neuron to see its examples."))
        return blocks


def class_options_of(data, search: str = "") -> list[dict]:
    """The class dropdown's options; the typed text is emphasised in each name containing it."""
    if data is None:
        return []
    return [{"label": emphasised(name, search), "value": i, "search": name} for i, name in enumerate(data.class_names)]


def emphasised(name: str, search: str):
    """`name` with its first case-insensitive occurrence of `search` in a <mark>, or plain if none."""
    at = name.lower().find(search.lower()) if search else -1
    if at < 0:
        return name
    end = at + len(search)
    return html.Span([name[:at], html.Mark(name[at:end]), name[end:]])


def concept_name(data, node: dict) -> str:
    """A node's label: what its top images are, and for several neurons how many."""
    label = data.concept_label(node["members"])
    return f"{label} ({len(node['members'])})" if len(node["members"]) > 1 else label


def node_looks(data, graph: dict) -> dict[str, NodeLook]:
    """Each node's label and image: a neuron's top patch, or a 2×2 mosaic of a cluster's first members' top
    patches."""
    looks = {}
    for node in graph["nodes"]:
        image = (f"/members/{data.key}/{'.'.join(str(n) for n in node['listed'][:4])}.png" if len(node["members"]) > 1
                 else f"/patch/{data.key}/{node['members'][0]}/0.png")
        looks[node["id"]] = NodeLook(concept_name(data, node), image)
    return looks


def chosen_cut(data, cut_choice):
    """The cut the controls ask for (`cut-choice`: "auto" or the slider's Jaccard), checked against the run."""
    if not data.cuttable:
        return AUTO
    try:
        return parse_cut(cut_choice, data.floor)
    except NeuroCartoError:
        return AUTO


def neuron_block(data, neuron: int, url, heading: str | None, count: int = 9) -> list:
    """A neuron's id, the classes of its top images and its first patches."""
    children = [html.Div(className="neuron-title", children=[
        html.Strong(data.neuron_ids[neuron]), html.Span(f" · top images: {data.concept_label([neuron])}")])]
    if heading:
        children.insert(0, html.H3(heading))
    children.append(html.Div(className="patches", children=[html.Img(src=url(neuron, r), width=56, height=56)
                                                            for r in range(min(count, data.patch_count))]))
    return children
