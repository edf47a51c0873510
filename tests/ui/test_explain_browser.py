"""Explaining an image in a real browser: a clicked example patch lights the class graph and shows a heat map, a
second image and one asked again (their times printed), an uploaded PNG, one the model refuses, and the URL in a new
page restoring the explained image."""
import time

import numpy as np
from PIL import Image

from neurocarto.testing.browser import CY, SHOTS, node_point, open_page, wait_graph

LIT = f"() => {CY}.nodes('[lit]').length > 0"



def explained(page, action, condition: str, arg=None) -> float:
    """Seconds from `action` until the explained image's heat map has loaded and `condition` holds."""
    started = time.perf_counter()
    action()
    page.wait_for_function(condition, arg=arg, timeout=60000)
    page.wait_for_function("() => { const heat = document.getElementById('explain-heat'); "
                           "return heat.src.includes('/heat/') && heat.complete && heat.naturalWidth > 0; }")
    return time.perf_counter() - started


def coloured_by(page, reference: str) -> None:
    """Until the projection's points are coloured by the image `reference` (its layout's meta names it)."""
    page.wait_for_function("(reference) => { const g = document.querySelector('#projection .js-plotly-plot'); "
                           "return g && g.layout && g.layout.meta === reference; }", arg=reference, timeout=30000)


def test_explaining_patches_and_uploads_in_the_browser(server, browser, tmp_path):
    base, manifest = server
    page = open_page(browser, f"{base}/?run={manifest['key']}&class=Coat")
    wait_graph(page)
    node = page.evaluate(f"() => {CY}.nodes('[score]').map(n => n.id())")[0]
    page.mouse.click(*node_point(page, node))
    page.wait_for_selector("#examples img.pickable")
    patches = page.locator("#examples img.pickable")
    images = [patches.nth(i).get_attribute("data-image") for i in range(patches.count())]
    first, second = patches.nth(0), next(patches.nth(i) for i, image in enumerate(images) if image != images[0])

    seconds_first = explained(page, first.click, LIT)
    assert page.inner_text("#explain-prediction").startswith(f"image {images[0]} · true class ")
    assert f"image={images[0]}" in page.url and f"lit by image {images[0]}" in page.inner_text("#graph-title")
    assert page.evaluate(f"() => {CY}.edges('.chain').length") >= 1          # the image's path
    coloured_by(page, f"run:{images[0]}")      # the projection follows, once the rest is on screen
    assert page.is_visible("#projection .colorbar")
    page.screenshot(path=SHOTS / "28-explain-patch.png")

    second_image = second.get_attribute("data-image")
    page.click("#explain-clear")
    page.wait_for_function("() => !location.search.includes('image=')")
    seconds_second = explained(page, second.click, "(image) => document.getElementById('explain-prediction')"
                               ".innerText.startsWith('image ' + image + ' ')", second_image)
    page.mouse.click(*node_point(page, node))       # release the node: the examples go, the explanation stays
    page.fill("#explain-index", images[0])
    seconds_again = explained(page, lambda: page.click("#explain-go"),
                              "(image) => document.getElementById('explain-prediction').innerText.startsWith("
                              "'image ' + image + ' ')", images[0])

    shown_class = page.inner_text("#explain-strip .strip-label")[5:-1]   # "or a NAME:", its own images
    strip = page.locator("#explain-strip img.pickable").first
    strip_image = strip.get_attribute("data-image")
    explained(page, strip.click, "(image) => document.getElementById('explain-prediction').innerText.startsWith("
                                 "'image ' + image + ' ')", strip_image)
    assert f"true class {shown_class}" in page.inner_text("#explain-prediction")

    grey = tmp_path / "mine.png"
    Image.fromarray((np.random.default_rng(7).random((28, 28)) * 255).astype(np.uint8)).save(grey)
    explained(page, lambda: page.set_input_files("#explain-upload input[type=file]", str(grey)), "() => /image=[0-9a-f]{64}/.test(location.search)")
    assert page.inner_text("#explain-prediction").startswith("upload · uploaded image (true class unknown)")
    coloured_by(page, "upload:" + page.url.split("image=")[1][:64])
    page.screenshot(path=SHOTS / "29-explain-upload.png")

    other = open_page(browser, page.url)            # the URL reopens the explained upload
    wait_graph(other)
    explained(other, lambda: None, LIT)
    assert other.inner_text("#explain-prediction") == page.inner_text("#explain-prediction")

    colour = tmp_path / "colour.png"
    Image.new("RGB", (28, 28), (10, 200, 30)).save(colour)
    page.set_input_files("#explain-upload input[type=file]", str(colour))
    page.wait_for_function("() => document.getElementById('explain-status').innerText.includes('Not explained')",
                           timeout=60000)
    assert "this run's images are 8-bit grey; this one is 8-bit RGB" in page.inner_text("#explain-status")
    print(f"\nexplained: first image {seconds_first:.2f} s (worker started), second {seconds_second:.2f} s, "
          f"asked again {seconds_again:.2f} s")
