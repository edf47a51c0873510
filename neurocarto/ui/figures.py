"""Pure figure builders: run data in, Plotly figure dicts out (no Dash, no store); the Graph View's are in
`graph_view.py`."""
from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]


def layer_color(layer_index: int) -> str:
    return PALETTE[layer_index % len(PALETTE)]


def typed_array(values: np.ndarray) -> dict:
    """Plotly.js's base64 typed-array form: 4 bytes a value in the payload instead of a decimal string."""
    values = np.ascontiguousarray(values, dtype=np.float32 if np.issubdtype(values.dtype, np.floating) else np.int32)
    return {"dtype": "f4" if values.dtype == np.float32 else "i4", "bdata": base64.b64encode(values.tobytes()).decode()}


def projection_figure(projection: np.ndarray, layer_of: np.ndarray, layer_names: list[str],
                      shown: np.ndarray | None = None, highlighted: list[int] = (), selected: int | None = None,
                      paper: bool = False) -> dict:
    """WebGL scatter of every neuron, one legend entry (toggle) per layer, then the two overlay traces.

    Built as a plain dict (no plotly validation: 100K points stay cheap). Coordinates travel as typed
    arrays; customdata (each point's neuron index, read by the tooltip and the selection) stays a plain
    list, since Dash's event data indexes the trace's input customdata directly.
    """
    shown = np.ones(len(projection), dtype=bool) if shown is None else shown
    traces = []
    for index, name in enumerate(layer_names):
        points = np.flatnonzero((layer_of == index) & shown)
        traces.append({"type": "scattergl", "mode": "markers", "name": name,
                       "x": typed_array(projection[points, 0]), "y": typed_array(projection[points, 1]),
                       "customdata": points.tolist(),
                       "marker": {"size": 6 if paper else 5, "color": layer_color(index), "opacity": 0.75},
                       "hoverinfo": "skip" if paper else "none"})
    traces += overlay_traces(projection, highlighted, selected)
    layout = {
        "uirevision": "projection", "dragmode": "lasso", "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"size": 16 if paper else 12},
        "legend": {"itemsizing": "constant", "orientation": "h", "y": -0.02, "yanchor": "top",
                   "font": {"size": 12 if paper else 10}, "entrywidth": 0.5, "entrywidthmode": "fraction",
                   "title": {"text": "layers" if paper else "layers (click to toggle)", "side": "top"}},
        "xaxis": {"visible": False}, "yaxis": {"visible": False, "scaleanchor": "x"},
        "hovermode": "closest"}
    if paper:
        layout["modebar"] = {"remove": ["toImage"]}
    return {"data": traces, "layout": layout}


def overlay_traces(projection: np.ndarray, highlighted: list[int] = (), selected: int | None = None) -> list[dict]:
    """The 'highlighted' rings and the 'selected' star, always present (maybe empty) after the layer traces."""
    points = np.asarray(sorted(set(highlighted)), dtype=np.int64)
    chosen = np.asarray([] if selected is None else [selected], dtype=np.int64)
    return [
        {"type": "scattergl", "mode": "markers", "name": "highlighted", "showlegend": False, "hoverinfo": "none",
         "x": typed_array(projection[points, 0]), "y": typed_array(projection[points, 1]),
         "customdata": points.tolist(),
         "marker": {"size": 11, "color": "rgba(0,0,0,0)", "line": {"color": "#111", "width": 2}}},
        {"type": "scattergl", "mode": "markers", "name": "selected", "showlegend": False, "hoverinfo": "none",
         "x": typed_array(projection[chosen, 0]), "y": typed_array(projection[chosen, 1]),
         "customdata": chosen.tolist(),
         "marker": {"size": 16, "symbol": "star", "color": "#ffd400", "line": {"color": "#111", "width": 1.5}}},
    ]


def class_bar_figure(counts: np.ndarray, class_names: list[str], paper: bool = False) -> dict:
    """Which classes a neuron's or cluster's top images come from."""
    order = np.argsort(-counts, kind="stable")[:10]
    order = order[counts[order] > 0]
    figure = go.Figure(go.Bar(x=counts[order][::-1], y=[class_names[i] for i in order][::-1], orientation="h",
                              marker={"color": "#4e79a7"}))
    # the bottom margin holds the tick labels and, below them, the axis title
    figure.update_layout(height=76 + 22 * max(len(order), 1), margin={"l": 8, "r": 8, "t": 4, "b": 44},
                         paper_bgcolor="white", plot_bgcolor="white", font={"size": 14 if paper else 11},
                         xaxis={"title": {"text": "top images"}}, yaxis={"automargin": True})
    return figure.to_dict()


def node_title(node: dict, cluster_size: int, cluster_similarity: float) -> str:
    """A graph node's heading: its neurons, and for a cluster how many of its members the class's graph holds."""
    count = len(node["members"])
    title = f"{node['id']}: {count} neuron{'s' * (count > 1)}"
    if node["cluster"] >= 0:
        if cluster_size > count:
            title += f" of the cluster's {cluster_size} in this class's graph"
        title += f", mean within-cluster similarity {cluster_similarity:.2f}"
    return title
