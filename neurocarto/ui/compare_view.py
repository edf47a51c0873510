"""Compare two runs in the app: a second run chosen in the header (`compare=RUN` in the URL) shows both projections
side by side in one frame (matched neurons in the same place), both class graphs with matched concepts linked and
unique ones marked, which layers correspond, and a table of every concept's category and best match. Selecting a
concept in any of them (a point, a node, a row) rings its members and its matches in the other run.

A comparison is read from the store (`store.comparisons`); one not stored yet is computed by
`python -m neurocarto compare` in a process of its own, niced, while the page polls (torch is never needed).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dash_cytoscape as cyto
from dash import Input, Output, Patch, State, dcc, html, no_update

from neurocarto.concepts.matching import CATEGORIES
from neurocarto.errors import NeuroCartoError
from neurocarto.store.comparisons import shared_images_problem, stored_comparison
from neurocarto.store.kept import Kept
from neurocarto.ui.ablation_jobs import alive
from neurocarto.ui.figures import compare_overlays, compare_projection_figure, layer_similarity_figure
from neurocarto.ui.graph_view import Frame, graph_elements, graph_stylesheet, side_by_side
from neurocarto.ui.inputs import chosen_cut
from neurocarto.ui.panels import node_looks
from neurocarto.ui.wiring import triggered, wired

POLL_MS = 500
SHOWN, HIDDEN = {}, {"display": "none"}
NO_JOBS = "this server runs no compute jobs (--no-jobs): compare them with `python -m neurocarto compare {} {}`"
TABLE_COLUMNS = [("run", "run"), ("patches", "patches"), ("concept", "concept"), ("layer", "layer"), ("size", "size"),
                 ("category", "category"), ("best", "best match"), ("similarity", "similarity"), ("label", "label")]

PAGE_ROWS = 10
SORTABLE = {"run", "concept", "layer", "size", "category", "best", "similarity"}


def compare_control(run_options: list[dict]) -> dcc.Dropdown:
    """The header's choice of a second run: every run at first (a URL's choice must be among the options when it is
    restored), then those over the same images as the run shown (`compare_options`)."""
    return dcc.Dropdown(id="compare", options=run_options, clearable=True, className="compare-select",
                        placeholder="compare with…")


def compare_views() -> html.Main:
    """The compare views, shown in place of the single run's while a second run is chosen."""
    return html.Main(id="compare-views", className="views compare-views", style=HIDDEN, children=[
        html.Section(className="view compare-projection-view", children=[
            html.Div(className="view-title", children=[html.H2("Projections, one frame")]),
            dcc.Graph(id="compare-projection", config={"displaylogo": False}, style={"height": "100%"}),
        ]),
        html.Section(className="view compare-graph-view", children=[
            html.Div(className="view-title", children=[html.H2(id="compare-graph-title", children="Class graphs")]),
            cyto.Cytoscape(id="compare-graph", elements=[], layout={"name": "preset", "fit": True, "padding": 10},
                           stylesheet=graph_stylesheet(), style={"width": "100%", "height": "100%"},
                           minZoom=0.1, maxZoom=4, boxSelectionEnabled=False, autoungrabify=True),
        ]),
        html.Aside(className="view compare-panel", children=[
            html.Div(id="compare-status", className="compare-status"),
            html.Div(id="compare-summary", className="compare-summary"),
            dcc.Graph(id="layer-similarity", config={"displayModeBar": False}, className="layer-similarity"),
            html.Div(id="checkpoints", className="checkpoints", style=HIDDEN, children=[
                html.Strong("Over training: compare with a checkpoint; the share of this run's concepts "
                            "matched in each"),
                dcc.Slider(id="checkpoint", min=0, max=1, step=1, value=0, marks=None),
                dcc.Graph(id="timeline", config={"displayModeBar": False}, className="timeline")]),
            html.Div(className="compare-filters", children=[
                dcc.Dropdown(id="compare-layer", options=[], placeholder="every layer", clearable=True),
                dcc.Checklist(id="compare-category", options=list(CATEGORIES), value=list(CATEGORIES), inline=True),
            ]),
            html.Div(id="compare-table", className="compare-table"),
            html.Div(className="compare-pager", children=[
                html.Button("‹", id="compare-prev", className="export-button", title="previous page"),
                html.Span(id="compare-page-label"),
                html.Button("›", id="compare-next", className="export-button", title="next page")]),
        ]),
        dcc.Store(id="compare-selection"),      # {"side": "a" | "b", "concept": index} in the comparison
        dcc.Store(id="compare-row"),            # "a:INDEX" | "b:INDEX": a table row clicked (assets/compare.js)
        dcc.Store(id="compare-sort"),           # {"column", "descending"}: a header clicked (assets/compare.js)
        dcc.Store(id="compare-page", data=0),
        dcc.Store(id="compare-ready"),          # "A|B|CUT" once the comparison is in the store
        dcc.Interval(id="compare-poll", interval=POLL_MS, disabled=True),
    ])


def _job_key(run_a: str, run_b: str, cut) -> str:
    return f"compare/job/{run_a}/{run_b}/{cut}"


def start_comparison(catalog, run_a: str, run_b: str, cut) -> None:
    """Compute the comparison in a process of its own unless one is running; its output goes to a log beside the
    background cache, read when it fails."""
    with catalog.jobs.transact():
        job = catalog.jobs.get(_job_key(run_a, run_b, cut))
        if isinstance(job, dict) and alive(job["pid"]):
            return
        log = Path(catalog.jobs.directory) / f"compare-{run_a}-{run_b}-{cut}.log"
        with open(log, "w") as output:
            process = subprocess.Popen([sys.executable, "-m", "neurocarto", "compare", run_a, run_b, "--cut", str(cut),
                                        "--cache", str(catalog.store.directory)],
                                       stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        os.setpriority(os.PRIO_PROCESS, process.pid, 10)     # the web workers' requests come first
        catalog.jobs.set(_job_key(run_a, run_b, cut), {"pid": process.pid, "log": str(log), "since": time.time()},
                         expire=3600)


def job_problem(catalog, run_a: str, run_b: str, cut) -> str | None:
    """Why the comparison's job ended without a result, if it did."""
    job = catalog.jobs.get(_job_key(run_a, run_b, cut))
    if not isinstance(job, dict) or alive(job["pid"]):
        return None
    try:
        text = Path(job["log"]).read_text()[-2000:]
    except OSError:
        text = ""
    errors = [line.split("error: ", 1)[1] for line in text.splitlines() if "neurocarto: error: " in line]
    return errors[-1] if errors else "the comparison ended without a result (see the server's log)"


_comparisons = Kept(8)


def comparison_of(catalog, run_key, other_key, cut_choice):
    """The stored comparison of the two runs at the page's cut (kept in memory once read), or None."""
    run_a, run_b = catalog.get(run_key), catalog.get(other_key)
    if run_a is None or run_b is None or run_a.key == run_b.key:
        return None
    cut = chosen_cut(run_a, cut_choice)
    return _comparisons.get((id(run_a), id(run_b), cut), lambda: stored_comparison(run_a, run_b, cut))


@wired(Output("compare", "options"), Input("run", "value"))
def compare_options(catalog, run_key):
    """The other complete runs over the same images."""
    run = catalog.get(run_key)
    if run is None:
        return []
    options = []
    for option in catalog.options():
        other = catalog.get(option["value"]) if option["value"] != run.key else None
        if other is not None and other.manifest["data"].get("fingerprint") == run.manifest["data"].get(
                "fingerprint") and other.manifest["counts"]["images"] == run.manifest["counts"]["images"]:
            options.append(option)
    return options


@wired(Output("views", "className"), Output("compare-views", "style"), Output("compare-status", "children"),
       Output("compare-poll", "disabled"), Output("compare-ready", "data"),
       Input("compare", "value"), Input("run", "value"), Input("cut-choice", "data"),
       Input("compare-poll", "n_intervals"))
def open_comparison(catalog, other_key, run_key, cut_choice, _n):
    """Show the compare views for a chosen second run: at once when stored, else once its job has stored it."""
    run, other = catalog.get(run_key), catalog.get(other_key) if other_key else None
    if run is None or other is None or other.key == run.key:
        return "views", HIDDEN, "", True, None
    cut = chosen_cut(run, cut_choice)
    ready = f"{run.key}|{other.key}|{cut}"
    if comparison_of(catalog, run.key, other.key, cut_choice) is not None:
        return "views hidden", SHOWN, "", True, ready
    problem = shared_images_problem(run, other) or job_problem(catalog, run.key, other.key, cut)
    if problem is None and not catalog.compute_jobs:
        problem = NO_JOBS.format(run.key, other.key)
    if problem:
        return "views hidden", SHOWN, html.Span(f"Not compared: {problem}", className="test-problem"), True, None
    if "compare-poll.n_intervals" not in triggered():
        start_comparison(catalog, run.key, other.key, cut)
    job = catalog.jobs.get(_job_key(run.key, other.key, cut)) or {}
    waited = time.time() - job.get("since", time.time())
    return "views hidden", SHOWN, f"comparing {run.name} with {other.name}… {waited:.0f} s", False, None


def _side_of(comparison, side: str) -> str:
    return comparison.run(side).name


def highlighted_neurons(comparison, selection) -> dict:
    """The selected concept's members on its side, and the members of the concepts it matches on the other."""
    if not selection or comparison is None:
        return {}
    side, concept = selection["side"], selection["concept"]
    other = "b" if side == "a" else "a"
    if not 0 <= concept < len(comparison.concepts(side)):
        return {}

    def members(which: str, index: int) -> list[int]:
        concepts = comparison.concepts(which)
        return concepts.members[concepts.offsets[index]:concepts.offsets[index + 1]].tolist()

    return {side: members(side, concept),
            other: [n for match in comparison.matches(side, concept).tolist() for n in members(other, match)]}


@wired(Output("compare-projection", "figure"),
       Input("compare-ready", "data"), Input("compare-selection", "data"), Input("paper", "value"),
       State("run", "value"), State("compare", "value"), State("cut-choice", "data"))
def draw_compare_projection(catalog, ready, selection, paper, run_key, other_key, cut_choice):
    """Both projections coloured by category; a new selection only moves the rings (a Patch)."""
    comparison = comparison_of(catalog, run_key, other_key, cut_choice) if ready else None
    if comparison is None:
        return no_update
    projections = {side: comparison.projection(side) for side in ("a", "b")}
    highlighted = highlighted_neurons(comparison, selection)
    if triggered() == {"compare-selection.data"}:
        patch = Patch()
        for offset, overlay in zip((-2, -1), compare_overlays(projections, highlighted)):
            patch["data"][offset] = overlay
        return patch
    categories = {side: comparison.category(side)[comparison.concept_of_neuron(side)] for side in ("a", "b")}
    names = {side: _side_of(comparison, side) for side in ("a", "b")}
    return compare_projection_figure(projections, categories, names, highlighted, bool(paper))


def concept_graph_links(comparison, graphs: dict) -> tuple[dict, list]:
    """Each shown node's category (by prefixed id) and the matched pairs among the two graphs' nodes."""
    concept_of = {side: comparison.concept_of_neuron(side) for side in ("a", "b")}
    categories, node_of_concept = {}, {"a": {}, "b": {}}
    for side, graph in graphs.items():
        category = comparison.category(side)
        for node in graph["nodes"]:
            concept = int(concept_of[side][node["members"][0]])
            categories[f"{side}|{node['id']}"] = str(category[concept])
            node_of_concept[side][concept] = f"{side}|{node['id']}"
    links = []
    for concept, node in node_of_concept["a"].items():
        for match in comparison.matches("a", concept).tolist():
            if match in node_of_concept["b"]:
                links.append((node, node_of_concept["b"][match]))
    return categories, links


@wired(Output("compare-graph", "elements"), Output("compare-graph-title", "children"),
       Input("compare-ready", "data"), Input("class", "value"), Input("compare-selection", "data"),
       Input("graph-size", "data"), Input("paper", "value"),
       State("run", "value"), State("compare", "value"), State("cut-choice", "data"))
def draw_compare_graph(catalog, ready, class_index, selection, size, paper, run_key, other_key, cut_choice):
    """The class's graph in each run, side by side, matched nodes linked, each node bordered by its category."""
    comparison = comparison_of(catalog, run_key, other_key, cut_choice) if ready else None
    if comparison is None or class_index is None:
        return no_update, no_update
    run_a, run_b = comparison.run("a"), comparison.run("b")
    name = run_a.class_names[int(class_index)]
    if run_b.class_index(name) is None:
        return [], f"Class graphs: {name} is not a class of {run_b.name}"
    frame = Frame.of(size)
    half = Frame(frame.width / 2, frame.height)
    cut = chosen_cut(run_a, cut_choice)
    graphs = {"a": run_a.graph(int(class_index), cut), "b": run_b.graph(name, cut)}
    selected = highlighted_neurons(comparison, selection)
    elements = {}
    for side, run in (("a", run_a), ("b", run_b)):
        chosen = {node["id"] for node in graphs[side]["nodes"] if set(node["members"]) & set(selected.get(side, ()))}
        elements[side] = graph_elements(graphs[side], run.layer_names, run.neuron_ids, node_looks(run, graphs[side]),
                                        0.0, chosen, None, half, bool(paper))
    categories, links = concept_graph_links(comparison, graphs)
    return (side_by_side(elements["a"], elements["b"], frame, categories, links),
            f"Class graphs: {name} — {run_a.name} | {run_b.name}")


_tables: dict = {}


def table_rows(comparison) -> list[dict]:
    """Every cluster of both runs (`Comparison.table`), with the id a row is picked by; kept per comparison."""
    key = id(comparison)
    if key not in _tables:
        while len(_tables) >= 8:
            _tables.pop(next(iter(_tables)))
        rows = comparison.table(clusters_only=True)
        index = {side: {name: i for i, name in enumerate(comparison.concept_ids(side))} for side in ("a", "b")}
        _tables[key] = [{**{k: row[k] for k in ("concept", "layer", "size", "category", "best", "similarity")},
                         "run": row["run"].upper(), "id": f"{row['run']}:{index[row['run']][row['concept']]}"}
                        for row in rows]
    return _tables[key]


def shown_row(comparison, row: dict) -> dict:
    """A table row as the page shows it: with its label and a mosaic of its members' top patches."""
    side, index = row["id"][0], int(row["id"][2:])
    run, concepts = comparison.run(side), comparison.concepts(side)
    members = concepts.members[concepts.offsets[index]:concepts.offsets[index + 1]]
    mosaic = f"/members/{run.key}/{'.'.join(str(m) for m in members[:4].tolist())}.png"
    return {**row, "label": run.concept_label(members), "patches": mosaic}


def _filtered(comparison, sort: dict | None, layer, categories) -> list[dict]:
    rows = [row for row in table_rows(comparison) if (layer is None or row["layer"] == layer)
            and row["category"] in (categories if categories is not None else CATEGORIES)]
    if sort:
        column = sort["column"]
        rows = sorted(rows, key=lambda row: (row[column] is None, row[column] if row[column] is not None else 0),
                      reverse=sort["descending"])
    return rows


def table_view(rows: list[dict], sort: dict | None) -> html.Table:
    """The page's rows as a table; a row names its concept (`data-concept`) and a header its column (`data-sort`)
    for assets/compare.js."""
    def header(key: str, name: str):
        mark = (" ▼" if sort["descending"] else " ▲") if sort and sort["column"] == key else ""
        return html.Th(name + mark, **({"data-sort": key, "className": "sortable"} if key in SORTABLE else {}))

    def cell(row: dict, key: str):
        if key == "patches":
            return html.Td(html.Img(src=row["patches"], alt=row["concept"]))
        value = row[key]
        return html.Td(f"{value:.3f}" if isinstance(value, float) else ("—" if value is None else str(value)),
                       className=f"category-{value}" if key == "category" else None)

    return html.Table([html.Thead(html.Tr([header(key, name) for key, name in TABLE_COLUMNS])),
                       html.Tbody([html.Tr([cell(row, key) for key, _ in TABLE_COLUMNS], **{"data-concept": row["id"]})
                                   for row in rows])])


@wired(Output("compare-table", "children"), Output("compare-page-label", "children"),
       Input("compare-ready", "data"), Input("compare-page", "data"), Input("compare-sort", "data"),
       Input("compare-layer", "value"), Input("compare-category", "value"),
       State("run", "value"), State("compare", "value"), State("cut-choice", "data"))
def compare_page(catalog, ready, page, sort, layer, categories, run_key, other_key, cut_choice):
    """One page of the clusters of both runs, filtered by layer and category and sorted as asked; labels and
    patches are made for the page's rows only."""
    comparison = comparison_of(catalog, run_key, other_key, cut_choice) if ready else None
    if comparison is None:
        return [], ""
    rows = _filtered(comparison, sort, layer, categories)
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    page = min(page or 0, pages - 1)
    shown = [shown_row(comparison, row) for row in rows[page * PAGE_ROWS:(page + 1) * PAGE_ROWS]]
    return table_view(shown, sort), f"{page + 1} / {pages} ({len(rows)} clusters)"


@wired(Output("compare-page", "data"), Input("compare-prev", "n_clicks"), Input("compare-next", "n_clicks"),
       Input("compare-sort", "data"), Input("compare-layer", "value"), Input("compare-category", "value"),
       State("compare-page", "data"), prevent_initial_call=True)
def turn_page(catalog, _previous, _next, _sort, _layer, _categories, page):
    """The pager's buttons move a page (the table keeps it within its pages); a new order or filter starts again."""
    fired = triggered()
    if "compare-next.n_clicks" in fired:
        return (page or 0) + 1
    if "compare-prev.n_clicks" in fired:
        return max((page or 0) - 1, 0)
    return 0


@wired(Output("layer-similarity", "figure"), Output("compare-summary", "children"), Output("compare-layer", "options"),
       Input("compare-ready", "data"), Input("paper", "value"),
       State("run", "value"), State("compare", "value"), State("cut-choice", "data"))
def compare_overview(catalog, ready, paper, run_key, other_key, cut_choice):
    """The counts of each run's clusters by category, the layers' correspondence, the layers to filter by."""
    comparison = comparison_of(catalog, run_key, other_key, cut_choice) if ready else None
    if comparison is None:
        return {}, [], []
    names = {side: _side_of(comparison, side) for side in ("a", "b")}
    counts = comparison.counts()
    summary = [html.P([html.Strong(f"{side.upper()} "), f"{names[side]}: " + ", ".join(
        f"{count} {category}" for category, count in counts[side]["clusters"].items()) + " clusters"])
               for side in ("a", "b")]
    figure = layer_similarity_figure(comparison.arrays["layer_similarity"], comparison.run("a").layer_names,
                                     comparison.run("b").layer_names, names, bool(paper))
    layers = list(dict.fromkeys(comparison.run("a").layer_names + comparison.run("b").layer_names))
    return figure, summary, layers


@wired(Output("compare-selection", "data"), Input("compare-projection", "clickData"),
       Input("compare-graph", "tapNodeData"), Input("compare-row", "data"),
       State("run", "value"), State("compare", "value"), State("cut-choice", "data"), prevent_initial_call=True)
def pick_in_comparison(catalog, click, node, row, run_key, other_key, cut_choice):
    """A point, a node or a table row selects its concept (its side's)."""
    comparison = comparison_of(catalog, run_key, other_key, cut_choice)
    if comparison is None:
        return no_update
    fired = triggered()

    def asked(prop: str, value) -> bool:        # (outside a request, e.g. in a unit test, the one value given)
        return bool(value) and (not fired or prop in fired)

    try:
        if asked("compare-projection.clickData", click):
            column, neuron = click["points"][0]["customdata"]
            side = "ab"[int(column)]
            return {"side": side, "concept": int(comparison.concept_of_neuron(side)[int(neuron)])}
        if asked("compare-graph.tapNodeData", node) and "|" in node.get("id", ""):
            side = node["id"].split("|", 1)[0]
            member = comparison.run(side).neuron_index(node["members"][0])
            return {"side": side, "concept": int(comparison.concept_of_neuron(side)[member])}
        if asked("compare-row.data", row):
            side, index = row.split(":")
            return {"side": side, "concept": int(index)}
    except (KeyError, IndexError, TypeError, ValueError, NeuroCartoError):
        pass
    return no_update



def _series(catalog, run):
    from neurocarto.store.comparisons import checkpoint_series

    return checkpoint_series(run, [catalog.get(key) for key in catalog.keys if catalog.get(key) is not None])


@wired(Output("checkpoints", "style"), Output("checkpoint", "max"), Output("checkpoint", "marks"),
       Output("checkpoint", "value"), Output("timeline", "figure"),
       Input("compare-ready", "data"), State("run", "value"), State("compare", "value"), State("cut-choice", "data"),
       State("paper", "value"))
def checkpoint_timeline(catalog, ready, run_key, other_key, cut_choice, paper):
    """When the run shown has checkpoints in the store (runs of its model, data and settings with other weights): a
    slider over them, at the one compared, and the share of the run's concepts matched in each checkpoint compared so
    far (each slide computes one more)."""
    from neurocarto.store.comparisons import timeline
    from neurocarto.ui.figures import timeline_figure

    run = catalog.get(run_key)
    series = _series(catalog, run) if run is not None and ready else []
    if not series or other_key not in [checkpoint.key for checkpoint in series]:
        return HIDDEN, no_update, no_update, no_update, no_update
    cut = chosen_cut(run, cut_choice)
    compared = [checkpoint for checkpoint in series if stored_comparison(run, checkpoint, cut) is not None]
    found = timeline(compared, run, cut)
    marks = {i: {"label": checkpoint.name[-12:]} for i, checkpoint in enumerate(series)}
    position = [checkpoint.key for checkpoint in series].index(other_key)
    return SHOWN, len(series) - 1, marks, position, timeline_figure(found, bool(paper), titled=False)


@wired(Output("compare", "value", allow_duplicate=True), Input("checkpoint", "value"), State("run", "value"),
       State("compare", "value"), prevent_initial_call=True)
def pick_checkpoint(catalog, position, run_key, other_key):
    """The slider compares the run with another of its checkpoints."""
    run = catalog.get(run_key)
    series = _series(catalog, run) if run is not None else []
    if position is None or not 0 <= position < len(series) or series[position].key == other_key:
        return no_update
    return series[position].key
