"""`python -m neurocarto snapshot`: the app's views rendered headlessly, and its pure helpers."""
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurocarto.cli import main as cli_main
from neurocarto.errors import NeuroCartoError
from neurocarto.testing.browser import SHOTS
from neurocarto.testing.serving import ROOT
from neurocarto.ui.snapshot import CHROMIUM, SnapshotRequest, _side_by_side_svg, output_format, page_query, snapshot

CASCADE_RED = np.array([0xE1, 0x57, 0x59])
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


def snapshot_cli(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neurocarto", "snapshot", "--cache", str(cache), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)


def snapshot_here(capsys, cache: Path, *args: str) -> tuple[int, str]:
    """The same command in this process (no second interpreter to start): its exit status and what it printed."""
    code = cli_main(["snapshot", "--cache", str(cache), *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def red_pixels(png: Path) -> int:
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(pixels - CASCADE_RED).sum(axis=2) < 30).sum())


@needs_chromium
def test_snapshot_png_and_svg_of_both_views(small_fashion_run, capsys):
    _config, execution, manifest = small_fashion_run
    SHOTS.mkdir(parents=True, exist_ok=True)
    from neurocarto.store.disk import Store

    with Store(execution.cache) as store:
        graph = store.get_json(manifest["key"], "graph/8")       # Bag
    node = max(graph["nodes"], key=lambda n: n["score"])["id"]
    plain, chained = SHOTS / "snapshot-bag.png", SHOTS / "snapshot-bag-cascade.png"
    for out, extra in ((plain, []), (chained, ["--select", node, "--cascade"])):
        code, printed = snapshot_here(capsys, execution.cache, "--run", manifest["key"], "--class", "Bag", *extra,
                                      "--out", str(out))
        assert code == 0, printed
    image = Image.open(chained)
    assert image.format == "PNG" and image.width > image.height > 500
    assert red_pixels(chained) > 20 * max(red_pixels(plain), 10)      # the cascade's chain is drawn

    coarse = SHOTS / "snapshot-bag-graph-cut-0.05.svg"      # the coarsest cut: fewer, larger concept nodes
    code, printed = snapshot_here(capsys, execution.cache, "--run", manifest["key"], "--class", "Bag", "--cut", "0.05",
                                  "--view", "graph", "--out", str(coarse))
    assert code == 0, printed
    assert 0 < coarse.read_text().count("<image") < len(graph["nodes"])

    svg = SHOTS / "snapshot-bag-paper.svg"
    code, printed = snapshot_here(capsys, execution.cache, "--run", manifest["name"], "--class", "bag", "--style",
                                  "paper", "--out", str(svg))
    assert code == 0, printed
    document = xml.dom.minidom.parse(str(svg)).documentElement
    parts = [child for child in document.childNodes if getattr(child, "tagName", None) == "svg"]
    assert len(parts) == 2 and float(parts[1].getAttribute("x")) > float(parts[0].getAttribute("width"))
    assert parts[0].getAttribute("height") == parts[1].getAttribute("height")
    assert svg.read_text().count("<image") >= 20         # the summary's nodes' patches


@needs_chromium
def test_snapshot_reports_what_is_wrong(small_fashion_run, tmp_path, capsys):
    _config, execution, manifest = small_fashion_run
    result = snapshot_cli(execution.cache, "--run", manifest["key"], "--class", "Unicorn", "--out", str(tmp_path / "a.png"))
    assert result.returncode == 2 and "Unknown class “Unicorn”" in result.stderr and "Sneaker" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "a.png").exists()
    for flags, message in ((["--run", "nope"], "unknown run 'nope'"),     # the same command, in this process
                           (["--scale", "0"], "--scale 0: expected more than 0 and at most 8"),
                           (["--cut", "0.9"], "cut must be “auto” or a Jaccard threshold from 0.05 to 0.6"),
                           (["--width", "10"], "--width 10 --height 900: the window must be from 640×360")):
        code = cli_main(["snapshot", "--cache", str(execution.cache), "--run", manifest["key"], *flags,
                         "--out", str(tmp_path / "a.png")])
        assert code == 2 and message in capsys.readouterr().err and not (tmp_path / "a.png").exists()
    with pytest.raises(NeuroCartoError, match="Chromium, not found at /nowhere/chromium"):
        snapshot(execution.cache, SnapshotRequest(run=manifest["key"]), tmp_path / "a.png", Path("/nowhere/chromium"))


def test_output_format_and_query():
    assert output_format(Path("f.PNG")) == "png" and output_format(Path("f.svg")) == "svg"
    with pytest.raises(NeuroCartoError, match="must end in .png or .svg"):
        output_format(Path("f.jpg"))
    request = SnapshotRequest(run="r", class_name="T-shirt/top", select=("a:c0", "b:3"), threshold=0.25, cut="0.1",
                              cascade=True, paper=True)
    assert page_query("abc", request) == ("?run=abc&class=T-shirt%2Ftop&threshold=0.25&cut=0.1&select=a%3Ac0%2Cb%3A3"
                                          "&mode=cascade&style=paper")


def test_side_by_side_svg_scales_parts_to_one_height():
    left = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="50"><rect/></svg>'
    right = b'<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200" x="7"><circle/></svg>'
    combined = xml.dom.minidom.parseString(_side_by_side_svg([left, right])).documentElement
    first, second = combined.getElementsByTagName("svg")
    assert (first.getAttribute("x"), first.getAttribute("width"), first.getAttribute("height")) == ("0", "100", "50")
    assert (second.getAttribute("x"), second.getAttribute("width"), second.getAttribute("height")) == ("124", "100", "50")
    assert second.getAttribute("viewBox") == "0 0 400 200" and second.getElementsByTagName("circle")
    assert combined.getAttribute("width") == "224"


@needs_chromium
def test_a_paper_figure_of_the_graph_at_column_width(small_fashion_run, capsys):
    _config, execution, manifest = small_fashion_run
    png, svg = SHOTS / "paper-graph-3.5in.png", SHOTS / "paper-graph-3.5in.svg"
    for out in (png, svg):
        code, printed = snapshot_here(capsys, execution.cache, "--run", manifest["key"], "--class", "Sneaker",
                                      "--view", "graph", "--style", "paper", "--width-in", "3.5", "--out", str(out))
        assert code == 0, printed
    image = Image.open(png)
    assert image.width == 1050 and round(image.info["dpi"][0]) == 300 and image.height > image.width
    root = xml.dom.minidom.parse(str(svg)).documentElement
    assert root.getAttribute("width") == "3.5in" and root.getAttribute("height").endswith("in")
    assert root.getAttribute("viewBox") and svg.read_text().count("<text") >= 20     # labels as real text
    code, printed = snapshot_here(capsys, execution.cache, "--run", manifest["key"], "--width-in", "40", "--out",
                                  str(png))
    assert code == 2 and "--width-in 40: expected a printed width from 1 to 20 inches" in printed


@needs_chromium
def test_snapshots_of_the_compare_view_and_of_the_projections_options(compared_runs, capsys):
    cache, key_a, key_b = compared_runs
    compared = SHOTS / "snapshot-compare.png"
    code, printed = snapshot_here(capsys, cache, "--run", key_a, "--compare", key_b, "--class", "Bag", "--out",
                                  str(compared))
    assert code == 0, printed
    assert Image.open(compared).width > Image.open(compared).height > 400
    shaded = SHOTS / "snapshot-projection-density-class.svg"
    code, printed = snapshot_here(capsys, cache, "--run", key_a, "--view", "projection", "--projection",
                                  "labels,density,class", "--out", str(shaded))
    assert code == 0, printed
    text = shaded.read_text()
    assert "dominant class" in text and ">Sneaker</text>" in text           # the legend names classes
    assert "contour" in text and text.count("%</text>") >= 5                 # density; labels as text
