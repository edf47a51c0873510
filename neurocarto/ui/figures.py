"""Pure figure builders: run data in, Plotly figure dicts and Cytoscape elements out (no Dash, no store)."""
from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
ROW_HEIGHT, COLUMN_WIDTH = 110, 90


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


def visible_nodes(graph: dict, threshold: float) -> set[str]:
    """Nodes whose score is at least `threshold` × the class's best score."""
    if not graph["nodes"]:
        return set()
    best = max(node["score"] for node in graph["nodes"])
    return {node["id"] for node in graph["nodes"] if node["score"] >= threshold * best}


def cascade(graph: dict, start: str) -> tuple[set[str], set[str]]:
    """Nodes and edges on the chains of strongest edges from `start` up to the top and down to the bottom."""
    outgoing, incoming = {}, {}
    for edge in graph["edges"]:
        outgoing.setdefault(edge["source"], []).append(edge)
        incoming.setdefault(edge["target"], []).append(edge)
    nodes, edges = {start}, set()
    for table, end in ((outgoing, "target"), (incoming, "source")):
        current = start
        while table.get(current):
            strongest = max(table[current], key=lambda e: (e["weight"], e[end]))
            edges.add(edge_id(strongest))
            current = strongest[end]
            if current in nodes:
                break
            nodes.add(current)
    return nodes, edges


def edge_id(edge: dict) -> str:
    return f"{edge['source']}->{edge['target']}"


def graph_elements(graph: dict, layer_names: list[str], neuron_ids: list[str], patch_url, threshold: float = 0.0,
                   selected: set[str] = frozenset(), chain: tuple[set[str], set[str]] | None = None) -> list[dict]:
    """Cytoscape elements: a row per layer (input side at the bottom), nodes ranked by score left to right."""
    shown = visible_nodes(graph, threshold)
    rows: dict[int, list[dict]] = {}
    for node in graph["nodes"]:
        if node["id"] in shown:
            rows.setdefault(node["layer_index"], []).append(node)
    best = max((node["score"] for node in graph["nodes"]), default=1.0) or 1.0
    layer_rows = sorted(rows)
    elements = []
    for row_number, layer_index in enumerate(layer_rows):
        ranked = sorted(rows[layer_index], key=lambda n: (-n["score"], n["id"]))
        for rank, node in enumerate(ranked):
            classes = ["cluster" if node["cluster"] >= 0 else "neuron"]
            if node["id"] in selected:
                classes.append("selected")
            if chain is not None:
                classes.append("chain" if node["id"] in chain[0] else "faded")
            members = [neuron_ids[n] for n in node["members"]]
            elements.append({
                "data": {"id": node["id"], "label": node["id"].split(":", 1)[1] if node["cluster"] < 0 else
                         f"cluster {node['cluster']} ({len(members)})", "layer": node["layer"],
                         "score": round(node["score"], 3), "size": 26 + 34 * node["score"] / best,
                         "image": patch_url(node["members"][0], 0), "members": members},
                "position": {"x": (rank - (len(ranked) - 1) / 2) * COLUMN_WIDTH,
                             "y": (len(layer_rows) - 1 - row_number) * ROW_HEIGHT},
                "classes": " ".join(classes)})
        elements.append({"data": {"id": f"row:{layer_names[layer_index]}", "label": layer_names[layer_index]},
                         "position": {"x": -((len(ranked) - 1) / 2) * COLUMN_WIDTH - 1.3 * COLUMN_WIDTH,
                                      "y": (len(layer_rows) - 1 - row_number) * ROW_HEIGHT},
                         "classes": "row-label", "selectable": False, "grabbable": False})
    heaviest = max((e["weight"] for e in graph["edges"]), default=1.0) or 1.0
    for edge in graph["edges"]:
        if edge["source"] in shown and edge["target"] in shown:
            classes = []
            if chain is not None:
                classes.append("chain" if edge_id(edge) in chain[1] else "faded")
            elements.append({"data": {"id": edge_id(edge), "source": edge["source"], "target": edge["target"],
                                      "weight": edge["weight"], "width": 0.5 + 7 * edge["weight"] / heaviest},
                             "classes": " ".join(classes)})
    return elements


def graph_stylesheet(paper: bool = False) -> list[dict]:
    font = 14 if paper else 10
    return [
        {"selector": "node[image]", "style": {"background-image": "data(image)", "background-fit": "cover"}},
        {"selector": "node[size]", "style": {"width": "data(size)", "height": "data(size)"}},
        {"selector": "node", "style": {"border-width": 2, "border-color": "#888",
                                       "label": "data(label)", "font-size": font, "text-valign": "bottom",
                                       "text-margin-y": 3, "color": "#222"}},
        {"selector": "node.cluster", "style": {"shape": "round-rectangle", "border-color": "#4e79a7", "border-width": 3}},
        {"selector": "node.row-label", "style": {"background-opacity": 0, "border-width": 0, "width": 1, "height": 1,
                                                 "text-valign": "center", "text-halign": "left", "font-size": font + 1,
                                                 "font-weight": "bold", "color": "#555"}},
        {"selector": "edge", "style": {"width": "data(width)", "line-color": "#9aa7b8", "opacity": 0.6,
                                       "curve-style": "bezier", "target-arrow-shape": "triangle",
                                       "target-arrow-color": "#9aa7b8", "arrow-scale": 0.6}},
        {"selector": "node.selected", "style": {"border-color": "#ffb000", "border-width": 6}},
        {"selector": ".chain", "style": {"opacity": 1, "line-color": "#e15759", "target-arrow-color": "#e15759",
                                         "border-color": "#e15759"}},
        {"selector": ".faded", "style": {"opacity": 0.15}},
        {"selector": "node.hovered", "style": {"border-color": "#111", "border-width": 5}},
        {"selector": "edge.hovered", "style": {"line-color": "#111", "target-arrow-color": "#111", "opacity": 1}},
    ]
