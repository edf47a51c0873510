import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurocarto.testing.stores import copy_store

os.environ.setdefault("OMP_NUM_THREADS", "2")
# A shell without job control starts background commands with SIGINT ignored, and their children inherit it:
# the servers and precomputes the tests stop with SIGINT (Ctrl-C) would then run on until killed.
signal.signal(signal.SIGINT, signal.default_int_handler)
FASHION = Path("/usr/share/datasets/fashion-mnist")
AS_COMPUTED = "small-fashion-run-as-computed"
COMPARED_AS_COMPUTED = "compared-runs-as-computed"


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Three classes of small random images, one of them a synset folder, plus one corrupt file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog", "n01440764"):
        (root / name).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / name / f"{i:02d}.png")
    (root / "cat" / "zz_broken.jpg").write_bytes(b"this is not a jpeg")
    return root


@pytest.fixture(scope="session")
def factory_file(tmp_path_factory) -> Path:
    """A user's model file: a small CNN whose factory returns (module, transform, class names)."""
    path = tmp_path_factory.mktemp("user") / "tiny_model.py"
    path.write_text('''
import torch
from torch import nn
from torchvision import transforms as T


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


def make():
    torch.manual_seed(1)
    return Tiny(), T.Compose([T.Resize((24, 24)), T.ToTensor()]), ["cat", "dog", "fish"]
''')
    return path


@pytest.fixture(scope="session")
def fashion_available() -> Path:
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    return FASHION


@pytest.fixture(scope="session")
def small_fashion_run(tmp_path_factory, fashion_available):
    """Every stage of the default model on a seeded sample of 600 Fashion-MNIST images."""
    from neurocarto.compute.pipeline import precompute
    from neurocarto.config import ExecutionConfig, GraphParams, RunConfig

    cache = tmp_path_factory.mktemp("small-fashion-run")
    config = RunConfig(max_images=600, top_k=20, graph=GraphParams(max_in_edges=50))
    execution = ExecutionConfig(cache=cache, progress=False, batch_size=100)
    logs: list[str] = []
    manifest = precompute(config, execution, log=logs.append)
    copy_store(cache, tmp_path_factory.getbasetemp() / AS_COMPUTED)
    return config, execution, manifest


@pytest.fixture(scope="module")
def fashion_store_as_computed(small_fashion_run, tmp_path_factory) -> Path:
    """A store of the module's own holding the small run as the precompute left it: before other tests explained images,
    tested concepts or served it."""
    return copy_store(tmp_path_factory.getbasetemp() / AS_COMPUTED, tmp_path_factory.mktemp("as-computed"))


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium through Playwright (one per test module: a second sync Playwright, as `snapshot`
    starts, cannot run beside one left open)."""
    from neurocarto.ui.snapshot import CHROMIUM, CHROMIUM_FLAGS

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_FLAGS))
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def compared_runs(small_fashion_run, tmp_path_factory) -> tuple[Path, str, str]:
    """A store of its own holding the small run and the default model with every weight (not the norms' statistics)
    moved by noise of a third of its spread, over the same 600 images ("moved"): (its folder, the small run's key,
    the moved run's key)."""
    from dataclasses import replace

    import torch

    from neurocarto.compute.pipeline import precompute
    from neurocarto.inputs.models import ZOO

    config, execution, manifest = small_fashion_run
    cache = copy_store(tmp_path_factory.getbasetemp() / AS_COMPUTED, tmp_path_factory.mktemp("compared"))
    state = torch.load(ZOO["fashion-inception"].weights_path, weights_only=True)
    parameters = {name for name, _ in ZOO["fashion-inception"].build().named_parameters()}   # not the norms' stats
    generator = torch.Generator().manual_seed(0)
    moved = {name: value + value.std() / 3 * torch.randn(value.shape, generator=generator)
             if name in parameters and value.numel() > 1 else value for name, value in state.items()}
    weights = tmp_path_factory.mktemp("weights") / "moved.pt"
    torch.save(moved, weights)
    other = precompute(replace(config, weights=str(weights), name="moved"), replace(execution, cache=cache),
                       log=lambda _: None)
    copy_store(cache, tmp_path_factory.getbasetemp() / COMPARED_AS_COMPUTED)
    return cache, manifest["key"], other["key"]


@pytest.fixture
def compared_runs_uncompared(compared_runs, tmp_path_factory, tmp_path) -> tuple[Path, str, str]:
    """A copy of `compared_runs`' store as its two runs were computed, before any test compared them."""
    _, key_a, key_b = compared_runs
    return copy_store(tmp_path_factory.getbasetemp() / COMPARED_AS_COMPUTED, tmp_path / "store"), key_a, key_b
