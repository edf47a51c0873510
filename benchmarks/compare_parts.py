"""Comparing runs against ground truth on Parts: are the same concepts found again?

    python -m neurocarto.zoo.train_parts --seed 0 --out w/seed0.pt
    python -m neurocarto.zoo.train_parts --seed 1 --out w/seed1.pt --checkpoints w/seed1
    python -m neurocarto.zoo.train_parts --seed 0 --without robot --out w/without_robot.pt
    python -m neurocarto precompute --model parts-inception --data parts --weights w/seed0.pt --name parts-seed0
    … the same for seed1, without_robot and w/seed1/epoch_0 … epoch_4 (parts-epoch0 … parts-epoch4)
    python benchmarks/compare_parts.py [--cache cache] [--figure docs/figure-timeline.png]

Each unit (a cluster at the run's cut, or a neuron in none) gets a ground-truth part from held-out images
(`evaluate`'s truth: each member's part under its argmax in a second Parts sample; a unit's part is its members'
majority, clear when it holds at least half of them). Then:
1. Two seeds: of seed 0's units with a clear part, the share that match (`nc.compare`) a unit of seed 1 with the same
   part, against random matching (each unit matched to as many of seed 1's units with a clear part, drawn at random;
   its expectation, exactly).
2. A class left out: seed 0's units by part, and how they fare in the model trained without the robot class (whose
   parts, bolt and antenna, it never saw as a class).
3. Checkpoints: seed 1's concepts matched in each checkpoint of its own training (epoch 0 = the random init).
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np

from neurocarto.analysis.evaluate import held_out_concepts, held_out_spec
from neurocarto.store.comparisons import compare, timeline, timeline_text
from neurocarto.store.disk import Store
from neurocarto.store.stored_run import StoredRun
from neurocarto.zoo.parts import PART_NAMES

CLEAR = 0.5


def unit_parts(comparison, side: str, run) -> np.ndarray:
    """(units,) each unit's clear part, −1 where it has none."""
    parts, share = held_out_concepts(run, held_out_spec(run.config["data"]))
    voted = np.where(share >= CLEAR, parts, -1)
    concepts = comparison.concepts(side)
    found = np.full(len(concepts), -1)
    for unit in range(len(concepts)):
        members = voted[concepts.members[concepts.offsets[unit]:concepts.offsets[unit + 1]]]
        counts = np.bincount(members[members > 0], minlength=len(PART_NAMES))
        if counts.any() and counts.max() >= CLEAR * len(members):
            found[unit] = int(np.argmax(counts))
    return found


def same_part_again(comparison, parts_a: np.ndarray, parts_b: np.ndarray) -> dict:
    """Of A's units with a clear part, how many match a unit of B with the same part, and the share random matching
    would reach."""
    clear = np.flatnonzero(parts_a > 0)
    pool = parts_b[parts_b > 0]
    frequency = np.bincount(pool, minlength=len(PART_NAMES)) / max(len(pool), 1)
    hits, matched, expected = 0, 0, 0.0
    for unit in clear:
        matches = comparison.matches("a", int(unit))
        matched += len(matches) > 0
        hits += bool(len(matches)) and bool((parts_b[matches] == parts_a[unit]).any())
        if len(matches):       # as many random clear units of B: P(at least one has the part)
            expected += 1 - (1 - frequency[parts_a[unit]]) ** len(matches)
    return {"units": len(clear), "matched": matched, "same_part": hits, "same_part_share": hits / max(len(clear), 1),
            "random_share": expected / max(len(clear), 1)}


def by_part(comparison, parts_a: np.ndarray) -> list[list]:
    """Per part: A's units with it, their categories in the comparison and their mean best similarity."""
    category, similarity = comparison.category("a"), comparison.arrays["a/similarity"]
    rows = []
    for part in range(1, len(PART_NAMES)):
        units = np.flatnonzero(parts_a == part)
        counts = collections.Counter(category[units].tolist())
        rows.append([PART_NAMES[part], len(units), counts["shared"], counts["split"] + counts["merged"],
                     counts["unique"], f"{similarity[units].mean():.3f}" if len(units) else "—"])
    return rows


def table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="cache")
    parser.add_argument("--figure", type=Path, default=None, help="draw the checkpoints' chart here (.png or .svg)")
    args = parser.parse_args()
    with Store(args.cache) as store:
        runs = {StoredRun(store, key).name: StoredRun(store, key) for key in store.run_keys()
                if store.manifest(key).get("complete")}
        seed0, seed1, without = runs["parts-seed0"], runs["parts-seed1"], runs["parts-without-robot"]

        seeds = compare(seed0, seed1)
        parts0, parts1 = unit_parts(seeds, "a", seed0), unit_parts(seeds, "b", seed1)
        found = same_part_again(seeds, parts0, parts1)
        print("## Two seeds\n")
        print(table(["units of seed 0 with a clear part", "matched in seed 1", "… by a unit of the same part",
                     "random matching"],
                    [[found["units"], found["matched"], f"{found['same_part']} ({found['same_part_share']:.3f})",
                      f"{found['random_share']:.3f}"]]))
        print("\n" + table(["part", "units of seed 0", "shared", "split or merged", "unique", "mean best similarity"],
                           by_part(seeds, parts0)))

        left_out = compare(seed0, without)
        print("\n## Robot left out\n")
        print(table(["part", "units of seed 0", "shared", "split or merged", "unique", "mean best similarity"],
                    by_part(left_out, unit_parts(left_out, "a", seed0))))

        checkpoints = [runs[f"parts-epoch{epoch}"] for epoch in range(5) if f"parts-epoch{epoch}" in runs]
        over_training = timeline(checkpoints, seed1)
        print("\n## Checkpoints of seed 1\n")
        print(timeline_text(over_training))
        print("\n" + table(["checkpoint", "clusters matched", "share", "units matched", "share"],
                           [[checkpoint["name"], clusters, f"{clusters / max(over_training['clusters'], 1):.3f}", units,
                             f"{units / max(over_training['units'], 1):.3f}"]
                            for checkpoint, clusters, units in zip(over_training["checkpoints"],
                                                                   over_training["matched_clusters"],
                                                                   over_training["matched_units"])]))
        if args.figure:
            from neurocarto.ui.figures import timeline_figure
            from neurocarto.ui.snapshot import figure_file

            print(f"\nwrote {figure_file(timeline_figure(over_training), args.figure)}")


if __name__ == "__main__":
    main()
