"""Sparse dictionaries against planted features and brute-force references."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurocarto.compute.dictionary import (DENSE_RATE, TopKDictionary, dictionary_quality, sample_vectors,
                                           train_dictionary)
from neurocarto.neurons import Layer

FEATURES, CHANNELS, SIDE = 48, 12, 8


class Superposed(nn.Module):
    """A layer (`mix`) holding 48 known features in 12 channels: each feature a fixed random direction, so every
    channel mixes several of them."""

    def __init__(self, directions: torch.Tensor):
        super().__init__()
        self.mix = nn.Conv2d(FEATURES, CHANNELS, 1, bias=False)
        with torch.no_grad():
            self.mix.weight.copy_(directions[:, :, None, None])
        self.head = nn.Linear(CHANNELS, 3)

    def forward(self, x):
        return self.head(self.mix(x).mean((2, 3)))


def sparse_feature_images(count: int, seed: int, batch: int = 32):
    """Batches of inputs whose every position holds about 2 of the 48 features, each of strength 0.5 … 1.5."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count // batch):
        active = torch.rand(batch, FEATURES, SIDE, SIDE, generator=generator) < 2 / FEATURES
        yield active * (0.5 + torch.rand(batch, FEATURES, SIDE, SIDE, generator=generator))


def test_a_dictionary_recovers_planted_superposed_features_and_neurons_do_not():
    directions = F.normalize(torch.randn(CHANNELS, FEATURES, generator=torch.Generator().manual_seed(0)), dim=0)
    model, layer = Superposed(directions), Layer("mix", CHANNELS, SIDE, SIDE)
    (vectors,) = sample_vectors(model, [layer], sparse_feature_images(1024, seed=1), limit=20_000, per_image=32)
    dictionary, training = train_dictionary(vectors, latents=96, k=3, epochs=8, batch_size=256, learning_rate=5e-3)
    best_latent = (F.normalize(dictionary.decoder.detach(), dim=0).t() @ directions).max(0).values
    best_channel = directions.abs().max(0).values           # a neuron is the direction of one channel
    print(f"\nmean best cosine to the 48 planted features: dictionary {best_latent.mean():.3f} (min "
          f"{best_latent.min():.3f}), neurons {best_channel.mean():.3f} (min {best_channel.min():.3f})")
    assert best_latent.mean() >= 0.9 and best_channel.mean() < 0.7
    assert training.fvu_per_epoch[-1] < training.fvu_per_epoch[0]
    (held_out,) = sample_vectors(model, [layer], sparse_feature_images(256, seed=2), limit=5000)
    quality = dictionary_quality(dictionary, held_out)
    print(f"held out: variance explained {quality['variance explained']:.3f}, mean L0 {quality['mean l0']:.2f}, "
          f"{quality['dead']} dead and {quality['dense']} dense of 96 latents")
    assert quality["variance explained"] > 0.8 and quality["mean l0"] <= 3


def test_the_encoder_as_a_1x1_convolution_equals_the_encoder_at_every_position():
    dictionary = TopKDictionary(channels=6, latents=20, k=4, seed=3)
    with torch.no_grad():
        dictionary.centre.normal_()
        dictionary.encoder_bias.normal_()
    maps = torch.randn(2, 6, 5, 4)
    vectors = maps.permute(0, 2, 3, 1).reshape(-1, 6)
    expected = dictionary.encode(vectors).reshape(2, 5, 4, 20).permute(0, 3, 1, 2)
    torch.testing.assert_close(dictionary.latent_maps(maps), expected, rtol=1e-5, atol=1e-5)
    reconstructed = dictionary(vectors).reshape(2, 5, 4, 6).permute(0, 3, 1, 2)
    torch.testing.assert_close(dictionary.reconstructed_maps(maps), reconstructed, rtol=1e-5, atol=1e-5)
    assert ((dictionary.latent_maps(maps) > 0).sum(1) <= 4).all()


def test_training_keeps_the_decoders_columns_at_unit_norm_and_k_latents_per_vector():
    vectors = torch.randn(3000, 8) @ torch.randn(8, 8)
    dictionary, training = train_dictionary(vectors, latents=32, k=5, epochs=2, batch_size=500, seed=1)
    torch.testing.assert_close(dictionary.decoder.detach().norm(dim=0), torch.ones(32))
    assert ((dictionary.encode(vectors) > 0).sum(1) <= 5).all() and len(training.fvu_per_epoch) == 2
    with pytest.raises(ValueError, match="k must be between 1 and the 32 latents"):
        TopKDictionary(8, 32, 33)


def test_quality_figures_match_their_definitions():
    dictionary = TopKDictionary(channels=4, latents=10, k=2, seed=0)
    vectors = torch.randn(400, 4)
    quality = dictionary_quality(dictionary, vectors)
    x, codes = vectors.numpy().astype(np.float64), dictionary.encode(vectors).detach().numpy()
    reconstruction = dictionary(vectors).detach().numpy()
    fvu = ((x - reconstruction) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    fires = [sum(codes[row, latent] > 0 for row in range(400)) for latent in range(10)]
    assert quality["fvu"] == pytest.approx(fvu, rel=1e-4)
    assert quality["mean l0"] == pytest.approx(np.mean([(row > 0).sum() for row in codes]))
    assert quality["dead"] == sum(count == 0 for count in fires)
    assert quality["dense"] == sum(count > DENSE_RATE * 400 for count in fires)


def test_sampled_vectors_are_a_seeded_uniform_sample_within_the_limit_for_every_layer_at_once():
    class Positions(nn.Module):
        def forward(self, x):
            return x

    def batches():         # vector (image number, position) at each position of each image
        for start in range(0, 400, 50):
            images = torch.arange(start, start + 50, dtype=torch.float32)[:, None, None].expand(50, 3, 3)
            positions = torch.arange(9, dtype=torch.float32).reshape(3, 3).expand(50, 3, 3)
            yield torch.stack([images, positions], dim=1)

    model = nn.Sequential(Positions(), nn.Identity())
    layers = [Layer("0", 2, 3, 3), Layer("1", 2, 3, 3)]
    kept, twin = sample_vectors(model, layers, batches(), limit=600, per_image=4, seed=5)
    again, _ = sample_vectors(model, layers, batches(), limit=600, per_image=4, seed=5)
    assert kept.shape == (600, 2) and torch.equal(kept, again)
    assert torch.equal(twin[:, 0], kept[:, 0])        # the same images in the same slots for every layer
    assert ((kept[:, 1] >= 0) & (kept[:, 1] <= 8) & (kept[:, 1] == kept[:, 1].round())).all()
    late = float((kept[:, 0] >= 200).float().mean())        # the reservoir favours no part of the stream
    assert 0.4 < late < 0.6
    everything, _ = sample_vectors(model, layers, batches(), limit=10_000, per_image=4, seed=5)
    assert len(everything) == 1600 and torch.equal(everything[:, 0].unique(), torch.arange(400.0))


def test_layers_of_maps_smaller_than_the_positions_drawn_per_image_are_sampled_alike():
    """A 2×2 map beside a 6×6 one, 16 positions drawn per image: each layer keeps as many vectors, each a vector of
    its own maps."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 5, 3, stride=3))
    layers = [Layer("0", 4, 6, 6), Layer("1", 5, 2, 2)]
    images = [torch.randn(10, 3, 6, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    small, large = sample_vectors(model, layers, images, limit=200, per_image=16)[::-1]
    assert len(small) == len(large) == 200
    with torch.no_grad():
        maps = model(torch.cat(images))
    every = maps.permute(0, 2, 3, 1).reshape(-1, 5)
    assert all((every == vector).all(1).any() for vector in small)
