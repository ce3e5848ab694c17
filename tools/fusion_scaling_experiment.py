"""Put the verdict's five scores on a common scale in other ways than by their mean and sd, from saved fold maps.

    python tools/fusion_scaling_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/scaling.json]

The shipped verdict sums five scores (the frozen blocks head's cell score, left-minus-right
score and asymmetry, the verdict map's asymmetry, the fine head's asymmetry), each minus its
mean over the fold's training films and divided by their sd ("z", the baseline). Sums of
z-scores let one heavy-tailed score outvote the others; here each score is put on a scale
from the training films' values in other ways, each of which a single film can be given:

- "robust": minus the median, divided by the interquartile range;
- "quantile": the film's quantile among the training films' values (linear between them);
- "normal quantile": that quantile through the normal distribution's inverse (clipped to
  the training films' range);
- "z clipped K": the z-score clipped to ±K.

Prints mean ± sd over the folds and each variant's paired difference from the baseline with
the folds it wins, ties and loses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from frozen_heads_experiment import film_scores, fit_bag  # tools/ is the script's folder
from two_maps_experiment import asymmetries
from verdict_sums_experiment import fold_seed, read_fold, score_folds, standardised

from napari_mammo.evaluation.crossval import load_screening_features
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import FUSED, ScreeningConfig

BASELINE = "z (shipped)"


def scaled(test: np.ndarray, train: np.ndarray, how: str) -> np.ndarray:
    """Held-out scores put on a scale fitted on the training films' scores."""
    from scipy.stats import norm

    if how == "robust":
        q1, median, q3 = np.percentile(train, [25, 50, 75])
        return (test - median) / (q3 - q1 + 1e-9)
    if how in ("quantile", "normal quantile"):
        ordered = np.sort(train)
        quantile = np.interp(test, ordered, (np.arange(len(ordered)) + 0.5) / len(ordered))
        return quantile if how == "quantile" else norm.ppf(quantile)
    z = standardised(test, train)
    return z if how == "z" else np.clip(z, -float(how.split()[-1]), float(how.split()[-1]))


def fold_scores(path: Path, cells: dict, stage4: dict, by_ref: dict, fold: tuple | None = None
                ) -> tuple[dict, dict, np.ndarray, list[str], list[str]]:
    """The training and held-out films' five scores in a saved fold (name -> values), the held-out truth, and the
    fold's training and held-out films (`fold`: the fold as `read_fold` gives it, when already read)."""
    maps, scores, _, train, test = fold if fold is not None else read_fold(path)
    seed = fold_seed(path)
    fine = fit_bag([by_ref[ref] for ref in train], stage4, seed, 150)
    out = []
    for refs in (train, test):
        values = {key: np.array([scores[key][ref] for ref in refs]) for key in FUSED}
        values["verdict map asymmetry"] = asymmetries(maps["films"], [by_ref[ref] for ref in refs], cells, by_ref)
        values["fine asymmetry"] = film_scores(fine, stage4, refs, by_ref, False)["asymmetry"]
        out.append(values)
    return out[0], out[1], np.array([by_ref[ref].label != "normal" for ref in test]), train, test


def fold_row(path: Path, cells: dict, stage4: dict, by_ref: dict) -> dict:
    """One saved fold's AUC of the verdict under every scaling."""
    train, test, truth, _, _ = fold_scores(path, cells, stage4, by_ref)
    row: dict = {"fold": path.stem}
    for how in ("z", "robust", "quantile", "normal quantile", "z clipped 2", "z clipped 3"):
        row[BASELINE if how == "z" else how] = roc_auc(truth, sum(scaled(test[key], train[key], how) for key in test))
    return row


def saved_folds_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with the options every saved-fold tool takes: --data, --maps, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    return parser


def screening_inputs(data: str) -> tuple[list, dict, dict, dict]:
    """A folder's records, the same by name, and the blocks and stage-4 features the shipped verdict reads."""
    records = read_folder(data)
    cells, stage4 = load_screening_features(records, ScreeningConfig(box_mirrors=False, tune_mirrors=False))
    return records, {r.ref: r for r in records}, cells, stage4


def shipped_verdict(train_scores: dict, test_scores: dict) -> np.ndarray:
    """The held-out films' shipped verdict: their five scores standardised on the training films, summed."""
    return sum(standardised(test_scores[key], train_scores[key]) for key in test_scores)


def score_saved_folds(description: str, fold_row, baseline: str) -> None:
    """The command line of a tool that scores the saved folds (--data, --maps, --out): `fold_row(path, cells,
    stage4, by_ref)` on each, then the paired table against `baseline`, the shipped verdict."""
    args = saved_folds_arguments(description).parse_args()
    _, by_ref, cells, stage4 = screening_inputs(args.data)
    score_folds(args.maps, lambda path: fold_row(path, cells, stage4, by_ref), baseline, args.out,
                "the shipped verdict")


def main() -> None:
    """Score every scaling in every saved fold and print the table with paired differences."""
    score_saved_folds(__doc__.splitlines()[0], fold_row, BASELINE)


if __name__ == "__main__":
    main()
