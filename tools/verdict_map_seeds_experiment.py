"""Average two fits of the verdict map (two random seeds), from two folders of saved fold maps.

    python tools/two_maps_experiment.py --data "$NAPARI_MAMMO_MIAS" --seeds 3 --fits "films'" --save-maps runs/maps-b
    python tools/verdict_map_seeds_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps --other runs/maps-b

The verdict map moves a fold's verdict by up to 0.05 from one fit to another (docs/
experiments.md, session 12). `--maps` holds each fold's shipped verdict map ("films"),
`--other` the same recipe fitted from another seed ("films'"). The baseline is the shipped
five-score verdict on "films"; the variants take "films'" instead (the map's own noise,
paired), the two maps averaged ("films + films'"), or both maps' asymmetries summed
("films & films'"), each with the fine head's asymmetry as shipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from frozen_heads_experiment import fit_bag, z_scores  # tools/ is the script's folder
from verdict_sums_experiment import fold_seed, read_fold, score_folds, verdict

from napari_mammo.evaluation.crossval import load_screening_features
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import ScreeningConfig

BASELINE = "films (shipped)"


def fold_row(path: Path, other: Path, cells: dict, stage4: dict, by_ref: dict) -> dict:
    """One fold's AUC of the shipped verdict and of the verdicts on the other fit, on both averaged or summed."""
    maps, scores, frozen, train, test = read_fold(path)
    second, _, _, _, second_test = read_fold(other / path.name)
    if list(second_test) != list(test):
        raise ValueError(f"{other / path.name} holds another split than {path}")
    maps.update(second)
    seed = fold_seed(path)
    fine = z_scores(fit_bag([by_ref[ref] for ref in train], stage4, seed, 150), stage4, train, test, by_ref,
                    False)["asymmetry"]
    truth = np.array([by_ref[ref].label != "normal" for ref in test])
    row: dict = {"fold": path.stem}
    for name, variant in ((BASELINE, "films"), ("films' (another seed)", "films'"),
                          ("films + films' (maps averaged)", "films + films'"),
                          ("films & films' (asymmetries summed)", "films & films'")):
        row[name] = roc_auc(truth, verdict(variant, maps, scores, frozen, train, test, cells, by_ref) + fine)
    return row


def main() -> None:
    """Score the variants in every saved fold and print the table with paired differences."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--other", type=Path, required=True, help="the same folds' maps of another seed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells, stage4 = load_screening_features(records, ScreeningConfig(box_mirrors=False, tune_mirrors=False))
    score_folds(args.maps, lambda path: fold_row(path, args.other, cells, stage4, by_ref), BASELINE, args.out,
                "the shipped verdict")


if __name__ == "__main__":
    main()
