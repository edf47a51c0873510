"""Run configuration: defaults that depend on the data, the round trip through a manifest, bad values."""
import pytest

from neurocarto.cli import main as cli_main
from neurocarto.config import ClusterParams, GraphParams, RunConfig, default_top_k
from neurocarto.errors import NeuroCartoError


@pytest.mark.parametrize("images, k", [(48, 12), (400, 100), (12_000, 219), (70_000, 529), (1_281_167, 1000)])
def test_default_top_k_grows_with_the_square_root_of_the_images(images, k):
    assert default_top_k(images) == k


def test_a_config_survives_its_manifest_form():
    config = RunConfig(model="googlenet", layers=("inception3a", "inception4e"), top_k=50,
                       cluster=ClusterParams(threshold=0.2, floor=0.1), graph=GraphParams(top_fraction=0.2))
    assert RunConfig.from_dict(config.as_dict()) == config
    assert RunConfig.from_dict({**config.as_dict(), "a field of a later version": 1}) == config


@pytest.mark.parametrize("params, message", [
    (ClusterParams(threshold=0.02), "between the floor 0.05 and 1"),
    (ClusterParams(floor=0), "cluster floor must be in (0, 1]"),
    (ClusterParams(max_share=1.5), "cluster max_share must be in (0, 1]"),
])
def test_bad_cluster_parameters_name_the_valid_range(params, message):
    with pytest.raises(NeuroCartoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        params.check()


def test_cluster_cut_takes_auto_or_a_number(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli_main(["precompute", "--cluster-cut", "often"])
    assert stopped.value.code == 2 and "neither auto nor a number" in capsys.readouterr().err
