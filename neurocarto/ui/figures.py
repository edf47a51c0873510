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
                      paper: bool = False, concepts: list[tuple[list[int], str]] = (),
                      values: np.ndarray | None = None, labels: list[dict] = (), density: bool = False,
                      classes: np.ndarray | None = None, class_names: list[str] = ()) -> dict:
    """WebGL scatter of every neuron, one legend entry (toggle) per layer, then the two overlay traces.

    Built as a plain dict (no plotly validation: 100K points stay cheap). Coordinates travel as typed
    arrays; customdata (each point's neuron index, read by the tooltip and the selection) stays a plain
    list, since Dash's event data indexes the trace's input customdata directly. Each of `concepts`
    (members, label) is outlined and labelled (`concept_outlines`). With `values` (each neuron's percentile on an
    explained image) every point is coloured by its value on one scale instead of by its layer; with `classes` (each
    neuron's dominant class) by its class. `labels` (annotations) name concepts where they lie; `density` shades
    where points pile up. The layer traces come first and the two overlays right after them, whatever else is shown
    (the hover's Patch finds them there).
    """
    shown = np.ones(len(projection), dtype=bool) if shown is None else shown
    traces = []
    for index, name in enumerate(layer_names):
        points = np.flatnonzero((layer_of == index) & shown)
        traces.append({"type": "scattergl", "mode": "markers", "name": name,
                       "x": typed_array(projection[points, 0]), "y": typed_array(projection[points, 1]),
                       "customdata": points.tolist(), "marker": layer_marker(index, points, paper, values, classes),
                       "hoverinfo": "skip" if paper else "none"})
        if classes is not None and values is None:     # the legend names classes instead
            traces[-1]["showlegend"] = False
    traces += overlay_traces(projection, highlighted, selected)
    if density:
        traces.append(density_trace(projection[shown]))
    if classes is not None and values is None:
        traces += class_legend(class_names, np.unique(classes[shown]))
    layout = {
        "uirevision": "projection", "dragmode": "lasso", "margin": {"l": 8, "r": 8, "t": 8, "b": 8},
        "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"size": 16 if paper else 12},
        "legend": {"itemsizing": "constant", "orientation": "h", "y": -0.02, "yanchor": "top",
                   "font": {"size": 12 if paper else 10}, "entrywidth": 0.5, "entrywidthmode": "fraction",
                   "title": {"text": legend_title(paper, values is not None, classes is not None), "side": "top"}},
        "xaxis": {"visible": False}, "yaxis": {"visible": False, "scaleanchor": "x"},
        "hovermode": "closest", **concept_outlines(projection, concepts, paper)}
    layout["annotations"] = list(labels) + layout["annotations"]
    if paper:
        layout["modebar"] = {"remove": ["toImage"]}
    return {"data": traces, "layout": layout}


def layer_marker(index: int, points: np.ndarray, paper: bool, values: np.ndarray | None = None,
                 classes: np.ndarray | None = None) -> dict:
    """The marker of layer `index`'s trace (its `points`): the layer's colour, each point's class colour, or each
    point's percentile on an explained image (`values`, which win) on one scale whose bar the first layer shows."""
    marker = {"size": 6 if paper else 5, "color": layer_color(index), "opacity": 0.75}
    if values is not None:
        return {**marker, "color": typed_array(values[points]), "cmin": 0.5, "cmax": 1.0, "colorscale": "YlOrRd",
                "showscale": index == 0, "opacity": 0.9,
                "colorbar": {"title": {"text": "percentile on the image", "side": "right"}, "thickness": 10,
                             "len": 0.6, "tickformat": ".0%"}}
    if classes is not None:
        return {**marker, "color": [PALETTE[int(c) % len(PALETTE)] for c in classes[points]]}
    return marker


def legend_title(paper: bool, explained: bool, by_class: bool) -> str:
    if by_class and not explained:
        return "dominant class of each neuron's top images"
    return ("layers" if paper else "layers (click to toggle)") + ("; colour: percentile on the image" if explained
                                                                 else "")


LABEL_BOX = (96, 16)         # px a concept label takes on the projection (≤ 14 characters at 11 px)
PLOT_SIZE = (560, 640)      # px of the projection's plotting area, as the page lays it out at 1600 × 900


def placed_labels(centres: np.ndarray, ranked: np.ndarray, view: tuple[float, float, float, float],
                  most: int = 24, plot_size: tuple[int, int] = PLOT_SIZE) -> list[int]:
    """Which concepts get a label in the visible `view` (x0, x1, y0, y1): in the order of `ranked`, each whose label
    box, centred on its (x, y) in `centres`, lies inside the view and overlaps no label placed before; at most
    `most`. Zoomed in, the view is smaller, so more (smaller) concepts find room."""
    x0, x1, y0, y1 = view
    half_w = LABEL_BOX[0] / plot_size[0] * (x1 - x0) / 2
    half_h = LABEL_BOX[1] / plot_size[1] * (y1 - y0) / 2
    placed: list[int] = []
    boxes = np.empty((0, 2))
    for concept in ranked:
        x, y = centres[concept]
        if not (x0 + half_w <= x <= x1 - half_w and y0 + half_h <= y <= y1 - half_h):
            continue
        if len(boxes) and (np.abs(boxes[:, 0] - x) < 2 * half_w).__and__(np.abs(boxes[:, 1] - y) < 2 * half_h).any():
            continue
        placed.append(int(concept))
        boxes = np.vstack([boxes, [x, y]])
        if len(placed) == most:
            break
    return placed


def label_annotations(centres: np.ndarray, texts: list[str], paper: bool = False) -> list[dict]:
    """Concept labels at their members' centre, drawn over the points."""
    return [{"x": float(x), "y": float(y), "xref": "x", "yref": "y", "text": text, "showarrow": False,
             "font": {"size": 13 if paper else 11, "color": "#222"}, "bgcolor": "rgba(255,255,255,0.7)",
             "borderpad": 1, "name": "concept-label"} for (x, y), text in zip(centres, texts)]


def density_trace(projection: np.ndarray) -> dict:
    """Shading where points pile up (a 2D histogram's filled contours, under the points)."""
    return {"type": "histogram2dcontour", "x": typed_array(projection[:, 0]), "y": typed_array(projection[:, 1]),
            "colorscale": [[0, "rgba(255,255,255,0)"], [1, "rgba(78,121,167,0.45)"]], "showscale": False,
            "contours": {"coloring": "fill", "showlines": False}, "ncontours": 12, "hoverinfo": "skip",
            "name": "density", "showlegend": False}


def class_legend(class_names: list[str], present: np.ndarray) -> list[dict]:
    """Legend entries for the classes the points are coloured by (traces without points)."""
    return [{"type": "scatter", "mode": "markers", "x": [None], "y": [None], "name": class_names[int(c)],
             "legendgroup": "classes", "marker": {"size": 8, "color": PALETTE[int(c) % len(PALETTE)]},
             "hoverinfo": "none"} for c in present]


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


def concept_outlines(projection: np.ndarray, concepts: list[tuple[list[int], str]], paper: bool = False) -> dict:
    """Layout shapes and annotations: each concept's members enclosed by their convex hull (widened a little, a
    circle for fewer than three distinct points) and its label above it."""
    shapes, annotations = [], []
    span = float(np.ptp(projection, axis=0).max()) if len(projection) else 1.0
    for members, label in concepts:
        points = projection[np.asarray(members, dtype=np.int64)].astype(np.float64)
        centre = points.mean(axis=0)
        margin = 0.015 * span
        outline = _hull(points)
        if outline is None:
            radius = float(np.linalg.norm(points - centre, axis=1).max()) + margin
            shapes.append({"type": "circle", "xref": "x", "yref": "y", "x0": centre[0] - radius, "x1": centre[0] + radius,
                           "y0": centre[1] - radius, "y1": centre[1] + radius, **OUTLINE_STYLE})
            top = centre[1] + radius
        else:
            directions = outline - centre
            lengths = np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
            outline = outline + directions / lengths * margin
            path = "M " + " L ".join(f"{x:.4f},{y:.4f}" for x, y in outline) + " Z"
            shapes.append({"type": "path", "xref": "x", "yref": "y", "path": path, **OUTLINE_STYLE})
            top = float(outline[:, 1].max())
        annotations.append({"x": float(centre[0]), "y": top, "xref": "x", "yref": "y", "text": label,
                            "showarrow": False, "yanchor": "bottom", "font": {"size": 14 if paper else 11, "color": "#111"},
                            "bgcolor": "rgba(255,255,255,0.85)"})
    return {"shapes": shapes, "annotations": annotations}


OUTLINE_STYLE = {"line": {"color": "#111", "width": 1.5, "dash": "dot"}, "fillcolor": "rgba(255,212,0,0.12)",
                 "layer": "below"}


def _hull(points: np.ndarray) -> np.ndarray | None:
    """The convex hull's corners in order, or None when the points span no area."""
    from scipy.spatial import ConvexHull, QhullError

    if len(np.unique(points, axis=0)) < 3:
        return None
    try:
        hull = ConvexHull(points)
    except QhullError:
        return None
    return points[hull.vertices]


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
    if node.get("outside"):
        title += " · not in this class's graph"
    return title


def ablation_figure(result: dict, chosen: int, paper: bool = False) -> dict:
    """Each class's accuracy change with the concept ablated (bars; the chosen class darker), and the mean change
    of random same-size sets with their spread (markers with error bars)."""
    rows = result["classes"]
    names = [row["class"] for row in rows]
    change = [row["accuracy_after"] - row["accuracy_before"] for row in rows]
    colours = ["#e15759" if c == chosen else "#9fb4cc" for c in range(len(rows))]
    figure = go.Figure(go.Bar(x=change, y=names, orientation="h", marker={"color": colours}, name="this concept",
                              hovertemplate="%{y}: %{x:+.3f}<extra>this concept</extra>"))
    if rows and rows[0]["random_drop_mean"] is not None:
        figure.add_trace(go.Scatter(
            x=[-row["random_drop_mean"] for row in rows], y=names, mode="markers", name="random sets (mean ± std)",
            marker={"color": "#333", "symbol": "line-ns-open", "size": 12, "line": {"width": 2}},
            error_x={"type": "data", "array": [row["random_drop_std"] for row in rows], "thickness": 1.2, "width": 3},
            hovertemplate="%{y}: %{x:+.3f}<extra>random sets</extra>"))
    figure.update_layout(height=90 + 20 * len(rows), margin={"l": 8, "r": 8, "t": 4, "b": 44}, showlegend=True,
                         legend={"orientation": "h", "y": -0.25, "x": 0, "font": {"size": 10}}, barmode="overlay",
                         paper_bgcolor="white", plot_bgcolor="white", font={"size": 14 if paper else 11},
                         xaxis={"title": {"text": "accuracy change", "standoff": 2}, "zeroline": True,
                                "zerolinecolor": "#888", "tickformat": "+.2f"},
                         yaxis={"automargin": True, "autorange": "reversed"})
    return figure.to_dict()


CATEGORY_COLORS = {"shared": "#59a14f", "split": "#f28e2b", "merged": "#b07aa1", "unique": "#e15759"}


def compare_projection_figure(projections: dict, categories: dict, names: dict, highlighted: dict,
                              paper: bool = False) -> dict:
    """Two runs' projections side by side in one frame (run A's: matched neurons sit in the same place), every
    neuron coloured by its concept's category; per side ("a", "b") `categories` is (neurons,) category names and
    `highlighted` the neurons ringed. Each point's customdata is [side index, neuron]."""
    traces = []
    for column, side in enumerate(("a", "b")):
        axis = "" if column == 0 else "2"
        for category, color in CATEGORY_COLORS.items():
            points = np.flatnonzero(categories[side] == category)
            traces.append({"type": "scattergl", "mode": "markers", "name": category, "legendgroup": category,
                           "showlegend": column == 0, "xaxis": f"x{axis}", "yaxis": f"y{axis}",
                           "x": typed_array(projections[side][points, 0]),
                           "y": typed_array(projections[side][points, 1]),
                           "customdata": [[column, int(n)] for n in points],
                           "marker": {"size": 6 if paper else 5, "color": color, "opacity": 0.75},
                           "hoverinfo": "skip" if paper else "none"})
    traces += compare_overlays(projections, highlighted)
    span = np.concatenate([projections["a"], projections["b"]])
    low, high = span.min(axis=0), span.max(axis=0)
    pad = 0.03 * (high - low + 1e-9)
    ranges = {"x": [float(low[0] - pad[0]), float(high[0] + pad[0])], "y": [float(low[1] - pad[1]), float(high[1] + pad[1])]}
    layout = {
        "uirevision": "compare", "dragmode": "pan", "margin": {"l": 8, "r": 8, "t": 28, "b": 8},
        "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"size": 16 if paper else 12},
        "xaxis": {"domain": [0, 0.49], "visible": False, "range": ranges["x"]},
        "yaxis": {"visible": False, "range": ranges["y"], "scaleanchor": "x"},
        "xaxis2": {"domain": [0.51, 1], "visible": False, "range": ranges["x"], "matches": "x"},
        "yaxis2": {"visible": False, "range": ranges["y"], "anchor": "x2", "matches": "y"},
        "legend": {"orientation": "h", "y": -0.02, "yanchor": "top", "font": {"size": 12 if paper else 10},
                   "title": {"text": "concept in the other run", "side": "top"}},
        "annotations": [{"text": names[side], "x": 0.245 if side == "a" else 0.755, "y": 1.0, "xref": "paper",
                         "yref": "paper", "yanchor": "bottom", "showarrow": False,
                         "font": {"size": 14 if paper else 12}} for side in ("a", "b")],
        "shapes": [{"type": "line", "xref": "paper", "yref": "paper", "x0": 0.5, "x1": 0.5, "y0": 0, "y1": 1,
                    "line": {"color": "#ccc", "width": 1}}],
        "hovermode": "closest"}
    return {"data": traces, "layout": layout}


def compare_overlays(projections: dict, highlighted: dict) -> list[dict]:
    """The rings around the highlighted neurons of each side: always the last two traces."""
    overlays = []
    for column, side in enumerate(("a", "b")):
        points = np.asarray(sorted(set(highlighted.get(side, ()))), dtype=np.int64)
        overlays.append({"type": "scattergl", "mode": "markers", "name": f"highlighted {side}", "showlegend": False,
                         "xaxis": "x" if column == 0 else "x2", "yaxis": "y" if column == 0 else "y2",
                         "hoverinfo": "none", "x": typed_array(projections[side][points, 0]),
                         "y": typed_array(projections[side][points, 1]),
                         "customdata": [[column, int(n)] for n in points],
                         "marker": {"size": 11, "color": "rgba(0,0,0,0)", "line": {"color": "#111", "width": 2}}})
    return overlays


def layer_similarity_figure(similarity: np.ndarray, layers_a: list[str], layers_b: list[str], names: dict,
                            paper: bool = False) -> dict:
    """Which layers of A correspond to which of B: the mean best Jaccard of each layer's neurons in the other."""
    return {"data": [{"type": "heatmap", "z": np.round(similarity, 4).tolist(), "x": layers_b, "y": layers_a,
                      "colorscale": "Blues", "zmin": 0, "colorbar": {"thickness": 8, "len": 0.9},
                      "hovertemplate": "%{y} ↔ %{x}: %{z:.3f}<extra></extra>"}],
            "layout": {"margin": {"l": 8, "r": 8, "t": 8, "b": 8}, "font": {"size": 14 if paper else 10},
                       "xaxis": {"title": {"text": names["b"]}, "automargin": True, "tickangle": -45},
                       "yaxis": {"title": {"text": names["a"]}, "automargin": True, "autorange": "reversed"},
                       "paper_bgcolor": "white", "plot_bgcolor": "white"}}


def timeline_figure(timeline: dict, paper: bool = False, titled: bool = True) -> dict:
    """The final run's clusters with a match in each checkpoint (and all its units), over training; untitled where
    a panel's heading says what it is."""
    names = [checkpoint["name"] for checkpoint in timeline["checkpoints"]]
    clusters = [count / max(timeline["clusters"], 1) for count in timeline["matched_clusters"]]
    units = [count / max(timeline["units"], 1) for count in timeline["matched_units"]]
    return {"data": [{"type": "scatter", "mode": "lines+markers", "x": names, "y": clusters, "name": "clusters",
                      "line": {"color": CATEGORY_COLORS["shared"]}},
                     {"type": "scatter", "mode": "lines+markers", "x": names, "y": units, "name": "all units",
                      "line": {"color": "#4e79a7", "dash": "dot"}}],
            "layout": {"margin": {"l": 50, "r": 10, "t": 50 if titled else 10, "b": 60},
                       "font": {"size": 16 if paper else 12},
                       "title": {"text": f"concepts of {timeline['final']['name']}<br>matched in each checkpoint"
                                 if titled else "", "font": {"size": 17 if paper else 12}},
                       "yaxis": {"title": {"text": "share matched"}, "range": [0, 1.02], "tickformat": ".0%"},
                       "xaxis": {"title": {"text": "checkpoint"}}, "paper_bgcolor": "white", "plot_bgcolor": "white",
                       "legend": {"y": 0.02, "yanchor": "bottom", "x": 1, "xanchor": "right",    # under the rise
                                  "bgcolor": "rgba(255,255,255,0.8)"}}}
