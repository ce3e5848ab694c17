"""Cross-validated figures of the boxes under two box searches, from the maps `two_maps_experiment.py --save-maps`
kept.

    python tools/box_search_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--map "mirrors x2"]
        [--threshold 0.411] [--out runs/box-search.json]

For every saved fold it finds the held-out films' boxes on one map (the shipped boxes' map
is "mirrors x2") with boxes centred on their cells (the search before session 9) and
centred on the score-weighted centre of their 3×3 cells (`cell_boxes`, shipped since),
and with test-time mirrors where the fold kept the map's reading of the mirror images. It
prints lesion sensitivity at 0.5 / 1 / 2 false positives per image (mean ± sd over the
folds, and the folds where peak centres win, tie and lose), each seed's pooled figures,
and, with `--threshold`, the pooled sensitivity and false positives per image at that
box score (the shipped operating point).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from verdict_sums_experiment import TTA, read_fold  # tools/ is the script's folder

from napari_mammo.evaluation.crossval import load_cells, mean_sd
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import box_detections, cell_boxes

SEARCHES = {"cell centres": False, "peak centres": True}
"""The box searches compared, by `cell_boxes`'s `peak_centres`."""
FPS = (0.5, 1, 2)


def fold_detections(found: dict, test: list[str], cells: dict, peak_centres: bool) -> list:
    """The held-out films' boxes on a map, as Detections."""
    return [box_detections(cell_boxes(found[ref], cells[ref].breast, cells[ref].stride, peak_centres=peak_centres))
            for ref in test]


def at_threshold(curve: dict, threshold: float) -> tuple[float, float]:
    """Sensitivity and false positives per image of a FROC curve at a box score threshold."""
    index = max(i for i, t in enumerate(curve["thresholds"]) if t >= threshold)
    return curve["sensitivity"][index], curve["fp_per_image"][index]


def main() -> None:
    """Score both searches (and test-time mirrors where kept) in every fold; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--map", default="mirrors x2", help="the map whose boxes are scored")
    parser.add_argument("--threshold", type=float, help="a box score at which to report the pooled figures")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells = load_cells(records)
    rows, pooled = [], {}
    for path in sorted(args.maps.glob("seed*-fold*.npz")):
        seed = int(re.match(r"seed(\d+)", path.stem).group(1))
        maps, _, _, _, test = read_fold(path)
        row = {"fold": path.stem}
        for reading in (args.map, f"{args.map} {TTA}"):
            if reading not in maps:
                continue
            for search, peak in SEARCHES.items():
                per_image = list(zip(fold_detections(maps[reading], test, cells, peak), [by_ref[r] for r in test],
                                     strict=True))
                pooled.setdefault((seed, reading, search), []).extend(per_image)
                curve = froc(per_image)
                row.update({f"{reading} / {search} / {fp}": sensitivity_at(curve, fp) for fp in FPS})
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} folds: {', '.join(r['fold'] for r in rows)}")
    print("| boxes / search | sensitivity at 0.5 / 1 / 2 FP per image (mean over folds) | sd at 1 | "
          "peak centres at 1 FP: folds better / equal / worse |\n|---|---|---|---|")
    for reading in dict.fromkeys(key.split(" / ")[0] for row in rows for key in row if key != "fold"):
        for search in SEARCHES:
            keys = [f"{reading} / {search} / {fp}" for fp in FPS]
            chosen = [row for row in rows if keys[0] in row]
            means = [mean_sd([row[key] for row in chosen]) for key in keys]
            diff = np.array([row[f"{reading} / peak centres / 1"] - row[f"{reading} / cell centres / 1"]
                             for row in chosen])
            wins = (f"{(diff > 1e-9).sum()} / {(abs(diff) <= 1e-9).sum()} / {(diff < -1e-9).sum()} "
                    f"({len(chosen)} folds)" if search == "peak centres" else "")
            figures = " / ".join(f"{m['mean']:.3f}" for m in means)
            print(f"| {reading} / {search} | {figures} | "
                  f"{means[1]['sd']:.3f} | {wins} |")
    for (seed, reading, search), per_image in sorted(pooled.items()):
        curve = froc(per_image)
        line = (f"pooled, seed {seed}, {reading} / {search}: "
                + " / ".join(f"{sensitivity_at(curve, fp):.3f}" for fp in FPS))
        if args.threshold is not None:
            sensitivity, fp = at_threshold(curve, args.threshold)
            line += f"; at score ≥ {args.threshold:g}: sensitivity {sensitivity:.3f}, {fp:.2f} FP per image"
        print(line)


if __name__ == "__main__":
    main()
