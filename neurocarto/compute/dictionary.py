"""Sparse dictionaries: a TopK sparse autoencoder on a layer's activation vectors, whose latents are units as the
layer's channels are, but far more often carry one concept where a channel mixes several.

Reads activation vectors of one layer: one per map position (a patch token for transformers), a seeded sample of
positions per image kept in a reservoir of fixed size (`sample_vectors`), so memory stays flat in the number of
images. Gives a dictionary of `latents` units:

    z  = TopK_k(ReLU(W_enc (x − b_dec) + b_enc))      the latents: at most k non-zero per vector
    x̂  = W_dec z + b_dec                              W_dec's columns (the latents' directions) at unit norm

trained with Adam on the reconstruction error as a fraction of the data's variance (FVU), plus AuxK (Gao et al.,
2024): the latents that have not fired for `dead_after` vectors reconstruct the residual with their k_aux largest
pre-activations, which pulls them back towards the data (dead latents revived; those still dead are reported).
The encoder at every position of a layer's maps is a 1×1 convolution (`latent_maps`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurocarto.config import DictionaryParams
from neurocarto.inputs.capture import LayerCapture
from neurocarto.neurons import Layer

AUX_WEIGHT = 1 / 32         # AuxK's share of the loss
DENSE_RATE = 0.1            # a latent firing on more than this share of vectors is "dense"


class TopKDictionary(nn.Module):
    """`latents` directions for vectors of `channels` values; `k` latents fire per vector."""

    def __init__(self, channels: int, latents: int, k: int, seed: int = 0):
        super().__init__()
        if not 1 <= k <= latents:
            raise ValueError(f"k must be between 1 and the {latents} latents, not {k}")
        generator = torch.Generator().manual_seed(seed)
        directions = F.normalize(torch.randn(channels, latents, generator=generator), dim=0)
        self.k = k
        self.decoder = nn.Parameter(directions)                  # (channels, latents), unit columns
        self.encoder = nn.Parameter(directions.t().clone())      # (latents, channels), tied at the start
        self.encoder_bias = nn.Parameter(torch.zeros(latents))
        self.centre = nn.Parameter(torch.zeros(channels))        # b_dec

    @property
    def latents(self) -> int:
        return self.decoder.shape[1]

    def pre_activations(self, vectors: torch.Tensor) -> torch.Tensor:
        return (vectors - self.centre) @ self.encoder.t() + self.encoder_bias

    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """(n, channels) → (n, latents): the k largest pre-activations, ReLU'd; the others 0."""
        return _top_k(self.pre_activations(vectors), self.k)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents @ self.decoder.t() + self.centre

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(vectors))

    def latent_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """(batch, channels, h, w) maps → (batch, latents, h, w): the encoder at every position, as a 1×1
        convolution, then TopK over the latents of each position."""
        weight = self.encoder[:, :, None, None].to(maps.dtype)
        bias = (self.encoder_bias - self.encoder @ self.centre).to(maps.dtype)
        return _top_k(F.conv2d(maps, weight, bias), self.k, dim=1)

    def decoded_maps(self, latents: torch.Tensor) -> torch.Tensor:
        """(batch, latents, h, w) → (batch, channels, h, w): the decoder at every position, a 1×1 convolution."""
        return F.conv2d(latents, self.decoder[:, :, None, None].to(latents.dtype), self.centre.to(latents.dtype))

    def reconstructed_maps(self, maps: torch.Tensor) -> torch.Tensor:
        """(batch, channels, h, w) maps → their reconstruction, position by position."""
        return self.decoded_maps(self.latent_maps(maps))

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        self.decoder.div_(self.decoder.norm(dim=0, keepdim=True).clamp_min(1e-8))


def _top_k(pre: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    values, indices = pre.topk(k, dim=dim)
    return torch.zeros_like(pre).scatter(dim, indices, values.relu())


def sample_vectors(model: nn.Module, layers: list[Layer], batches: Iterable[torch.Tensor], limit: int,
                   per_image: int = 16, seed: int = 0, device: str | torch.device = "cpu") -> list[torch.Tensor]:
    """For each of `layers`, (≤ limit, channels) activation vectors, all from one pass over `batches`: `per_image`
    positions of each image drawn at random (with replacement: as many from a small map as from a large one), then a uniform sample of `limit` of all those drawn (reservoir sampling:
    memory flat in the number of images)."""
    rng = np.random.default_rng(seed)
    kept = [torch.empty(0, layer.channels) for layer in layers]
    seen = 0
    caught: dict[int, torch.Tensor] = {}

    def receive(index: int, maps: torch.Tensor) -> None:
        caught[index] = maps.float().cpu()

    model = model.to(device).eval()
    with torch.inference_mode(), LayerCapture(model, layers, receive):
        for batch in batches:
            model(batch.to(device))
            drawn = []
            for index, layer in enumerate(layers):
                maps = caught[index]
                positions = maps.shape[2] * maps.shape[3]
                vectors = maps.flatten(2).transpose(1, 2)           # (batch, positions, channels)
                chosen = torch.from_numpy(rng.integers(0, positions, (len(vectors), per_image)))   # with replacement
                drawn.append(vectors[torch.arange(len(vectors))[:, None], chosen].reshape(-1, layer.channels))
            kept, seen = _reservoir(kept, seen, drawn, limit, rng)
    return kept


def _reservoir(kept: list[torch.Tensor], seen: int, drawn: list[torch.Tensor], limit: int,
               rng: np.random.Generator) -> tuple[list[torch.Tensor], int]:
    """Algorithm R over a batch, the same slots for every layer: each vector seen so far is kept with probability
    limit / seen."""
    count = len(drawn[0])
    room = max(limit - len(kept[0]), 0)
    kept = [torch.cat([old, new[:room]]) for old, new in zip(kept, drawn)]
    for offset in range(room, count):
        slot = rng.integers(0, seen + offset + 1)
        if slot < limit:
            for old, new in zip(kept, drawn):
                old[slot] = new[offset]
    return kept, seen + count


@dataclass
class Training:
    """What training did: the FVU of each epoch and the latents still dead at the end."""

    fvu_per_epoch: list[float]
    dead: int


def training_loss(dictionary: TopKDictionary, batch: torch.Tensor, variance: float,
                  dead: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, residual, which latents fired) of one batch: the squared error ÷ `variance`, plus AuxK's over the
    `dead` latents (a mask): their 2k largest pre-activations reconstruct the residual."""
    pre = dictionary.pre_activations(batch)
    codes = _top_k(pre, dictionary.k)
    residual = batch - dictionary.decode(codes)
    loss = (residual ** 2).sum(1).mean() / variance
    if dead is not None and dead.any():
        aux = _top_k(pre.masked_fill(~dead, float("-inf")), min(2 * dictionary.k, int(dead.sum())))
        loss = loss + AUX_WEIGHT * ((residual.detach() - aux @ dictionary.decoder.t()) ** 2).sum(1).mean() / variance
    return loss, residual.detach(), (codes > 0).any(0)


def train_dictionary(vectors: torch.Tensor, latents: int, k: int, epochs: int = DictionaryParams.epochs,
                     batch_size: int = DictionaryParams.batch_size,
                     learning_rate: float = DictionaryParams.learning_rate, seed: int = 0,
                     dead_after: int | None = None) -> tuple[TopKDictionary, Training]:
    """A TopK dictionary of `latents` units for `vectors` (n, channels); see the module doc."""
    vectors = vectors.float()
    n, channels = vectors.shape
    dictionary = TopKDictionary(channels, latents, k, seed).to(vectors.device)
    with torch.no_grad():
        dictionary.centre.copy_(vectors.mean(0))
    variance = float(((vectors - vectors.mean(0)) ** 2).sum(1).mean().clamp_min(1e-12))
    dead_after = dead_after or max(n // 2, batch_size)
    idle = torch.zeros(latents, dtype=torch.long, device=vectors.device)     # vectors since each latent last fired
    optimiser = torch.optim.Adam(dictionary.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(epochs):
        order, total = torch.randperm(n, generator=generator).to(vectors.device), 0.0
        for start in range(0, n, batch_size):
            batch = vectors[order[start:start + batch_size]]
            loss, residual, fired = training_loss(dictionary, batch, variance, idle > dead_after)
            idle += len(batch)
            idle[fired] = 0
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            dictionary.normalise_decoder()
            total += float((residual ** 2).sum())
        history.append(total / n / variance)
    return dictionary.eval(), Training(history, int((idle > dead_after).sum()))


@torch.no_grad()
def dictionary_quality(dictionary: TopKDictionary, vectors: torch.Tensor) -> dict:
    """On `vectors` (n, channels): the fraction of variance unexplained and explained, the mean number of latents
    firing per vector (L0), and the latents that never fire (dead) or fire on more than DENSE_RATE of them (dense)."""
    vectors = vectors.float()
    codes = dictionary.encode(vectors)
    error = ((vectors - dictionary.decode(codes)) ** 2).sum()
    variance = ((vectors - vectors.mean(0)) ** 2).sum().clamp_min(1e-12)
    rates = (codes > 0).float().mean(0)
    fvu = float(error / variance)
    return {"vectors": len(vectors), "latents": dictionary.latents, "k": dictionary.k,
            "fvu": fvu, "variance explained": 1 - fvu, "mean l0": float((codes > 0).sum(1).float().mean()),
            "dead": int((rates == 0).sum()), "dense": int((rates > DENSE_RATE).sum())}
