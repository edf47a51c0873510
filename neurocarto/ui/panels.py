"""The page's small blocks built from a run: the class options with the typed text marked, what a graph node shows
(its label and image), and a neuron's block of example patches."""
from __future__ import annotations

from dash import html

from neurocarto.ui.graph_view import NodeLook


def class_options_of(run, search: str = "") -> list[dict]:
    """The class dropdown's options; the typed text is emphasised in each name containing it."""
    if run is None:
        return []
    return [{"label": emphasised(name, search), "value": i, "search": name} for i, name in enumerate(run.class_names)]


def emphasised(name: str, search: str):
    """`name` with its first case-insensitive occurrence of `search` in a <mark>, or plain if none."""
    at = name.lower().find(search.lower()) if search else -1
    if at < 0:
        return name
    end = at + len(search)
    return html.Span([name[:at], html.Mark(name[at:end]), name[end:]])


def concept_name(run, node: dict) -> str:
    """A node's label: what its top images are, and for several neurons how many."""
    label = run.concept_label(node["members"])
    return f"{label} ({len(node['members'])})" if len(node["members"]) > 1 else label


def node_looks(run, graph: dict) -> dict[str, NodeLook]:
    """Each node's label and image: a neuron's top patch, or a 2×2 mosaic of a cluster's first members' top
    patches."""
    looks = {}
    for node in graph["nodes"]:
        image = (f"/members/{run.key}/{'.'.join(str(n) for n in node['listed'][:4])}.png" if len(node["members"]) > 1
                 else f"/patch/{run.key}/{node['members'][0]}/0.png")
        looks[node["id"]] = NodeLook(concept_name(run, node), image)
    return looks


def neuron_block(run, neuron: int, url, heading: str | None, count: int = 9) -> list:
    """A neuron's id, the classes of its top images and its first patches."""
    children = [html.Div(className="neuron-title", children=[
        html.Strong(run.neuron_ids[neuron]), html.Span(f" · top images: {run.concept_label([neuron])}")])]
    if heading:
        children.insert(0, html.H3(heading))
    children.append(html.Div(className="patches", children=[
        patch_image(run, url, neuron, rank, 56) for rank in range(min(count, run.patch_count))]))
    return children


def patch_url(run_key: str):
    """The address of a neuron's patch of its rank-th top image."""
    return lambda neuron, rank: f"/patch/{run_key}/{int(neuron)}/{int(rank)}.png"


def patch_image(run, url, neuron: int, rank: int, side: int) -> html.Img:
    """A neuron's patch of its `rank`-th top image; a click explains that image (`assets/explain.js`)."""
    image = int(run.top_images[neuron, rank]) if rank < run.top_images.shape[1] else -1
    if image < 0:
        return html.Img(src=url(neuron, rank), width=side, height=side)
    return html.Img(src=url(neuron, rank), width=side, height=side, className="pickable",
                    title=f"image {image}: click to explain it", **{"data-image": str(image)})
