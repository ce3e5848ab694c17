"""Score verdicts whose scores are weighted by a logistic fit on the training films instead of summed, from saved maps.

    python tools/fusion_weights_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/fusion.json]

The shipped verdict sums its standardised scores with equal weights. Here, in each saved
fold (`two_maps_experiment.py --save-maps`), a logistic head (`fit_cell_head`: classes
weighted equally, L2 penalty DECAY) is fitted on the training films' standardised scores
against their truth, and its logit is the held-out films' verdict. The scores: the frozen
heads' three ("frozen"), with the verdict map's asymmetry ("films", the shipped four), and
with the boxes' map's asymmetry and both maps' own image scores ("all"). The training
films' scores come from heads and maps fitted on those films, so the fit sees them
optimistic. Prints mean ± sd over the folds and the paired difference from the shipped sum.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from two_maps_experiment import asymmetries  # tools/ is the script's folder
from verdict_sums_experiment import own_scores, print_paired, read_fold

from napari_mammo.evaluation.crossval import load_cells
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import FUSED, fit_cell_head

SETS = {"frozen": [*FUSED], "films": [*FUSED, "films asymmetry"],
        "all": [*FUSED, "films asymmetry", "mirrors x2 asymmetry", "films own", "mirrors x2 own"]}
"""The scores each verdict weights."""


def score_table(maps: dict, scores: dict, refs: list[str], cells: dict, by_ref: dict) -> dict[str, np.ndarray]:
    """Every film's frozen scores, and each map's asymmetry and own image score."""
    records = [by_ref[ref] for ref in refs]
    table = {key: np.array([scores[key][ref] for ref in refs]) for key in FUSED}
    for name in ("films", "mirrors x2"):
        table[f"{name} asymmetry"] = asymmetries(maps[name], records, cells, by_ref)
        table[f"{name} own"] = own_scores(maps[name], records, cells, by_ref)
    return table


def main() -> None:
    """Fit the weights in every saved fold and print the table with paired differences."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--decays", default="0.01,0.1,1", help="the logistic fit's L2 penalties")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells = load_cells(records)
    rows = []
    for path in sorted(args.maps.glob("seed*-fold*.npz")):
        maps, scores, _, train, test = read_fold(path)
        fitted, held = (score_table(maps, scores, refs, cells, by_ref) for refs in (train, test))
        truth = {name: np.array([by_ref[ref].label != "normal" for ref in refs])
                 for name, refs in (("train", train), ("test", test))}
        row = {"fold": path.stem}
        for name, keys in SETS.items():
            z_train = np.stack([(fitted[k] - fitted[k].mean()) / (fitted[k].std() + 1e-9) for k in keys], 1)
            z_test = np.stack([(held[k] - fitted[k].mean()) / (fitted[k].std() + 1e-9) for k in keys], 1)
            row[f"{name}, summed"] = roc_auc(truth["test"], z_test.sum(1))
            for decay in (float(v) for v in args.decays.split(",")):
                head = fit_cell_head(z_train, truth["train"].astype(float), weight_decay=decay)
                weighted = head.scores(z_test.T[:, :, None]).ravel()  # (scores, films, 1): one "cell" a film
                row[f"{name}, weighted (L2 {decay:g})"] = roc_auc(truth["test"], weighted)
        rows.append(row)
        print(f"{path.stem}: shipped {row['films, summed']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print_paired(rows, "films, summed", "the shipped sum")

if __name__ == "__main__":
    main()
