"""Every model family torchvision ships, and user models with quirks, run all stages with their default
layer map (random weights, a few dozen small images). `benchmarks/model_matrix.py` runs every model."""
import numpy as np
import pytest

from neurocarto.compute.pipeline import precompute
from neurocarto.config import EmbedParams, ExecutionConfig, GraphParams, PatchParams, RunConfig
from neurocarto.store.disk import Store
from neurocarto.store.patch_images import unpack

# one model of each family (torchvision's model modules; ResNeXt's grouped convolutions come with RegNet), at the
# smallest input it takes; MaxViT's named models take 224² only, so its family runs as a small MaxVit (below)
FAMILIES = {
    "resnet18": 32, "densenet121": 32, "vgg11_bn": 32, "alexnet": 64,
    "squeezenet1_1": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 32, "mnasnet0_5": 32, "shufflenet_v2_x0_5": 32,
    "efficientnet_b0": 32, "efficientnet_v2_s": 32, "regnet_x_400mf": 32, "convnext_tiny": 32, "googlenet": 32,
    "inception_v3": 80, "vit_b_32": 64, "swin_t": 32,
}

SMALL_MAXVIT = '''
import torch
from torchvision import transforms as T
from torchvision.models.maxvit import MaxVit


def make():
    torch.manual_seed(0)
    model = MaxVit(input_size=(64, 64), stem_channels=16, partition_size=2, block_channels=[16, 32, 32, 64],
                   block_layers=[1, 1, 1, 1], head_dim=8, stochastic_depth_prob=0.0, num_classes=3)
    return model, T.Compose([T.Resize((64, 64)), T.ToTensor()]), ["cat", "dog", "fish"]
'''

QUIRKY = '''
import torch
from torch import nn
from torchvision import transforms as T


class Reused(nn.Module):
    """One activation module after the stem and after the head; returns a dict."""

    def __init__(self):
        super().__init__()
        self.stem, self.head = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, stride=2)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return {"logits": self.fc(self.act(self.head(self.act(self.stem(x)))).mean((2, 3)))}


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, y.mean((2, 3))


class TupleBlocks(nn.Module):
    """Blocks that return tuples; the model returns (logits, features)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU())
        self.pair = Pair()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        maps, pooled = self.pair(self.stem(x))
        return self.fc(pooled), maps


def grey():
    return T.Compose([T.Grayscale(), T.Resize((20, 20)), T.ToTensor()])


def reused():
    torch.manual_seed(0)
    return {"model": Reused(), "transform": grey()}


def tuples():
    torch.manual_seed(0)
    return TupleBlocks(), grey(), ["cat", "dog", "fish"]
'''


def small_run(tmp_path, image_folder, model: str, image_size: int | None = None) -> dict:
    config = RunConfig(model=model, data=str(image_folder), image_size=image_size, top_k=4,
                       embed=EmbedParams(epochs=1, dimensions=8), patches=PatchParams(per_neuron=1, size=16),
                       graph=GraphParams(max_neurons=8, images_per_class=4))     # a few images: any feed runs
    return precompute(config, ExecutionConfig(cache=tmp_path, progress=False, batch_size=16), log=lambda _: None)


def check_complete(tmp_path, manifest: dict) -> None:
    assert manifest["complete"] and all(stage["status"] == "done" for stage in manifest["stages"].values())
    assert manifest["counts"]["images"] == 37 and manifest["stages"]["pass1"]["skipped"] == 1
    n_neurons = manifest["counts"]["neurons"]
    with Store(tmp_path) as store:
        key = manifest["key"]
        assert store.get_array(key, "projection").shape == (n_neurons, 2)
        assert np.isfinite(store.get_array(key, "projection")).all()
        graphs = [store.get_json(key, f"graph/{label}") for label in range(3)]
        assert all(graph["nodes"] for graph in graphs)
        assert len(unpack(store.get_bytes(key, f"patches/{n_neurons - 1}"))) == 1


@pytest.mark.parametrize("model", FAMILIES)
def test_every_family_runs_every_stage_with_its_default_map(tmp_path, image_folder, model):
    manifest = small_run(tmp_path, image_folder, model, FAMILIES[model])
    check_complete(tmp_path, manifest)
    assert len(manifest["layers"]) >= 4
    if model.startswith("vit"):
        assert {layer.get("layout") for layer in manifest["layers"]} == {None, "tokens"}
    if model.startswith("swin"):
        assert "nhwc" in {layer.get("layout") for layer in manifest["layers"]}


def test_the_maxvit_family_built_small_runs_every_stage_with_maxvit_ts_map(tmp_path, image_folder):
    """torchvision's MaxVit blocks at 64² (maxvit_t itself, at 224², runs in `benchmarks/model_matrix.py`)."""
    path = tmp_path / "small_maxvit.py"
    path.write_text(SMALL_MAXVIT)
    manifest = small_run(tmp_path / "cache", image_folder, f"{path}:make")
    check_complete(tmp_path / "cache", manifest)
    assert [layer["name"] for layer in manifest["layers"]] == [        # maxvit_t's default map, at its 224²
        "stem.0", "stem.1", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]


@pytest.mark.parametrize("factory, layers", [
    ("reused", [("act", 8), ("act_1", 16)]),
    ("tuples", [("stem.1", 8), ("pair", 8)]),
])
def test_user_models_with_reused_modules_tuples_dicts_and_one_channel_input(tmp_path, image_folder, factory, layers):
    path = tmp_path / "quirky.py"
    path.write_text(QUIRKY)
    manifest = small_run(tmp_path / "cache", image_folder, f"{path}:{factory}")
    check_complete(tmp_path / "cache", manifest)
    assert [(layer["name"], layer["channels"]) for layer in manifest["layers"]] == layers


TIMM = '''
import timm


def make(name):
    return timm.create_model(name, pretrained=False, num_classes=3)


def mobilenet():
    return make("mobilenetv3_small_050")


def resnet():
    return make("resnet10t")
'''


@pytest.mark.parametrize("factory", ["mobilenet", "resnet"])
def test_models_of_another_library_run_every_stage(tmp_path, image_folder, factory):
    pytest.importorskip("timm")
    path = tmp_path / "timm_models.py"
    path.write_text(TIMM)
    manifest = small_run(tmp_path / "cache", image_folder, f"{path}:{factory}", 64)
    check_complete(tmp_path / "cache", manifest)
    assert len(manifest["layers"]) >= 4
    graph = manifest["stages"]["graph"]
    assert graph["untraced"] is None        # residual blocks along exact cones, SE blocks along approximate ones
    assert graph["feed_methods"]["exact_cone"] >= 2
    if factory == "mobilenet":
        assert graph["feed_methods"]["approximate_cone"] >= 1
