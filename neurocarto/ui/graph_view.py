"""The Graph View's pure builders: what a class's graph shows in a panel of a given size, where it goes and
how it looks (Cytoscape elements and stylesheet). No Dash, no store.

The summary fits the panel at zoom 1: layers are rows from the input side (bottom) up, wrapped into
side-by-side columns when there are more layers than rows of readable height; each layer shows its
best nodes up to the number of slots its row has, each node its strongest edges. "All nodes" lays out
every node compactly and fits it (zoom to read).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MIN_ROW, MAX_ROW = 46, 96         # px: a layer's row (node, its label, a gap)
NODE_MIN, NODE_MAX = 30, 44       # px: rendered node sizes, by score
SLOT, PAPER_SLOT = 102, 120       # px: horizontal room per node, its label included (paper style's larger font)
GUTTER, MIN_GUTTER = 84, 44       # px: the layer name's column at the left of each row
FONT = 12                         # px: node labels and layer names on screen (14 in paper style)
IN_EDGES, OUT_EDGES = 2, 1        # strongest edges a shown node keeps, in and out
ALL_ROW, ALL_COLUMN = 110, 90     # model units of the "all nodes" layout, which is fitted to the panel
LIT_DIM = 0.5                     # a node lit at this percentile or less is drawn faint (half the images reach it)


@dataclass(frozen=True)
class Frame:
    """The graph panel in screen pixels."""

    width: float = 520
    height: float = 560

    @classmethod
    def of(cls, size: dict | None) -> "Frame":
        """From the browser's measure ({"width", "height"}), or the default when unknown or implausible."""
        try:
            width, height = float(size["width"]), float(size["height"])
        except (KeyError, TypeError, ValueError):
            return cls()
        return cls(min(max(width, 200), 8000), min(max(height, 150), 8000))


@dataclass(frozen=True)
class Grid:
    """Where a panel puts layers: `rows` per column, `columns` side by side, each layer's name in a `gutter` at
    the left of its row, and `slots` nodes per layer."""

    rows: int
    columns: int
    row_height: float
    column_width: float
    gutter: float
    slots: int
    slot: float

    @classmethod
    def for_panel(cls, frame: Frame, layers: int, slot: float = SLOT) -> "Grid":
        layers = max(layers, 1)
        rows = min(layers, max(1, int(frame.height // MIN_ROW)))
        columns = math.ceil(layers / rows)
        rows = math.ceil(layers / columns)              # balance the columns
        column_width = frame.width / columns
        gutter = min(GUTTER, max(MIN_GUTTER, column_width - slot))   # narrow columns: a narrower layer name
        slot = min(slot, column_width - gutter)                       # and, narrower still, shorter node labels
        return cls(rows, columns, min(MAX_ROW, frame.height / rows), column_width, gutter,
                   max(1, int((column_width - gutter) // slot)), slot)

    def cell(self, order: int, frame: Frame) -> tuple[float, float]:
        """Left x and centre y of the `order`-th layer (from the input side) in the panel."""
        column, row = divmod(order, self.rows)
        top = (frame.height - self.rows * self.row_height) / 2
        return column * self.column_width, top + (self.rows - 1 - row + 0.5) * self.row_height


def visible_nodes(graph: dict, threshold: float) -> set[str]:
    """Nodes whose score is at least `threshold` × the class's best score."""
    if not graph["nodes"]:
        return set()
    best = max(node["score"] for node in graph["nodes"])
    return {node["id"] for node in graph["nodes"] if node["score"] >= threshold * best}


def summary_nodes(graph: dict, visible: set[str], slots: int, keep: set[str] = frozenset()) -> set[str]:
    """Each layer's best visible nodes, at most `slots`; the `keep` nodes (selection, cascade) always, in place of
    the weakest."""
    by_layer: dict[int, list[dict]] = {}
    for node in graph["nodes"]:
        if node["id"] in visible or node["id"] in keep:
            by_layer.setdefault(node["layer_index"], []).append(node)
    shown = set()
    for nodes in by_layer.values():
        ranked = [n["id"] for n in sorted(nodes, key=lambda n: (-n["score"], n["id"]))]
        kept = [n for n in ranked if n in keep]
        shown.update(kept + [n for n in ranked if n not in keep][:max(0, slots - len(kept))])
    return shown


def strongest_edges(edges: list[dict], shown: set[str], incoming: int = IN_EDGES,
                    outgoing: int = OUT_EDGES) -> list[dict]:
    """Among edges between shown nodes, each node's `incoming` strongest in and `outgoing` strongest out."""
    between = [e for e in edges if e["source"] in shown and e["target"] in shown]
    kept = set()
    for end, count in (("target", incoming), ("source", outgoing)):
        by_node: dict[str, list[dict]] = {}
        for edge in between:
            by_node.setdefault(edge[end], []).append(edge)
        for group in by_node.values():
            kept.update(edge_id(e) for e in sorted(group, key=lambda e: (-e["weight"], edge_id(e)))[:count])
    return [e for e in between if edge_id(e) in kept]


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


def layer_caption(name: str) -> str:
    """A layer name that may wrap after its dots and underscores."""
    return name.replace(".", ".\u200b").replace("_", "_\u200b")


@dataclass(frozen=True)
class NodeLook:
    """What a node shows: its label and its image (a patch, or a mosaic of a cluster's members)."""

    label: str
    image: str


def graph_elements(graph: dict, layer_names: list[str], neuron_ids: list[str], looks: dict[str, NodeLook],
                   threshold: float = 0.0, selected: set[str] = frozenset(),
                   chain: tuple[set[str], set[str]] | None = None, frame: Frame | None = None,
                   paper: bool = False, lit: dict[str, float] | None = None) -> list[dict]:
    """Cytoscape elements of the summary for `frame` (or, without a frame, of every node, compactly); paper
    style's larger labels get wider slots; `lit` (node id → value in [0, 1] on an explained image) sets each node's
    brightness in place of fading it. Row labels, nodes, edges and frame corners are built in one place
    so that they share the grid's positions."""
    visible = visible_nodes(graph, threshold)
    keep = set(selected) | (chain[0] if chain else set())
    layers = sorted({node["layer_index"] for node in graph["nodes"] if node["id"] in visible | keep})
    grid = Grid.for_panel(frame, len(layers), PAPER_SLOT if paper else SLOT) if frame else None
    shown = summary_nodes(graph, visible, grid.slots, keep) if grid else visible | keep
    edges = strongest_edges(graph["edges"], shown) if grid else [
        e for e in graph["edges"] if e["source"] in shown and e["target"] in shown]
    if chain:
        drawn = {edge_id(e) for e in edges}
        edges += [e for e in graph["edges"] if edge_id(e) in chain[1] and edge_id(e) not in drawn]
    near = set(selected) | {e[end] for e in edges for end in ("source", "target")
                            if e["source"] in selected or e["target"] in selected}
    best = max((node["score"] for node in graph["nodes"] if node["id"] in shown), default=1.0) or 1.0
    by_layer: dict[int, list[dict]] = {}
    for node in graph["nodes"]:
        if node["id"] in shown:
            by_layer.setdefault(node["layer_index"], []).append(node)
    smallest, room = (NODE_MIN, max(0.0, min(NODE_MAX, grid.row_height - 18) - NODE_MIN)) if grid else (26, 34)
    elements = []
    for order, layer_index in enumerate(layers):
        ranked = sorted(by_layer.get(layer_index, []), key=lambda n: (-n["score"], n["id"]))
        if grid:
            left, y = grid.cell(order, frame)
            xs = [left + grid.gutter + grid.slot * (rank + 0.5) for rank in range(len(ranked))]
            caption, caption_width = {"x": left + grid.gutter - 6, "y": y}, grid.gutter - 10
        else:
            y = (len(layers) - 1 - order) * ALL_ROW
            xs = [(rank - (len(ranked) - 1) / 2) * ALL_COLUMN for rank in range(len(ranked))]
            caption, caption_width = {"x": xs[0] - 0.8 * ALL_COLUMN if xs else 0, "y": y}, ALL_COLUMN
        for x, node in zip(xs, ranked):
            classes = ["cluster" if node["cluster"] >= 0 else "neuron"]
            if node["id"] in selected:
                classes.append("selected")
            if chain is not None and node["id"] in chain[0]:
                classes.append("chain")
            elif lit is None and (chain is not None or (selected and node["id"] not in near)):
                classes.append("faded")
            look = looks[node["id"]]
            shade = {} if lit is None else {"lit": round(lit[node["id"]], 3)}
            elements.append({
                "data": {"id": node["id"], "label": look.label, "layer": node["layer"],
                         "score": round(node["score"], 3),
                         "size": round(smallest + room * node["score"] / best, 1), "image": look.image,
                         "wrap": (grid.slot if grid else ALL_COLUMN) - 4,
                         "members": [neuron_ids[n] for n in node["members"]], **shade},
                "position": {"x": x, "y": y}, "classes": " ".join(classes)})
        name = layer_names[layer_index]
        elements.append({"data": {"id": f"row:{name}", "label": layer_caption(name), "wrap": caption_width},
                         "position": caption, "classes": "row-label", "selectable": False, "grabbable": False})
    if grid:       # the panel's corners: fitting them shows the summary at zoom 1
        elements += [{"data": {"id": f"frame:{i}"}, "position": {"x": x, "y": y}, "classes": "frame",
                      "selectable": False, "grabbable": False}
                     for i, (x, y) in enumerate(((0, 0), (frame.width, frame.height)))]
    heaviest = max((e["weight"] for e in edges), default=1.0) or 1.0
    for edge in edges:
        strength = (edge["weight"] / heaviest) ** 0.75
        classes = []
        if chain is not None:
            classes.append("chain" if edge_id(edge) in chain[1] else "faded")
        elif selected and not (edge["source"] in selected or edge["target"] in selected):
            classes.append("faded")
        elements.append({"data": {"id": edge_id(edge), "source": edge["source"], "target": edge["target"],
                                  "weight": edge["weight"], "width": round(0.8 + 6.2 * strength, 2),
                                  "opacity": round(0.2 + 0.75 * strength, 2)},
                         "classes": " ".join(classes)})
    return elements


def side_by_side(left: list[dict], right: list[dict], frame: Frame, categories: dict[str, str],
                 links: list[tuple[str, str]]) -> list[dict]:
    """Two graphs' elements, each laid out for half of `frame`, as one: ids prefixed `a|` and `b|`, the right one
    moved into the right half, each node classed by its category in the other run (`categories`, by prefixed id),
    and a dashed link for each matched pair (`links`, prefixed ids)."""
    merged = []
    for prefix, elements, shift in (("a|", left, 0.0), ("b|", right, frame.width / 2)):
        for element in elements:
            if element["data"]["id"].startswith("frame:"):
                continue
            data = dict(element["data"], id=prefix + element["data"]["id"])
            if "source" in data:
                data["source"], data["target"] = prefix + data["source"], prefix + data["target"]
            moved = dict(element, data=data)
            if "position" in element:
                moved["position"] = {"x": element["position"]["x"] + shift, "y": element["position"]["y"]}
            if data["id"] in categories:
                moved["classes"] = f"{element.get('classes', '')} {categories[data['id']]}".strip()
            merged.append(moved)
    drawn = {element["data"]["id"] for element in merged}
    merged += [{"data": {"id": f"match:{a}~{b}", "source": a, "target": b}, "classes": "match"} for a, b in links
               if a in drawn and b in drawn]       # both nodes among those the summary shows
    merged += [{"data": {"id": f"frame:{i}"}, "position": {"x": x, "y": y}, "classes": "frame", "selectable": False,
                "grabbable": False} for i, (x, y) in enumerate(((0, 0), (frame.width, frame.height)))]
    return merged


def graph_stylesheet(paper: bool = False) -> list[dict]:
    font = FONT + 2 if paper else FONT
    return [
        {"selector": "node[image]", "style": {"background-image": "data(image)", "background-fit": "cover"}},
        {"selector": "node[size]", "style": {"width": "data(size)", "height": "data(size)"}},
        {"selector": "node", "style": {"border-width": 2, "border-color": "#888",
                                       "label": "data(label)", "font-size": font, "text-valign": "bottom",
                                       "text-margin-y": 1, "color": "#222", "min-zoomed-font-size": 0,
                                       "text-wrap": "ellipsis", "text-max-width": "data(wrap)"}},
        {"selector": "node.cluster", "style": {"shape": "round-rectangle", "border-color": "#4e79a7", "border-width": 3}},
        {"selector": "node.unique", "style": {"border-color": "#e15759", "border-style": "dashed"}},
        {"selector": "node.split", "style": {"border-color": "#f28e2b"}},
        {"selector": "node.merged", "style": {"border-color": "#b07aa1"}},
        {"selector": "node.row-label", "style": {"background-opacity": 0, "border-width": 0, "width": 1, "height": 1,
                                                 "text-valign": "center", "text-halign": "left", "font-size": font,
                                                 "font-weight": "bold", "color": "#555", "text-wrap": "wrap",
                                                 "text-max-width": "data(wrap)"}},
        {"selector": "node.frame", "style": {"opacity": 0, "width": 1, "height": 1, "border-width": 0, "events": "no",
                                             "label": ""}},
        {"selector": "edge", "style": {"width": "data(width)", "line-color": "#6b7a90", "opacity": "data(opacity)",
                                       "curve-style": "bezier", "target-arrow-shape": "triangle",
                                       "target-arrow-color": "#6b7a90", "arrow-scale": 0.6}},
        {"selector": "node.selected", "style": {"border-color": "#ffb000", "border-width": 6}},
        {"selector": ".chain", "style": {"opacity": 1, "line-color": "#e15759", "target-arrow-color": "#e15759",
                                         "border-color": "#e15759"}},
        {"selector": ".faded", "style": {"opacity": 0.22}},
        {"selector": "node[lit]", "style": {"opacity": f"mapData(lit, {LIT_DIM}, 1, 0.12, 1)"}},
        {"selector": "node.hovered", "style": {"border-color": "#111", "border-width": 5}},
        {"selector": "edge.hovered", "style": {"line-color": "#111", "target-arrow-color": "#111", "opacity": 1}},
        {"selector": "edge.match", "style": {"line-style": "dashed", "line-color": "#59a14f", "width": 1.5,
                                             "target-arrow-shape": "none", "curve-style": "straight",
                                             "opacity": 0.7}},
    ]
