"""One image explained inside the run's summary: the forward pass against pass 1's own maxima, percentiles against
the run's images, the stored result read again, an upload equal to the run image it encodes, the lit graph and
its path, and the messages for bad images."""
import io

import numpy as np
import pytest
from PIL import Image

import neurocarto as nc
from neurocarto.errors import NeuroCartoError
from neurocarto.store import keys
from neurocarto.store.explanations import concept_map, lit_graph, neuron_map, stored_explained, stored_upload
from neurocarto.store.uploads import MAX_PIXELS, read_upload


@pytest.fixture(scope="module")
def run(small_fashion_run):
    _config, execution, manifest = small_fashion_run
    opened = nc.open_run(manifest["key"], cache=execution.cache)
    yield opened
    opened.store.close()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_run_image_is_explained_as_pass_1_saw_it(run):
    sample = run.array(keys.MAXIMA_SAMPLE)
    assert sample.shape == (len(run.image_labels), len(run.neuron_ids))        # 600 images: all in the sample
    explained = nc.explain(run, 17)
    np.testing.assert_allclose(explained.maxima, sample[17], rtol=1e-4, atol=1e-5)
    exact = (sample <= explained.maxima[None, :]).mean(axis=0)
    assert np.all(np.abs(explained.percentiles - exact) <= 1 / len(sample) + 1e-9)
    assert explained.true_class == run.image_labels[17] and len(explained.top_classes) == 5
    assert abs(sum(p for _, p in explained.top_classes) - 1) < 0.5 and explained.top_classes[0][1] >= \
        explained.top_classes[1][1]
    layer = len(run.layers) - 1
    channel = int(np.argmax(explained.maxima[run.layer_offsets[layer]:]))
    assert neuron_map(explained, run.layers, layer, channel).max() == pytest.approx(
        explained.maxima[run.layer_offsets[layer] + channel], rel=1e-2)
    members = run.layer_offsets[layer] + np.array([channel, (channel + 1) % run.layers[layer].channels])
    native = (run.layers[layer].height, run.layers[layer].width)
    np.testing.assert_allclose(concept_map(explained, run.layers, run.layer_offsets, run.layer_of, members, native),
                               np.mean([neuron_map(explained, run.layers, layer, int(m - run.layer_offsets[layer]))
                                        for m in members], axis=0), rtol=1e-5, atol=1e-6)
    assert concept_map(explained, run.layers, run.layer_offsets, run.layer_of, members, (28, 28)).shape == (28, 28)
    again = stored_explained(run, "run:17")
    np.testing.assert_array_equal(again.percentiles, explained.percentiles.astype(np.float32))
    assert nc.explain(run, 17).summary() == explained.summary()


def test_an_upload_of_a_run_image_gives_its_explanation(run):
    index = int(run.array(keys.IMAGE_INDEX)[5])
    from neurocarto.inputs.data import open_dataset

    dataset = open_dataset(run.config["data"], run.store.directory)
    content = png(dataset.load(index))
    uploaded = nc.explain(run, content)
    np.testing.assert_allclose(uploaded.maxima, nc.explain(run, 5).maxima, rtol=1e-5, atol=1e-6)
    assert uploaded.true_class is None and stored_upload(run, uploaded.image) == content


def test_the_lit_graph_shades_nodes_by_their_members_and_follows_the_image(run):
    explained = nc.explain(run, 17)
    graph = lit_graph(run, explained)
    assert graph == lit_graph(run, explained, explained.predicted)
    for node in graph["nodes"]:
        assert node["value"] == pytest.approx(float(np.mean(explained.percentiles[node["members"]])))
    ids = {node["id"]: node for node in graph["nodes"]}
    path = graph["path"]["nodes"]
    assert path and ids[path[0]]["layer_index"] == max(n["layer_index"] for n in graph["nodes"])
    edges = {(e["source"], e["target"]) for e in graph["edges"]}
    assert all(tuple(edge) in edges for edge in graph["path"]["edges"])
    assert [ids[n]["layer_index"] for n in path] == sorted((ids[n]["layer_index"] for n in path), reverse=True)


@pytest.mark.parametrize("content, message", [
    (b"not an image at all", "not a readable PNG, JPEG or WebP"),
    (png(Image.new("L", (28, 28)))[:60], "not a readable"),
    (png(Image.new("RGB", (28, 28))), "this run's images are 8-bit grey; this one is 8-bit RGB"),
    (png(Image.new("LA", (28, 28))), "grey with alpha"),
    (png(Image.new("I;16", (28, 28))), "16-bit grey"),
    (b"GIF89a" + bytes(40), "not a readable"),
])
def test_bad_uploads_are_refused_with_what_is_wrong(content, message):
    with pytest.raises(NeuroCartoError, match=message):
        read_upload(content, "L")


def test_a_decompression_bomb_and_cmyk_are_refused():
    side = int(MAX_PIXELS ** 0.5) + 100
    bomb = io.BytesIO()
    Image.new("1", (side, side)).save(bomb, format="PNG")          # tiny file, huge declared size
    with pytest.raises(NeuroCartoError, match="declares"):
        read_upload(bomb.getvalue(), "RGB")
    cmyk = io.BytesIO()
    Image.new("CMYK", (8, 8)).save(cmyk, format="JPEG")
    with pytest.raises(NeuroCartoError, match="CMYK"):
        read_upload(cmyk.getvalue(), "RGB")
    assert read_upload(png(Image.new("P", (8, 8))), "RGB").mode == "RGB"


def test_bad_images_in_python_name_what_would_be_valid(run):
    with pytest.raises(NeuroCartoError, match="the run's images are 0 … 599"):
        nc.explain(run, 600)
    with pytest.raises(NeuroCartoError, match="uint8 of shape"):
        nc.explain(run, np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(NeuroCartoError, match="no such image file"):
        nc.explain(run, "/nonexistent.png")


def test_explain_from_the_command_line(small_fashion_run, tmp_path, capsys):
    import json

    from neurocarto.cli import main as cli_main

    _config, execution, manifest = small_fashion_run
    image = tmp_path / "coat.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(image)
    assert cli_main(["explain", "--cache", str(execution.cache), "--run", manifest["key"], "--image", str(image),
                     "--class", "coat", "--json", str(tmp_path / "out.json"), "--figure", str(tmp_path / "f.png")]) == 0
    printed = capsys.readouterr().out
    assert "prediction: " in printed and "graph of Coat" in printed and "the image's path" in printed
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["image"].startswith("upload:") and len(written["neurons"]["percentiles"]) == manifest["counts"][
        "neurons"] and written["graph"]["path"]["nodes"]
    from neurocarto.analysis.explain_figure import CAPTION, MARGIN, SIDE

    assert Image.open(tmp_path / "f.png").size == (MARGIN + 4 * (SIDE + MARGIN), SIDE + CAPTION + 2 * MARGIN)
    assert cli_main(["explain", "--cache", str(execution.cache), "--run", manifest["key"], "--image", "9999"]) == 2
    assert "the run's images are 0 … 599" in capsys.readouterr().err


def test_a_heat_map_colours_where_the_concept_fires():
    from neurocarto.store.explanations import overlay

    image = Image.new("RGB", (8, 8), (0, 0, 0))
    heat = np.zeros((8, 8))
    heat[2, 5] = 3.0
    shown = np.asarray(overlay(image, heat)).astype(int)
    assert shown[2, 5, 0] > 150 and shown[2, 5, 1] > 150 and shown[0, 0].sum() == 0       # hot yellow, cold untouched
    assert np.asarray(overlay(image, np.ones((8, 8)))).sum() == 0                           # a flat map shows nothing

