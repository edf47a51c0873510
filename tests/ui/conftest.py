"""Fixtures of the app's tests: the small run served on a free port, and a run whose images have moved away."""
import shutil

import pytest

from neurocarto.compute.pipeline import precompute
from neurocarto.config import ExecutionConfig, RunConfig
from neurocarto.testing.browser import SHOTS
from neurocarto.testing.serving import served_app


@pytest.fixture(scope="module")
def server(small_fashion_run, tmp_path_factory):
    """The small run served by `python app.py` for this module's tests: (its address, its manifest)."""
    _config, execution, manifest = small_fashion_run
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served_app(execution.cache, manifest["key"], tmp_path_factory.mktemp("server") / "app.log") as base:
        yield base, manifest


@pytest.fixture
def run_without_its_data(image_folder, factory_file, tmp_path) -> tuple:
    """A complete run of the user's model file whose image folder was moved after the run: (its store, its key)."""
    images = shutil.copytree(image_folder, tmp_path / "images")
    config = RunConfig(model=f"{factory_file}:make", data=str(images), top_k=3)
    manifest = precompute(config, ExecutionConfig(cache=tmp_path / "cache", progress=False), log=lambda _: None)
    shutil.move(images, tmp_path / "moved")
    return tmp_path / "cache", manifest["key"]
