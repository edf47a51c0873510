"""Runs of dictionary units in a real browser: the units bar names the run's units, links to the run of the same
model and images in other units with the view's class carried over, and lists each dictionary's quality; the
projection and the graph show latents as units."""
import pytest

from neurocarto.compute.pipeline import precompute
from neurocarto.config import DictionaryParams, EmbedParams, ExecutionConfig, RunConfig
from neurocarto.testing.browser import SHOTS, open_page, wait_graph
from neurocarto.testing.serving import served_app


@pytest.fixture(scope="module")
def server(image_folder, factory_file, tmp_path_factory):
    cache = tmp_path_factory.mktemp("units")
    execution = ExecutionConfig(cache=cache, progress=False)
    common = dict(model=f"{factory_file}:make", data=str(image_folder), top_k=4, embed=EmbedParams(epochs=1))
    neurons = precompute(RunConfig(**common), execution, log=lambda _: None)
    both = precompute(RunConfig(**common, units="both", dictionary=DictionaryParams(expansion=3, k=4, epochs=30)),
                      execution, log=lambda _: None)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served_app(cache, both["key"], tmp_path_factory.mktemp("server") / "app.log") as base:
        yield base, neurons["key"], both["key"]


def test_the_units_bar_switches_between_runs_of_neurons_and_latents(server, browser):
    base, neurons, both = server
    page = open_page(browser, f"{base}/?run={both}&class=dog&select=block.1%2Fsae%3A7")
    wait_graph(page)
    page.wait_for_selector("#units .units-current")
    assert page.inner_text("#units .units-current") == "both"
    assert page.inner_text("#units .units-missing") == "latents"          # no run of latents alone
    assert page.evaluate("() => [...document.querySelectorAll('#graph')].length") == 1
    layers = page.evaluate("() => document.getElementById('graph')._cyreg.cy.nodes('[score]').map(n => n.data('layer'))")
    assert any(layer.endswith("/sae") for layer in layers)
    page.click("#units .units-quality summary")         # each dictionary's quality
    lines = page.inner_text("#units .units-quality ul")
    assert "stem.2 24 latents (k 4): variance explained" in lines and "block.1 48 latents" in lines
    page.screenshot(path=SHOTS / "40-units-both.png")

    assert "select=block.1%2Fsae%3A7" in page.url                          # a latent selected by its id
    page.wait_for_function("() => { const images = [...document.querySelectorAll('#examples .patches img')]; "
                           "return images.length === 4 && images.every(i => i.complete && i.naturalWidth > 0); }")
    page.click("#units a.units-link")                   # to the run of neurons: the class kept, the latent's selection not
    page.wait_for_function(f"() => location.search.includes('run={neurons}')")
    wait_graph(page)
    page.wait_for_function("() => document.querySelector('#units .units-current')?.textContent === 'neurons'")
    assert "class=dog" in page.url and "select=" not in page.url and not page.inner_text("#message")
    layers = page.evaluate("() => document.getElementById('graph')._cyreg.cy.nodes('[score]').map(n => n.data('layer'))")
    assert layers and not any(layer.endswith("/sae") for layer in layers)
    assert page.get_attribute("#units a.units-link", "href").startswith(f"?run={both}")
    page.screenshot(path=SHOTS / "41-units-neurons.png")
