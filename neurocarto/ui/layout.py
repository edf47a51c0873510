"""The page: header (run, class search, help), projection view, graph view, example panel."""
from __future__ import annotations

import dash_cytoscape as cyto
from dash import dcc, html

from neurocarto.ui.ablation_panel import test_panel
from neurocarto.ui.compare_view import compare_control, compare_views
from neurocarto.ui.explain_panel import explain_panel
from neurocarto.ui.graph_view import graph_stylesheet
from neurocarto.ui.units_bar import units_bar

PROGRESS_POLL_MS = 1000     # how often the page reads the store while it shows a run being computed
IDLE_POLL_MS = 5000         # … and otherwise, to learn of a precompute started later

HELP = [
    html.P("Each point of the projection is a neuron (one channel of a layer, named layer:channel); neurons that "
           "fire on the same images sit close. Colours are layers: click a legend entry to hide or show it."),
    html.P("The graph shows, for the chosen class, the neurons that respond most to it, grouped into concept "
           "clusters (rounded boxes), one row per layer from the input side (bottom) to the prediction (top). "
           "Edges show how strongly a node drives the next layer's node (gradient × activation)."),
    html.P("Hover a node to see its members in the projection; click to select it (click again to release). "
           "Click a point to see the neuron and its closest relatives. Cascade mode follows the strongest edges "
           "from the selected node up and down."),
    html.P("Concept granularity cuts the hierarchy of clusters: move it left and similar clusters merge into "
           "larger concepts, right and they split; each layer's default cut is where its neurons overlap more "
           "than neurons of different layers almost ever do."),
    html.P("Explain an image: click an example patch, type an image's index or upload one. The graph then shows "
           "the predicted class with each node as bright as the image makes it fire (its percentile among the "
           "run's images), the image's own path in red, and the projection colours neurons the same way; the "
           "heat map shows where on the image the selected (or most lit) concept fires."),
    html.P("Compare with another run over the same images (another model, or a checkpoint): both projections share "
           "one frame, so matched neurons sit in the same place; green concepts are shared, orange split into "
           "several, purple merged with others, red unique to their run. Select a point, a node or a table row to "
           "ring a concept and its matches in the other run."),
    html.P("“Test this concept” zeroes the selected neurons (or sets them to their mean) on images the run did not "
           "use and shows how each class's accuracy changes, against random sets of as many neurons in the same "
           "layers."),
]


def page(run_options: list[dict]) -> html.Div:
    """The whole page as one declarative tree (read top to bottom as it appears on screen)."""
    return html.Div(className="app", children=[
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="selection", data={"nodes": [], "neuron": None, "neurons": []}),
        dcc.Store(id="hovered", data=[]),
        dcc.Store(id="cut-choice", data="auto"),
        dcc.Store(id="graph-size", data=None),          # the graph panel's size, measured in the browser
        dcc.Store(id="ready", data=None),               # a run just completed: its key, for `restore`
        dcc.Store(id="progress-focus", data=None),      # the run whose progress is shown
        dcc.Interval(id="progress-poll", interval=PROGRESS_POLL_MS),
        html.Header(className="header", children=[
            html.H1("NeuroCarto"),
            dcc.Dropdown(id="run", options=run_options, clearable=False, className="run-select",
                         placeholder="run"),
            dcc.Dropdown(id="class", options=[], clearable=False, searchable=True, className="class-search",
                         placeholder="search a class…"),
            units_bar(),
            compare_control(run_options),
            html.Details(className="help", children=[html.Summary("How to read this"), *HELP]),
            html.Div(className="exports", children=[
                dcc.Checklist(id="paper", options=[{"label": "paper style", "value": "paper"}], value=[], inline=True),
                *[part for view in ("projection", "graph") for part in (
                    html.Span(f"{view}:", className="export-label"),
                    *[html.Button(kind.upper(), id=f"export-{view}-{kind}", className="export-button",
                                  title=f"download the {view} as {kind.upper()}") for kind in ("png", "svg")])],
            ]),
        ]),
        html.Div(id="message", className="message", role="alert"),
        html.Section(id="progress", className="progress-panel", style={"display": "none"}, **{"aria-live": "polite"}),
        html.Main(id="views", className="views", children=[
            html.Section(className="view projection-view", children=[
                html.Div(className="view-title", children=[
                    html.H2("Neuron projection"),
                    dcc.RadioItems(id="projection-filter", inline=True, value="all", options=[
                        {"label": "all neurons", "value": "all"},
                        {"label": "this class", "value": "class"},
                        {"label": "selected clusters", "value": "clusters"}]),
                    dcc.Checklist(id="projection-show", inline=True, value=["labels"], options=[
                        {"label": "labels", "value": "labels"}, {"label": "density", "value": "density"},
                        {"label": "colour by class", "value": "class"}]),
                ]),
                dcc.Graph(id="projection", clear_on_unhover=True, config={
                    "displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": "projection"}},
                    style={"height": "100%"}),
                dcc.Tooltip(id="projection-tooltip", direction="right"),
            ]),
            html.Section(className="view graph-view", children=[
                html.Div(className="view-title", children=[
                    html.H2(id="graph-title", children="Class graph"),
                    dcc.RadioItems(id="graph-detail", inline=True, value="summary", options=[
                        {"label": "summary", "value": "summary"}, {"label": "all nodes", "value": "all"}]),
                    dcc.Checklist(id="mode", options=[{"label": "concept cascade", "value": "cascade"}], value=[],
                                  inline=True),
                ]),
                html.Div(className="graph-controls", children=[
                    html.Div(className="slider", children=[
                        html.Label("minimum score (share of the best)", htmlFor="threshold"),
                        dcc.Slider(id="threshold", min=0, max=1, step=0.05, value=0,
                                   marks={0: "0", 0.5: "0.5", 1: "1"}, tooltip={"placement": "bottom"}),
                    ]),
                    html.Div(className="slider cut-control", children=[
                        html.Label(["granularity (cut) ",
                                    dcc.Checklist(id="cut-auto", inline=True, value=["auto"], options=[
                                        {"label": "layer defaults", "value": "auto"}])], htmlFor="cut",
                                   title="the concept hierarchy's Jaccard cut: left coarser (similar clusters merge), "
                                         "right finer"),
                        dcc.Slider(id="cut", min=0.05, max=0.6, step=0.01, value=0.2,
                                   marks={0.05: "0.05", 0.2: "0.2", 0.4: "0.4", 0.6: "0.6"},
                                   tooltip={"placement": "bottom"}),
                    ]),
                ]),
                html.Div(id="graph-hover", className="graph-hover", style={"visibility": "hidden"}),
                cyto.Cytoscape(id="graph", elements=[], layout={"name": "preset", "fit": True, "padding": 30},
                               stylesheet=graph_stylesheet(), style={"width": "100%", "height": "100%"},
                               minZoom=0.1, maxZoom=4, boxSelectionEnabled=False, autoungrabify=True),
            ]),
            html.Aside(className="view examples", children=[
                explain_panel(),
                test_panel(),
                html.Div(id="examples", children=[
                    html.H2("Examples"), html.P("Select a node or a neuron to see its examples.")]),
            ]),
        ]),
        compare_views(),
    ])
