"""`python -m neurocarto precompute|runs|export|evaluate|snapshot|ablate|explain|compare …`: the command line over the pipeline and the store."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, TypeVar

import neurocarto as nc
from neurocarto.analysis.evaluate import evaluate_run, format_report
from neurocarto.analysis.export import export_run
from neurocarto.compute.pipeline import precompute, summary
from neurocarto.config import (
    DEFAULT_CACHE,
    UNITS,
    ClusterParams,
    DictionaryParams,
    EmbedParams,
    ExecutionConfig,
    GraphParams,
    PatchParams,
    RunConfig,
)
from neurocarto.errors import NeuroCartoError
from neurocarto.store.dictionaries import quality_line, stored_qualities
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun, complete_runs
from neurocarto.ui.snapshot import CHROMIUM, VIEWS, SnapshotRequest, snapshot

T = TypeVar("T")


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                        help="the store's folder (default: cache/)")


def add_stored_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The store and the stored run a command reads."""
    add_cache_argument(parser)
    parser.add_argument("--run", required=True, help="run name, key or key prefix (see `runs`)")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that define and execute a run: shared by `precompute` and `app.py`."""
    add_cache_argument(parser)
    parser.add_argument("--model", default=None,
                        help="fashion-inception (default), a torchvision model name (googlenet, resnet50, …), "
                             "or path/to/file.py:factory")
    parser.add_argument("--weights", default=None, help="DEFAULT (torchvision's pretrained) or a state-dict PATH")
    parser.add_argument("--data", default=None,
                        help="image-folder tree (root/<class>/<image>) or folder of Fashion-MNIST IDX files "
                             "(default: Fashion-MNIST)")
    parser.add_argument("--layers", default=None, help="comma-separated module names (default: the model's map)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="top images kept per neuron (default: 2·√images, between 100 and 1000)")
    parser.add_argument("--threshold", type=float, default=0.03,
                        help="cumulative share of a layer's channel maxima counted in A (default 0.03)")
    parser.add_argument("--max-images", type=int, default=None, help="a seeded sample of N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amp", action="store_true", help="mixed precision (float16 on GPU, bfloat16 on CPU)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="input side in pixels for torchvision and file.py models (default 224)")
    parser.add_argument("--name", default=None, help="a readable run name")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--checkpoint-every", type=int, default=20, metavar="N",
                        help="save pass 1's state every N batches (default 20)")
    parser.add_argument("--stages", default=None, metavar="S1,S2",
                        help="compute only these stages and what they need (pass1, cluster, embed, graph, patches)")
    parser.add_argument("--cluster-cut", type=cut_value, default=None, metavar="auto|J",
                        help="where the concept hierarchy is cut: a mean Jaccard of top-k sets, or auto (default: "
                             "each layer's own, from how much its neurons overlap with other layers')")
    parser.add_argument("--cluster-mean-multiple", type=float, default=ClusterParams.mean_multiple,
                        help="with the automatic cut, each layer's cut is also at least this many times the mean "
                             "Jaccard of random pairs of its neurons (default %(default)s; 0: the null alone)")
    parser.add_argument("--cluster-floor", type=float, default=0.05,
                        help="similar pairs and the hierarchy are kept down to this Jaccard (default 0.05)")
    parser.add_argument("--cluster-min-coactive", type=float, default=0.25,
                        help="keep pairs co-active on at least this share of their shared top images (default 0.25)")
    parser.add_argument("--cluster-max-share", type=float, default=0.15,
                        help="no cluster holds more than this share of its layer (default 0.15)")
    parser.add_argument("--cluster-method", default="lsh", choices=["lsh", "exact"],
                        help="candidate pairs by MinHash + LSH (default) or exact sparse all-pairs")
    parser.add_argument("--cluster-across-layers", action="store_true", help="cluster neurons of different layers together")
    parser.add_argument("--embed-dimensions", type=int, default=30)
    parser.add_argument("--embed-epochs", type=int, default=5)
    parser.add_argument("--embed-threads", type=int, default=1, help="skip-gram threads (1: deterministic)")
    parser.add_argument("--projection-seed", type=int, default=None,
                        help="make the 2D projection reproducible (UMAP then runs on one thread)")
    parser.add_argument("--graph-max-neurons", type=int, default=GraphParams.max_neurons,
                        help="neurons per layer a class graph keeps at most, its strongest (default: %(default)s; 0: all)")
    parser.add_argument("--graph-images", type=int, default=None,
                        help="images per class for graph edges (default: all up to 10,000 images, else 10,000/classes, ≥ 50)")
    parser.add_argument("--patches", type=int, default=20, help="example patches per neuron (default 20)")
    parser.add_argument("--units", default="neurons", choices=UNITS,
                        help="the units of every stage and view: the layers' channels (neurons, the default), their "
                             "sparse dictionaries' latents (dictionary), or both side by side")
    dictionary = DictionaryParams()
    parser.add_argument("--dictionary-expansion", type=int, default=dictionary.expansion,
                        help="with --units dictionary or both: latents per channel (default %(default)s)")
    parser.add_argument("--dictionary-k", type=int, default=None,
                        help="latents firing per activation vector (default: latents / 16, at most 32)")
    parser.add_argument("--dictionary-vectors", type=int, default=dictionary.vectors,
                        help="activation vectors a dictionary is trained on (default %(default)s)")
    parser.add_argument("--dictionary-epochs", type=int, default=dictionary.epochs,
                        help="passes over them (default %(default)s)")
    parser.add_argument("--rebuild", action="store_true", help="discard this run's stored results and recompute")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def cut_value(text: str) -> float | None:
    """`auto` (None) or a number, for --cluster-cut."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither auto nor a number between the floor and 1") from None


def configs_from(args: argparse.Namespace) -> tuple[RunConfig, ExecutionConfig]:
    layers = None if args.layers is None else tuple(name.strip() for name in args.layers.split(",") if name.strip())
    if layers == ():
        raise NeuroCartoError(f"--layers {args.layers!r} names no layer: give comma-separated module names, "
                              "or leave it out for the model's default map")
    run = RunConfig(model=args.model, weights=args.weights, data=args.data, layers=layers, top_k=args.top_k,
                    threshold=args.threshold, max_images=args.max_images, seed=args.seed, amp=args.amp,
                    image_size=args.image_size,
                    cluster=ClusterParams(threshold=args.cluster_cut, floor=args.cluster_floor,
                                          mean_multiple=args.cluster_mean_multiple,
                                          min_coactive=args.cluster_min_coactive, max_share=args.cluster_max_share,
                                          method=args.cluster_method,
                                          per_layer=not args.cluster_across_layers),
                    embed=EmbedParams(dimensions=args.embed_dimensions, epochs=args.embed_epochs,
                                      threads=args.embed_threads, projection_seed=args.projection_seed),
                    graph=GraphParams(images_per_class=args.graph_images, max_neurons=args.graph_max_neurons),
                    patches=PatchParams(per_neuron=args.patches), units=args.units,
                    dictionary=DictionaryParams(expansion=args.dictionary_expansion, k=args.dictionary_k,
                                                vectors=args.dictionary_vectors, epochs=args.dictionary_epochs,
                                                seed=args.seed),
                    name=args.name)
    execution = ExecutionConfig(cache=args.cache, device=args.device, batch_size=args.batch_size,
                                workers=args.workers, checkpoint_every=args.checkpoint_every,
                                progress=not args.quiet)
    return run, execution


def stage_list(args: argparse.Namespace) -> list[str] | None:
    return [name.strip() for name in args.stages.split(",") if name.strip()] if args.stages else None


def run_rows(store: Store) -> list[dict]:
    """One row per run for `runs`: name, key, model, data, size, status, layers, per-stage details."""
    rows = []
    for key, manifest, problem in store.list_runs():
        if manifest is None:
            rows.append({"key": key, "status": "unreadable", "problem": problem})
            continue
        run = StoredRun(store, key, manifest)
        rows.append({
            "name": run.name, "key": key, "model": manifest["model"]["spec"],
            "data": manifest["data"]["description"], "images": manifest["counts"]["images"],
            "neurons": manifest["counts"]["neurons"], "skipped": run.skipped[0],
            "bytes": store.run_size(key), "status": "complete" if run.complete else "incomplete",
            "layers": manifest["layers"], "stages": manifest.get("stages", {}), "created": manifest.get("created"),
            "dictionaries": stored_qualities(run), "manifest": manifest,
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    if not rows:
        return "no runs yet: `python -m neurocarto precompute` makes one"
    blocks = []
    for row in rows:
        if row["status"] == "unreadable":
            blocks.append(f"{row['key']}  UNREADABLE: {row['problem']}")
        else:
            blocks.append(f"{summary(row['manifest'])}\n  status: {row['status']}, {row['bytes'] / 1e6:.1f} MB, "
                          f"created {row['created']}" + "".join(
                              f"\n  dictionary {quality_line(quality)}" for quality in row["dictionaries"]))
    return "\n\n".join(blocks)


INTERRUPTED = "interrupted; every finished stage is kept in the store and the same command goes on from there"


def guarded(action: Callable[[], T]) -> tuple[int, T | None]:
    """(0, action()), or a bad input's message / Ctrl-C's note on stderr and (2, None) / (130, None)."""
    try:
        return 0, action()
    except NeuroCartoError as error:
        print(f"neurocarto: error: {error}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print(f"neurocarto: {INTERRUPTED}", file=sys.stderr)
        return 130, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurocarto", description="NeuroCarto: concepts of a CNN's neurons")
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("precompute", help="compute (or resume) a run into the store"))
    runs = commands.add_parser("runs", help="list the runs in the store")
    add_cache_argument(runs)
    runs.add_argument("--json", action="store_true", help="machine-readable output")
    export = commands.add_parser("export", help="write a run in open formats (JSON, CSV, NPZ)")
    add_stored_run_arguments(export)
    export.add_argument("--out", required=True, type=Path, help="output folder")
    snap = commands.add_parser("snapshot", help="render the app's views of a run to PNG or SVG (headless Chromium)")
    add_stored_run_arguments(snap)
    snap.add_argument("--class", dest="class_name", default=None, help="class whose graph is shown (default: the first)")
    snap.add_argument("--select", default=None, metavar="ID,ID",
                      help="graph nodes and/or one neuron to select, e.g. mixed4b:c0 or mixed4b:17")
    snap.add_argument("--threshold", type=float, default=0.0, help="graph nodes below this share of the best hide")
    snap.add_argument("--cut", default="auto", metavar="auto|J",
                      help="concept granularity: each layer's default cut (auto) or clusters joined at Jaccard ≥ J")
    snap.add_argument("--cascade", action="store_true", help="concept cascade from the last selected node")
    snap.add_argument("--projection", default="labels", metavar="labels,density,class",
                      help="what the projection shows besides its points: concept labels (default), density shading, "
                           "colour by dominant class; 'points' for none")
    snap.add_argument("--compare", default=None, metavar="RUN",
                      help="the compare views with this run over the same images (compared first if needed)")
    snap.add_argument("--style", choices=["screen", "paper"], default="screen",
                      help="paper: white background, larger fonts, no controls")
    snap.add_argument("--view", choices=list(VIEWS), default="both", help="both views side by side (default), one, or the whole page as the window shows it")
    snap.add_argument("--width", type=int, default=1600, help="browser window width in pixels (default 1600)")
    snap.add_argument("--height", type=int, default=900, help="browser window height in pixels (default 900)")
    snap.add_argument("--scale", type=float, default=2.0, help="PNG pixels per screen pixel (default 2)")
    snap.add_argument("--width-in", type=float, default=None, metavar="INCHES",
                      help="printed width (e.g. 3.5 for a column): a PNG of INCHES × --dpi pixels with its dpi recorded, "
                           "an SVG sized in inches; with --view graph, the summary is laid out for that width")
    snap.add_argument("--dpi", type=int, default=300, help="PNG dots per inch with --width-in (default 300)")
    snap.add_argument("--chromium", type=Path, default=CHROMIUM, help=f"Chromium executable (default {CHROMIUM})")
    snap.add_argument("--out", required=True, type=Path, help="fig.png or fig.svg")
    evaluation = commands.add_parser("evaluate", help="score the run's clusters and embedding against baselines")
    add_stored_run_arguments(evaluation)
    evaluation.add_argument("--trials", type=int, default=100, help="intruder trials per cluster (default 100)")
    evaluation.add_argument("--truth", choices=["held-out", "top-images"], default="held-out",
                            help="Parts: read each neuron's part from a second sample (default) or from the run's "
                                 "own top images (biased: the same images chose the clusters)")
    evaluation.add_argument("--intruders", choices=["other-concept", "any"], default="other-concept",
                            help="draw intruders among neurons of another part (default) or among any neurons")
    evaluation.add_argument("--seed", type=int, default=0, help="seed of the random baselines")
    evaluation.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the scores as JSON")
    evaluation.add_argument("--causal", action="store_true",
                            help="also ablate each class's top graph nodes (needs the run's model and data)")
    evaluation.add_argument("--causal-images", type=int, default=1000, help="images of the causal test (default 1000)")
    ablation = commands.add_parser("ablate", help="what neurons or clusters do to the prediction: ablated on "
                                                  "held-out images, against random same-size sets")
    add_stored_run_arguments(ablation)
    ablation.add_argument("--neurons", required=True, metavar="ID,ID",
                          help="neurons (layer:channel) and clusters (layer:c<channel>), e.g. mixed4b:c3,mixed4a:17")
    ablation.add_argument("--class", dest="class_name", default=None, help="the class to report first (default: all)")
    ablation.add_argument("--method", choices=["zero", "mean"], default="zero",
                          help="set the channels to 0 (default) or to their mean activation")
    ablation.add_argument("--images", type=int, default=1000, help="held-out images (default 1000)")
    ablation.add_argument("--random-sets", type=int, default=5, help="random same-size sets to compare (default 5)")
    ablation.add_argument("--cut", default="auto", metavar="auto|J", help="the cut clusters are read at")
    ablation.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ablation.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    explaining = commands.add_parser("explain", help="one image inside the run's summary: its prediction, the concepts "
                                                     "it lights on a class graph and its path through them")
    add_stored_run_arguments(explaining)
    explaining.add_argument("--image", required=True, metavar="FILE|INDEX",
                            help="a PNG, JPEG or WebP file, or the index of one of the run's images")
    explaining.add_argument("--class", dest="class_name", default=None,
                            help="the class whose graph is lit (default: the predicted class)")
    explaining.add_argument("--cut", default="auto", metavar="auto|J", help="the cut the graph is read at")
    explaining.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    explaining.add_argument("--json", type=Path, default=None, metavar="PATH",
                            help="also write the explanation as JSON")
    explaining.add_argument("--figure", type=Path, default=None, metavar="OUT.png",
                            help="also draw the image and where its 3 most lit concepts fire on it")
    dictionary = commands.add_parser("dictionary", help="sparse dictionaries (TopK autoencoders) of a run's layers, "
                                                        "trained on its images and measured on held-out ones")
    add_stored_run_arguments(dictionary)
    defaults = DictionaryParams()
    dictionary.add_argument("--layers", default=None, metavar="NAME,NAME",
                            help="the run's layers to give a dictionary (default: every layer; see `runs`)")
    dictionary.add_argument("--expansion", type=int, default=defaults.expansion,
                            help=f"latents per channel of the layer (default {defaults.expansion})")
    dictionary.add_argument("--k", type=int, default=None,
                            help="latents firing per activation vector (default: latents / 16, at most 32)")
    dictionary.add_argument("--vectors", type=int, default=defaults.vectors,
                            help=f"activation vectors to train on (default {defaults.vectors:,})")
    dictionary.add_argument("--epochs", type=int, default=defaults.epochs,
                            help=f"passes over them (default {defaults.epochs})")
    dictionary.add_argument("--images", type=int, default=defaults.images,
                            help=f"held-out images the quality is measured on (default {defaults.images})")
    dictionary.add_argument("--seed", type=int, default=defaults.seed)
    dictionary.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    dictionary.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the quality as JSON")
    comparing = commands.add_parser("compare", help="two runs over the same images: which concepts they share, "
                                                    "split or have alone")
    add_cache_argument(comparing)
    comparing.add_argument("run_a", metavar="RUN_A", help="run name, key or key prefix (see `runs`)")
    comparing.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    comparing.add_argument("--cut", default="auto", metavar="auto|J",
                           help="the concepts compared: each run's own cut (auto) or clusters joined at Jaccard ≥ J")
    comparing.add_argument("--recompute", action="store_true", help="compute again even if the store holds it")
    comparing.add_argument("--json", type=Path, default=None, metavar="PATH",
                           help="also write the summary and every concept's match as JSON")
    comparing.add_argument("--figure", type=Path, default=None, metavar="OUT.png|OUT.svg",
                           help="also draw the compare views (projections and the first class's graphs), as snapshot")
    comparing.add_argument("--class", dest="class_name", default=None, help="the class of --figure's graphs")
    comparing.add_argument("--style", choices=["screen", "paper"], default="screen", help="--figure's style")
    over_training = commands.add_parser("timeline", help="when a run's concepts appear over training: each checkpoint "
                                                          "run compared with the final one")
    add_cache_argument(over_training)
    over_training.add_argument("final", metavar="FINAL", help="the final run (name, key or key prefix)")
    over_training.add_argument("checkpoints", metavar="CHECKPOINT", nargs="*",
                               help="the checkpoints' runs in order (default: the store's runs of the same model, data "
                                    "and settings with other weights, ordered by their weights' file names)")
    over_training.add_argument("--cut", default="auto", metavar="auto|J", help="the concepts compared")
    over_training.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write it as JSON")
    over_training.add_argument("--figure", type=Path, default=None, metavar="OUT.png|OUT.svg",
                               help="also draw the share of the final run's concepts matched in each checkpoint")
    args = parser.parse_args(argv)
    args.command_line = os.environ.get("NEUROCARTO_COMMAND") or shlex.join(
        ["python", "-m", "neurocarto", *(sys.argv[1:] if argv is None else argv)])
    return guarded(lambda: run_command(args))[0]


def run_command(args: argparse.Namespace) -> None:
    if args.command == "precompute":
        run, execution = configs_from(args)
        manifest = precompute(run, execution, rebuild=args.rebuild, stages=stage_list(args),
                              command=args.command_line)
        if manifest is not None:      # None: a torchrun process other than rank 0
            print(summary(manifest))
    elif args.command == "runs":
        with Store(args.cache) as store:
            rows = run_rows(store)
        if args.json:
            print(json.dumps([{k: v for k, v in row.items() if k != "manifest"} for row in rows], indent=2))
        else:
            print(format_rows(rows))
    elif args.command == "export":
        with Store(args.cache) as store:
            written = export_run(store, args.run, args.out)
        print(f"wrote {len(written)} files to {args.out}")
    elif args.command == "evaluate":
        with Store(args.cache) as store:
            result = evaluate_run(store, args.run, args.trials, seed=args.seed, truth=args.truth,
                                  intruders=args.intruders)
            if args.causal:
                from neurocarto.analysis.ablation import causal_scores

                result["causal"] = causal_scores(StoredRun(store, store.resolve(args.run)),
                                                 n_images=args.causal_images, seed=args.seed)
        print(format_report(result))
        if args.causal:
            from neurocarto.analysis.ablation import format_causal

            print("\n" + format_causal(result["causal"]))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    elif args.command == "ablate":
        from neurocarto.analysis.ablation import format_ablation

        if args.images < 1 or args.random_sets < 0:
            raise NeuroCartoError(f"--images {args.images} --random-sets {args.random_sets}: expected at least 1 "
                                  "image and 0 or more random sets")
        with Store(args.cache) as store:
            run = StoredRun(store, store.resolve(args.run))
            items = [item.strip() for item in args.neurons.split(",") if item.strip()]
            result = nc.ablate(run, items, args.method, args.images, args.random_sets, args.cut, device=args.device)
        print(format_ablation(result, args.class_name))
        if args.json:
            args.json.write_text(json.dumps(result.as_dict(), indent=2))
    elif args.command == "dictionary":
        from neurocarto.analysis.dictionaries import fit_dictionaries, format_quality

        params = DictionaryParams(expansion=args.expansion, k=args.k, vectors=args.vectors, epochs=args.epochs,
                                  images=args.images, seed=args.seed)
        layers = [name.strip() for name in args.layers.split(",") if name.strip()] if args.layers else None
        with Store(args.cache) as store:
            records = fit_dictionaries(StoredRun(store, store.resolve(args.run)), layers, params, args.device)
        print("\n".join(format_quality(quality) for quality in records))
        if args.json:
            args.json.write_text(json.dumps(records, indent=2))
    elif args.command == "compare":
        from neurocarto.store.comparisons import comparison_text

        with Store(args.cache) as store:
            run_a, run_b = (StoredRun(store, store.resolve(reference)) for reference in (args.run_a, args.run_b))
            comparison = nc.compare(run_a, run_b, args.cut, recompute=args.recompute)
            print(comparison_text(comparison))
            if args.json:
                args.json.write_text(json.dumps({"summary": comparison.summary(), "concepts": comparison.table()},
                                                indent=2))
        if args.figure:
            request = SnapshotRequest(run=run_a.key, class_name=args.class_name, cut=str(comparison.cut),
                                      paper=args.style == "paper", compare=run_b.key)
            print(f"wrote {snapshot(args.cache, request, args.figure)}")
    elif args.command == "timeline":
        from neurocarto.store.comparisons import checkpoint_series, timeline, timeline_text

        with Store(args.cache) as store:
            final = StoredRun(store, store.resolve(args.final))
            checkpoints = ([StoredRun(store, store.resolve(reference)) for reference in args.checkpoints]
                           or checkpoint_series(final, [StoredRun(store, key) for key, _ in complete_runs(store)]))
            if not checkpoints:
                raise NeuroCartoError(f"the store holds no checkpoint of run {final.name} (a run of the same model, "
                                      "data and settings with other weights): name them, or compute them with "
                                      "`precompute --weights CHECKPOINT` and the final run's other flags")
            found = timeline(checkpoints, final, args.cut)
            print(timeline_text(found))
            if args.json:
                args.json.write_text(json.dumps(found, indent=2))
        if args.figure:
            from neurocarto.ui.figures import timeline_figure
            from neurocarto.ui.snapshot import figure_file

            print(f"wrote {figure_file(timeline_figure(found), args.figure)}")
    elif args.command == "explain":
        from neurocarto.analysis.explain import explanation_dict, format_explanation
        from neurocarto.store.explanations import lit_graph

        with Store(args.cache) as store:
            run = StoredRun(store, store.resolve(args.run))
            image = int(args.image) if args.image.isdigit() else args.image
            explained = nc.explain(run, image, device=args.device)
            class_index = explained.predicted if args.class_name is None else run.class_of(args.class_name)
            graph = lit_graph(run, explained, class_index, args.cut)
            print(format_explanation(run, explained, graph, class_index))
            if args.json:
                args.json.write_text(json.dumps(explanation_dict(run, explained, graph), indent=2))
            if args.figure:
                from neurocarto.analysis.explain_figure import explanation_figure

                lit = sorted(graph["nodes"], key=lambda node: -node["value"])[:3]
                print(f"wrote {explanation_figure(run, explained, lit, args.figure)}")
    elif args.command == "snapshot":
        request = SnapshotRequest(
            run=args.run, class_name=args.class_name, threshold=args.threshold, cut=args.cut, cascade=args.cascade,
            select=tuple(item.strip() for item in (args.select or "").split(",") if item.strip()),
            paper=args.style == "paper", view=args.view, width=args.width, height=args.height, scale=args.scale,
            width_in=args.width_in, dpi=args.dpi, compare=args.compare,
            projection=tuple(item for item in args.projection.split(",") if item in ("labels", "density", "class")))
        print(f"wrote {snapshot(args.cache, request, args.out, args.chromium)}")
