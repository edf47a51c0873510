"""Image routes: example patches and mosaics of the run's own clusters, and explained images with their heat maps,
keyed by run key, integers and image hashes only.

Nothing in a request becomes a file path: the run must be one the app loaded, the neuron, rank and cluster are
integers checked against the run, an explained image is one the run's store holds; anything else is a 404.
"""
from __future__ import annotations

import hashlib
import io

from flask import Flask, Response, abort, request

from neurocarto.store.explanations import concept_map, explained_of, heat_layer, reference_from_url, view_image
from neurocarto.store.patch_images import mosaic
from neurocarto.store.stored_run import AUTO

HEAT_SIDE = 224             # a heat map's longer side in pixels
MAX_HEAT_MEMBERS = 64

CACHE_SECONDS = 7 * 24 * 3600


def _png(body: bytes) -> Response:
    etag = hashlib.sha1(body).hexdigest()[:16]
    if request.if_none_match and etag in request.if_none_match:
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    response = Response(body, mimetype="image/png")
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}, immutable"
    response.set_etag(etag)
    return response


def register_routes(server: Flask, runs) -> None:
    """`runs(key)` returns a loaded StoredRun, or None."""

    @server.route("/patch/<run>/<int:neuron>/<int:rank>.png")
    def patch(run: str, neuron: int, rank: int):
        run = runs(run)
        if run is None or not 0 <= neuron < len(run.neuron_ids) or not 0 <= rank < run.patch_count:
            abort(404)
        pngs = run.patch_pngs(neuron)
        if rank >= len(pngs):
            abort(404)
        return _png(pngs[rank])

    @server.route("/mosaic/<run>/<int:cluster>.png")
    def cluster_mosaic(run: str, cluster: int):
        run = runs(run)
        if run is None or not 0 <= cluster <= run.cluster_labels.max(initial=-1):
            abort(404)
        members = run.clustering(AUTO).members_of(cluster)
        return _png(mosaic([list(run.patch_pngs(int(n))) for n in members[:12]], per_member=4))

    @server.route("/members/<run>/<members>.png")
    def member_mosaic(run: str, members: str):
        """A mosaic of up to 9 neurons' top patches, 2 or 3 a row (a cluster node's image): `12.15.88.90`."""
        run = runs(run)
        parts = members.split(".")
        if run is None or not 1 <= len(parts) <= 9 or not all(p.isdigit() and len(p) <= 9 for p in parts):
            abort(404)
        neurons = [int(p) for p in parts]
        if not all(n < len(run.neuron_ids) for n in neurons) or run.patch_count < 1:
            abort(404)
        firsts = [run.patch_pngs(n)[:1] for n in neurons]
        per_row = 2 if len(firsts) <= 4 else 3
        return _png(mosaic([sum(firsts[i:i + per_row], ()) for i in range(0, len(firsts), per_row)], per_member=per_row))

    def explained(run: str, image: str):
        run = runs(run)
        reference = reference_from_url(image)
        found = explained_of(run, reference) if run is not None and reference else None
        if found is None or not found.view:
            abort(404)
        return run, found

    @server.route("/explained/<run>/<image>.png")
    def explained_image(run: str, image: str):
        """An explained image as the model saw it."""
        return _png(explained(run, image)[1].view)

    @server.route("/heat/<run>/<image>/<members>.png")
    def heat_map(run: str, image: str, members: str):
        """Where on an explained image a concept fires: its members' mean map (`12.15.88`, one layer's), coloured,
        transparent where cold, HEAT_SIDE pixels on its longer side."""
        run, found = explained(run, image)
        parts = members.split(".")
        if not 1 <= len(parts) <= MAX_HEAT_MEMBERS or not all(p.isdigit() and len(p) <= 9 for p in parts):
            abort(404)
        neurons = [int(p) for p in parts]
        if not all(n < len(run.neuron_ids) for n in neurons) or len({int(run.layer_of[n]) for n in neurons}) > 1:
            abort(404)
        width, height = view_image(found).size
        scale = HEAT_SIDE / max(width, height)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        heat = concept_map(found, run.layers, run.layer_offsets, run.layer_of, neurons, size)
        buffer = io.BytesIO()
        heat_layer(heat).save(buffer, format="PNG")
        return _png(buffer.getvalue())

    @server.route("/patch/<path:_anything>")
    @server.route("/mosaic/<path:_anything>")
    @server.route("/members/<path:_anything>")
    @server.route("/explained/<path:_anything>")
    @server.route("/heat/<path:_anything>")
    def malformed_image(_anything: str):
        """Image paths that match no rule above are 404s, not the app's page."""
        abort(404)
