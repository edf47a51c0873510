"""The feeding map of Inception-style and plain models."""
import torch
import torchvision

from neurocarto.inputs.feeding import Feed, feeding_map
from neurocarto.inputs.models import load_model, resolve_layers


def test_googlenet_map_is_the_originals():
    loaded = load_model("googlenet", image_size=64)
    layers = resolve_layers(loaded, None, torch.randn(1, 3, 64, 64))
    index = {layer.name: i for i, layer in enumerate(layers)}
    feeds = set(feeding_map(loaded.module, layers))
    # inception3b: 128 1×1, 192 3×3 (from branch2.0), 96 "5×5" (from branch3.0), 64 pool channels
    assert Feed(index["inception3a"], index["inception3b"], 0, 128) in feeds
    assert Feed(index["inception3b.branch2.0"], index["inception3b"], 128, 320) in feeds
    assert Feed(index["inception3b.branch3.0"], index["inception3b"], 320, 416) in feeds
    assert Feed(index["inception3a"], index["inception3b"], 416, 480) in feeds
    assert Feed(index["inception3a"], index["inception3b.branch2.0"], 0, 128) in feeds
    assert Feed(index["inception4e"], index["inception5a.branch3.0"], 0, 32) in feeds
    # inception3a is the first selected layer: nothing feeds it
    assert not any(feed.downstream == index["inception3a"] for feed in feeds)
    # every channel of every other layer is fed exactly once
    for i, layer in enumerate(layers[1:], start=1):
        covered = sorted((f.start, f.stop) for f in feeds if f.downstream == i)
        assert covered[0][0] == 0 and covered[-1][1] == layer.channels
        assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    assert len(feeds) == 8 * 4 + 8 * 2   # 8 fed mixed layers × 4 branches + 16 bottlenecks


def test_default_model_map():
    loaded = load_model(None)
    layers = resolve_layers(loaded, None, torch.randn(1, 1, 28, 28))
    names = [layer.name for layer in layers]
    feeds = feeding_map(loaded.module, layers)
    edges = {(names[f.upstream], names[f.downstream]) for f in feeds}
    assert ("conv2", "mixed3a") in edges
    assert ("mixed3a", "mixed3b.branch3x3_bottleneck") in edges
    assert ("mixed3b.branch5x5_bottleneck", "mixed3b") in edges
    assert ("mixed3b", "mixed4a") in edges and ("mixed3a", "mixed4a") not in edges


def test_plain_models_chain_consecutive_layers():
    model = torchvision.models.resnet18(weights=None).eval()
    from neurocarto.inputs.models import LoadedModel
    loaded = LoadedModel("resnet18", model, None, None, [], "random", "x")
    layers = resolve_layers(loaded, None, torch.randn(1, 3, 64, 64))
    feeds = feeding_map(model, layers)
    assert [(f.upstream, f.downstream) for f in feeds] == [(i, i + 1) for i in range(len(layers) - 1)]
    assert all(f.start == 0 and f.stop == layers[f.downstream].channels for f in feeds)
