"""Model specs, layer maps and `layer:channel` ids."""
import numpy as np
import pytest
import torch
import torchvision

from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import record_calls
from neurocarto.inputs.models import GOOGLENET_LAYERS, candidate_blocks, load_model, resolve_layers
from neurocarto.neurons import Layer, neuron_ids, parse_neuron_id


def test_googlenet_default_map_is_the_originals_25_blocks():
    loaded = load_model("googlenet", seed=0, image_size=64)
    layers = resolve_layers(loaded, None, torch.randn(1, 3, 64, 64))
    assert [layer.name for layer in layers] == GOOGLENET_LAYERS
    assert len(layers) == 25
    by_name = {layer.name: layer for layer in layers}
    assert by_name["inception4c"].channels == 512
    assert by_name["inception5b"].channels == 1024
    assert by_name["inception3b.branch2.0"].channels == 128    # the 3×3 bottleneck of mixed3b
    assert by_name["inception3b.branch3.0"].channels == 32     # the 5×5 bottleneck of mixed3b


def test_generic_blocks_merge_conv_norm_activation_and_open_sequentials():
    resnet = torchvision.models.resnet18(weights=None).eval()
    assert candidate_blocks(resnet, record_calls(resnet, torch.randn(1, 3, 64, 64))) == ["relu"] + [
        f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    vgg = torchvision.models.vgg11(weights=None).eval()
    blocks = candidate_blocks(vgg, record_calls(vgg, torch.randn(1, 3, 64, 64)))
    assert len(blocks) == 8 and all(isinstance(dict(vgg.named_modules())[b], torch.nn.ReLU) for b in blocks)


def test_default_layers_of_an_unnamed_architecture_are_its_4d_blocks(factory_file):
    loaded = load_model(f"{factory_file}:make")
    layers = resolve_layers(loaded, None, torch.randn(1, 3, 24, 24))
    assert layers == [Layer("stem.2", 8, 24, 24), Layer("block.1", 16, 11, 11)]
    assert loaded.class_names == ["cat", "dog", "fish"]


def test_unknown_model_lists_close_matches_first():
    with pytest.raises(NeuroCartoError, match=r"unknown model 'googlnet': did you mean googlenet"):
        load_model("googlnet")


def test_unknown_layer_lists_close_matches():
    loaded = load_model(None)
    with pytest.raises(NeuroCartoError, match=r"unknown layer 'mixed3c' in fashion-inception: did you mean [^?]*mixed3a"):
        resolve_layers(loaded, ["mixed3c"], torch.randn(1, 1, 28, 28))


def test_layer_without_4d_output_says_so():
    loaded = load_model(None)
    with pytest.raises(NeuroCartoError, match=r"layer 'fc' outputs shape \(batch, 10\), which is neither a feature map"):
        resolve_layers(loaded, ["fc"], torch.randn(1, 1, 28, 28))


def test_bad_weights_files_give_clear_messages(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not torch")
    with pytest.raises(NeuroCartoError, match="not a readable PyTorch state dict"):
        load_model(None, str(garbage))
    wrong = tmp_path / "wrong.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(NeuroCartoError, match="does not fit this model"):
        load_model(None, str(wrong))
    with pytest.raises(NeuroCartoError, match="no such file"):
        load_model("resnet18", str(tmp_path / "missing.pt"))


def test_factory_errors(tmp_path, factory_file):
    with pytest.raises(NeuroCartoError, match="has no function 'mk'.*did you mean make"):
        load_model(f"{factory_file}:mk")
    bad = tmp_path / "bad.py"
    bad.write_text("def make():\n    return 42\n")
    with pytest.raises(NeuroCartoError, match="returned int, expected an nn.Module"):
        load_model(f"{bad}:make")


def test_neuron_ids_round_trip():
    layers = [Layer("mixed3a", 3, 4, 4), Layer("mixed3b.branch2.0", 2, 4, 4)]
    ids = neuron_ids(layers)
    assert ids == ["mixed3a:0", "mixed3a:1", "mixed3a:2", "mixed3b.branch2.0:0", "mixed3b.branch2.0:1"]
    assert [parse_neuron_id(neuron, layers) for neuron in ids] == list(range(5))
    with pytest.raises(NeuroCartoError, match="channels 0…1"):
        parse_neuron_id("mixed3b.branch2.0:2", layers)
    with pytest.raises(NeuroCartoError, match="did you mean mixed3a"):
        parse_neuron_id("mixed3:0", layers)


def test_default_weights_that_cannot_be_fetched_say_what_to_do(monkeypatch, tmp_path):
    import torchvision.models._api as weights_api

    def offline(*_args, **_kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)   # never touch the network
    with pytest.raises(NeuroCartoError, match=r"--weights DEFAULT for resnet18.*hub cache.*--weights PATH"):
        load_model("resnet18", "DEFAULT")


@pytest.mark.parametrize("name, size, message", [
    ("inception_v3", 32, r"failed on a probe batch of shape \[2, 3, 32, 32\].*--image-size"),
    ("maxvit_t", 64, r"torchvision cannot build maxvit_t for --image-size 64.*partition size.*224 always works"),
])
def test_an_image_size_a_model_cannot_take_names_the_choice(name, size, message):
    with pytest.raises(NeuroCartoError, match=message):
        loaded = load_model(name, image_size=size)
        resolve_layers(loaded, None, torch.randn(1, 3, size, size))


def test_the_default_models_transform_equals_torchvisions_and_needs_none_of_it():
    import subprocess
    import sys

    from PIL import Image
    from torchvision.transforms import functional as TF

    from neurocarto.inputs.models import _grey_transform
    from neurocarto.zoo import fashion_inception

    rng = np.random.default_rng(0)
    for shape in [(28, 28), (28, 28, 3), (5, 9)]:
        image = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        expected = TF.normalize(TF.to_tensor(image.convert("L")), [fashion_inception.MEAN], [fashion_inception.STD])
        assert torch.equal(_grey_transform(image), expected)
    code = ("import sys; from neurocarto.inputs.models import load_model; from PIL import Image; "
            "m = load_model('fashion-inception'); m.transform(Image.new('L', (28, 28))); "
            "assert 'torchvision' not in sys.modules, 'torchvision imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
