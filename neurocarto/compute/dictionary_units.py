"""Dictionary units: a layer's sparse-dictionary latents spliced into the model as a layer of their own.

For each layer L of a run with `--units dictionary` or `both`, a hook on L's module replaces L's output x by

    x' = x.detach() + (D(z) − D(z₀).detach()),     z₀ = E(x) (TopK latents),  z = latents(z₀)

where E and D are L's dictionary's encoder and decoder (1×1 convolutions) and `latents` an identity module. So:
- x' equals x exactly: the model computes what it computed without the splice;
- the gradient reaches the layers before L only through the latents (the reconstruction error is held, as the error
  node of a replacement model is), and a latent's effect on later layers passes through D, which is linear: its edge
  to the next layer's units is exact;
- an edit of z (a `LayerCapture` edit of the latents: a latent zeroed) changes x by D's columns × the change: a
  latent ablated subtracts its decoder column × its activation.
`latents` is an ordinary module call, so the latents are captured, hooked and named like any layer: `L/sae`, its
units `L/sae:123`. With `both`, the run's layers are `L/sae, L` for each L: L's channels are then read from its
latents, and the graphs draw that edge.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import nn

from neurocarto.compute.dictionary import TopKDictionary
from neurocarto.config import DictionaryParams
from neurocarto.errors import NeuroCartoError
from neurocarto.inputs.capture import as_maps, replaced_output, select, with_maps
from neurocarto.inputs.prepared_run import PreparedRun
from neurocarto.neurons import UNIT_SUFFIX, Layer
from neurocarto.store.dictionaries import WEIGHTS, stored_weights

HOLDER = "neurocarto_dictionaries"      # the model's submodule that holds the splices


class Splice(nn.Module):
    """The dictionary of one layer (`base`) and the identity module its latents are read from."""

    def __init__(self, base: Layer, dictionary: TopKDictionary):
        super().__init__()
        self.base, self.dictionary, self.latents = base, dictionary, nn.Identity()
        self.enabled = True

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        """The base layer's output tensor, spliced (see the module doc)."""
        maps = as_maps(tensor, self.base)
        clean = self.dictionary.latent_maps(maps)
        codes = self.latents(clean)
        if codes is clean and not torch.is_grad_enabled():
            return tensor           # nothing edited the latents and nothing is differentiated: x' = x, no decoding
        decoded = self.dictionary.decoded_maps(codes)
        held = decoded if codes is clean else self.dictionary.decoded_maps(clean)
        return with_maps(tensor, self.base, maps.detach() + (decoded - held.detach()))

    def install(self, weights: dict) -> None:
        """Take the trained weights (arrays or tensors named as `store.dictionaries.WEIGHTS`)."""
        with torch.no_grad():
            for name in WEIGHTS:
                parameter = getattr(self.dictionary, name)
                parameter.copy_(torch.as_tensor(weights[name], dtype=parameter.dtype, device=parameter.device))


def _hook_splices(model: nn.Module, splices: list[Splice]) -> None:
    """Forward hooks applying each splice to its base layer's call (counted per forward pass)."""
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    model.register_forward_pre_hook(lambda *_: calls.clear())
    for splice in splices:
        name = splice.base.module_name

        def hook(_module, _inputs, output, splice=splice, name=name):
            call = calls.get(name, 0)
            calls[name] = call + 1
            if call != splice.base.call or not splice.enabled:
                return None
            return replaced_output(output, splice.base.item, splice(select(output, splice.base.item)))
        modules[name].register_forward_hook(hook)


def with_dictionary_units(run: PreparedRun, store=None) -> PreparedRun:
    """The run with its dictionary units: its model spliced at each of its layers, its layers those of the latents
    (`dictionary`) or latents and channels (`both`); the weights installed where the store holds them (the
    dictionary stage trains the others). A run of neurons is returned as it is."""
    if run.config.units == "neurons":
        return run
    params: DictionaryParams = run.config.dictionary
    model, holder, layers = run.model.module, nn.ModuleList(), []
    if hasattr(model, HOLDER):
        raise NeuroCartoError(f"the model already has a submodule named {HOLDER!r}: rename it to give it dictionary units")
    for base in run.layers:
        params.check(base.channels)
        splice = Splice(base, TopKDictionary(base.channels, params.latents(base.channels), params.k_for(base.channels),
                                             params.seed))
        holder.append(splice)
        latents = Layer(base.name + UNIT_SUFFIX, splice.dictionary.latents, base.height, base.width,
                        module=f"{HOLDER}.{len(holder) - 1}.latents")
        layers += [latents] if run.config.units == "dictionary" else [latents, base]
    model.add_module(HOLDER, holder)
    _hook_splices(model, list(holder))
    spliced = replace(run, layers=layers, splices=list(holder))
    if store is not None:
        for splice in spliced.splices:
            weights = stored_weights(store, run.key, splice.base.name)
            if weights is not None:
                splice.install(weights)
    return spliced


@contextmanager
def splices_off(run: PreparedRun):
    """The model without its splices for a while (sampling a layer's own output needs no latents)."""
    for splice in run.splices:
        splice.enabled = False
    try:
        yield
    finally:
        for splice in run.splices:
            splice.enabled = True
