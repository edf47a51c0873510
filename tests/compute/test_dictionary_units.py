"""Dictionary units spliced into a model: the model computes what it did, the latents are the encoder at every
position, a latent ablated subtracts its decoder column × its activation, and attribution through the decoder
equals the gradient of a hand-written replacement model."""
import numpy as np
import pytest
import torch

from neurocarto.compute.attribution import channel_attributions
from neurocarto.compute.dictionary_units import with_dictionary_units
from neurocarto.config import DictionaryParams, ExecutionConfig, RunConfig
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import LayerCapture
from neurocarto.inputs.feeding import Feed, feeding_map
from neurocarto.inputs.prepared_run import prepare


def _units_run(factory_file, image_folder, tmp_path, units="dictionary"):
    config = RunConfig(model=f"{factory_file}:make", data=str(image_folder), top_k=3, units=units,
                       dictionary=DictionaryParams(expansion=3, k=4))
    plain = prepare(config, ExecutionConfig(cache=tmp_path, progress=False))
    run = with_dictionary_units(prepare(config, ExecutionConfig(cache=tmp_path, progress=False)))
    torch.manual_seed(0)
    with torch.no_grad():           # a dictionary far from its tied start: biases and a centre of its own
        for splice in run.splices:
            splice.dictionary.encoder_bias.normal_(0, 0.1), splice.dictionary.centre.normal_(0, 0.1)
    return plain, run, run.load_images(np.arange(6))


def _outputs(run, images, indices=None, edit=None):
    captured = {}
    model = run.model.module.eval()
    with torch.no_grad(), LayerCapture(model, run.layers, captured.__setitem__, indices, edit=edit):
        logits = model(images)
    return logits, captured


def test_a_spliced_model_computes_what_it_did_and_its_latents_are_the_encoder_at_every_position(
        factory_file, image_folder, tmp_path):
    plain, run, images = _units_run(factory_file, image_folder, tmp_path, "both")
    assert [layer.name for layer in run.layers] == ["stem.2/sae", "stem.2", "block.1/sae", "block.1"]
    assert [layer.channels for layer in run.layers] == [24, 8, 48, 16]
    original, channels = _outputs(plain, images)
    spliced, captured = _outputs(run, images)
    assert torch.equal(original, spliced)                                    # bit for bit
    assert torch.equal(channels[0], captured[1]) and torch.equal(channels[1], captured[3])
    for splice, index in zip(run.splices, (0, 2)):
        maps = channels[[layer.name for layer in plain.layers].index(splice.base.name)]
        vectors = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
        per_position = splice.dictionary.encode(vectors).reshape(len(maps), *maps.shape[2:], -1).permute(0, 3, 1, 2)
        assert torch.allclose(captured[index], per_position, atol=1e-5)
        assert ((captured[index] > 0).sum(1) <= 4).all() and (captured[index] > 0).any()


def test_ablating_a_latent_subtracts_its_decoder_column_times_its_activation(factory_file, image_folder, tmp_path):
    plain, run, images = _units_run(factory_file, image_folder, tmp_path)
    splice = run.splices[0]                                                  # stem's dictionary
    _, captured = _outputs(run, images)
    latent = int(captured[0].flatten(2).amax(2).sum(0).argmax())             # the latent that fires most

    def zeroed(_index, codes):
        codes = codes.clone()
        codes[:, latent] = 0
        return codes

    ablated, _ = _outputs(run, images, [0], zeroed)
    activation = captured[0][:, latent:latent + 1]
    column = splice.dictionary.decoder.detach()[:, latent][None, :, None, None]
    module = dict(plain.model.module.named_modules())["stem.2"]
    handle = module.register_forward_hook(lambda _m, _i, output: output - column * activation)
    try:
        with torch.no_grad():
            expected = plain.model.module(images)
    finally:
        handle.remove()
    assert torch.allclose(ablated, expected, atol=1e-5) and not torch.allclose(ablated, _outputs(plain, images)[0])


def test_attribution_through_the_decoder_equals_the_gradient_of_the_replacement_model(
        factory_file, image_folder, tmp_path):
    _plain, run, images = _units_run(factory_file, image_folder, tmp_path)
    bases = [splice.base for splice in run.splices]
    feeds = feeding_map(run.model.module, run.layers, bases)
    assert feeds == [Feed(0, 1, 0, 48)]
    _, captured = _outputs(run, images)
    channels = {1: np.sort(captured[1].flatten(2).amax(2).sum(0).argsort()[-3:].numpy())}     # latents that fire
    sums, n_images = channel_attributions(run.model.module, run.layers, feeds, channels, [images])
    # the replacement model written out: the stem's latents a leaf, the stem's output their decoding plus the error
    model, (stem, block) = run.model.module, run.splices
    with torch.no_grad():
        stem_maps = model.stem(images)
        codes = stem.dictionary.latent_maps(stem_maps)
    codes.requires_grad_(True)
    decoded = stem.dictionary.decoded_maps(codes)
    spliced = decoded + (stem_maps - decoded).detach()
    spliced.retain_grad()
    block_latents = block.dictionary.latent_maps(model.block(spliced))
    expected = []
    for channel in channels[1]:
        codes.grad, spliced.grad = None, None
        block_latents[:, channel].flatten(1).amax(1).sum().backward(retain_graph=True)
        through_decoder = torch.einsum("bchw,ck->bkhw", spliced.grad, stem.dictionary.decoder.detach())
        assert torch.allclose(codes.grad, through_decoder, atol=1e-6)       # the decoder is linear: exact
        expected.append((codes.grad * codes).sum((0, 2, 3)).detach().numpy())
    assert n_images == len(images)
    np.testing.assert_allclose(sums[0], np.array(expected), rtol=1e-4, atol=1e-6)
    assert np.abs(sums[0]).max() > 0


def test_feeds_of_a_mixed_layers_latents_come_from_every_layer_that_feeds_the_mixed_layer():
    from torch import nn

    from neurocarto.neurons import Layer

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.branch1, self.branch4 = nn.Conv2d(4, 2, 1), nn.Conv2d(4, 2, 1)
            self.branch2 = nn.Sequential(nn.Conv2d(4, 3, 1), nn.Conv2d(3, 5, 3))
            self.branch3 = nn.Sequential(nn.Conv2d(4, 1, 1), nn.Conv2d(1, 6, 5))

    model = nn.Module()
    model.stem, model.mixed = nn.Conv2d(1, 4, 3), Mixed()
    stem, bottleneck, mixed = Layer("stem", 4, 8, 8), Layer("mixed.branch2.0", 3, 8, 8), Layer("mixed", 15, 8, 8)
    neurons = feeding_map(model, [stem, bottleneck, mixed])
    assert {(f.upstream, f.downstream) for f in neurons} == {(0, 1), (0, 2), (1, 2)}
    latents = [Layer(f"{base.name}/sae", 4 * base.channels, 8, 8) for base in (stem, bottleneck, mixed)]
    assert feeding_map(model, latents, [stem, bottleneck, mixed]) == [Feed(0, 1, 0, 12), Feed(0, 2, 0, 60),
                                                                     Feed(1, 2, 0, 60)]
    both = [latents[0], stem, latents[1], bottleneck, latents[2], mixed]
    assert feeding_map(model, both, [stem, bottleneck, mixed]) == [
        Feed(0, 1, 0, 4), Feed(1, 2, 0, 12), Feed(2, 3, 0, 3), Feed(1, 4, 0, 60), Feed(3, 4, 0, 60), Feed(4, 5, 0, 15)]


def test_a_dictionary_too_small_for_its_k_is_refused_naming_the_valid_range(factory_file, image_folder, tmp_path):
    config = RunConfig(model=f"{factory_file}:make", data=str(image_folder), top_k=3, units="both",
                       dictionary=DictionaryParams(expansion=1, k=9))
    with pytest.raises(NeuroCartoError, match="takes k from 1 to 8"):
        with_dictionary_units(prepare(config, ExecutionConfig(cache=tmp_path, progress=False)))
    with pytest.raises(NeuroCartoError, match="--units 'latents': valid: neurons, dictionary, both"):
        prepare(RunConfig(units="latents"), ExecutionConfig(cache=tmp_path, progress=False))
