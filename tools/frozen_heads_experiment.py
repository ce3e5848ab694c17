"""Vary how the verdict's frozen cell heads are fitted and read, from saved fold maps.

    python tools/frozen_heads_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/frozen.json]
        [--negatives 50,500,1500] [--bags 5]

The baseline is the shipped verdict: the saved fold's frozen scores and verdict map
asymmetry ("films", `two_maps_experiment.py --save-maps`) plus the stage-4 (fine) head's
asymmetry, fitted here as `fit_heads` fits it. Each variant changes one thing and is paired
with it:

- "fine N negatives" / "blocks N negatives": the fine head, or the blocks head (whose cell
  score and asymmetry the verdict sums), fitted with N normal cells a film instead of 150;
- "fine bagged K" / "blocks bagged K": the cell scores of K heads averaged, each fitted on
  its own draw of normal cells;
- "fine tta" / "blocks tta": cell scores averaged with the head's reading of the film's
  mirror image (padded, mirrored, its own backbone features; mirrored back), training
  films and held-out films alike;
- "fine with mirrors": the fine head fitted on the films' cells and their mirror images'
  (read with tta);
- "left-right POOL": the left-minus-right head (L2 1) on another pooling of each film's
  breast cells (`max`, the 95th percentile `p95`, or `mean+max` side by side) instead of
  their mean.

Every score is standardised by its spread on the fold's training films, as the shipped
verdict is. Prints mean ± sd over the folds and each variant's paired difference from the
baseline with the folds it wins, ties and loses.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from verdict_sums_experiment import (  # tools/ is the script's folder
    fold_seed,
    read_fold,
    score_folds,
    standardised,
    verdict,
)

from napari_mammo.evaluation.crossval import load_screening_features
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import (
    CellHead,
    ScreeningConfig,
    film_asymmetry,
    fit_cell_head,
    image_score,
    other_film,
    training_cells,
)
from napari_mammo.models.tuned_cells import mirror_ref, mirrored_record

BASELINE = "shipped"


def fit_bag(records: list, features: dict, seed: int, negatives: int, bags: int = 1) -> list[CellHead]:
    """`bags` cell heads like the shipped ones (L2 1), the first on the shipped draw of normal cells."""
    heads = []
    for bag in range(bags):
        x, abnormal, _ = training_cells(records, features, np.random.default_rng(seed + 1000 * bag), negatives)
        heads.append(fit_cell_head(x, abnormal, weight_decay=1.0, seed=seed))
    return heads


def cell_map(heads: list[CellHead], features: dict, ref: str, tta: bool) -> np.ndarray:
    """A film's cell scores averaged over `heads`; with `tta`, also over their reading of its mirror image."""
    scores = sum(head.scores(features[ref].features) for head in heads) / len(heads)
    if not tta:
        return scores
    mirrored = sum(head.scores(features[mirror_ref(ref)].features) for head in heads) / len(heads)
    return (scores + mirrored[:, ::-1][:, :scores.shape[1]]) / 2


def film_scores(heads: list[CellHead], features: dict, refs: list[str], by_ref: dict, tta: bool
                ) -> dict[str, np.ndarray]:
    """The films' image score (top cell) and asymmetry (minus the other film's) under `heads`."""
    maps = {}

    def read(ref: str) -> np.ndarray:
        if ref not in maps:
            maps[ref] = cell_map(heads, features, ref, tta)
        return maps[ref]

    cells, asymmetry = [], []
    for ref in refs:
        partner = other_film(by_ref[ref], by_ref)
        cells.append(image_score(read(ref), features[ref].breast))
        asymmetry.append(film_asymmetry(read(ref), features[ref], read(partner.ref) if partner else None,
                                        features[partner.ref] if partner else None))
    return {"cells": np.array(cells), "asymmetry": np.array(asymmetry)}


def z_scores(heads: list[CellHead], features: dict, train: list[str], test: list[str], by_ref: dict,
             tta: bool) -> dict[str, np.ndarray]:
    """The held-out films' scores under `heads`, standardised on the training films."""
    fitted, held = (film_scores(heads, features, refs, by_ref, tta) for refs in (train, test))
    return {key: standardised(held[key], fitted[key]) for key in held}


def pooled(found, pool: str) -> np.ndarray:
    """One vector per film from its breast cells' features: their mean, max, 95th percentile or mean and max."""
    flat = found.features.reshape(found.features.shape[0], -1).astype(np.float32)
    flat = flat[:, found.breast.reshape(-1)] if found.breast.any() else flat
    if pool == "mean+max":
        return np.r_[flat.mean(1), flat.max(1)]
    if pool == "max":
        return flat.max(1)
    return np.percentile(flat, 95, axis=1) if pool == "p95" else flat.mean(1)


def left_right(blocks: dict, train: list[str], test: list[str], by_ref: dict, pool: str, seed: int) -> np.ndarray:
    """The held-out films' left-minus-right score on `pool`ed features, standardised on the training films."""
    def differences(refs: list[str]) -> np.ndarray:
        out = []
        for ref in refs:
            partner = other_film(by_ref[ref], by_ref)
            own = pooled(blocks[ref], pool)
            out.append(own - pooled(blocks[partner.ref], pool) if partner else np.zeros_like(own))
        return np.array(out)

    fitted, held = differences(train), differences(test)
    head = fit_cell_head(fitted, np.array([by_ref[ref].label != "normal" for ref in train], float),
                         weight_decay=1.0, seed=seed)
    return standardised(head.scores(held.T[:, :, None])[:, 0], head.scores(fitted.T[:, :, None])[:, 0])


def fold_row(path: Path, blocks: dict, stage4: dict, by_ref: dict, negatives: list[int], bags: int) -> dict:
    """One saved fold's AUC of the baseline and of every variant."""
    maps, scores, frozen, train, test = read_fold(path)
    truth = np.array([by_ref[ref].label != "normal" for ref in test])
    seed = fold_seed(path)
    records = [by_ref[ref] for ref in train]
    films = verdict("films", maps, scores, frozen, train, test, blocks, by_ref)
    saved = {key: (np.array([scores[key][ref] for ref in test]) - frozen[key][0]) / frozen[key][1]
             for key in ("cells", "asymmetry", "contralateral")}
    shipped_fine = z_scores(fit_bag(records, stage4, seed, 150), stage4, train, test, by_ref, False)["asymmetry"]
    base = films + shipped_fine
    row = {"fold": path.stem, BASELINE: roc_auc(truth, base)}

    def blocks_variant(heads: list[CellHead], tta: bool) -> float:
        z = z_scores(heads, blocks, train, test, by_ref, tta)
        return roc_auc(truth, base - saved["cells"] - saved["asymmetry"] + z["cells"] + z["asymmetry"])

    def fine_variant(heads: list[CellHead], tta: bool) -> float:
        return roc_auc(truth, films + z_scores(heads, stage4, train, test, by_ref, tta)["asymmetry"])

    row["blocks refitted (= shipped)"] = blocks_variant(fit_bag(records, blocks, seed, 150), False)
    for count in negatives:
        row[f"fine {count} negatives"] = fine_variant(fit_bag(records, stage4, seed, count), False)
        row[f"blocks {count} negatives"] = blocks_variant(fit_bag(records, blocks, seed, count), False)
    row[f"fine bagged {bags}"] = fine_variant(fit_bag(records, stage4, seed, 150, bags), False)
    row[f"blocks bagged {bags}"] = blocks_variant(fit_bag(records, blocks, seed, 150, bags), False)
    row["fine tta"] = fine_variant(fit_bag(records, stage4, seed, 150), True)
    row["blocks tta"] = blocks_variant(fit_bag(records, blocks, seed, 150), True)
    mirrored = records + [mirrored_record(r, stage4[r.ref]) for r in records]
    row["fine with mirrors"] = fine_variant(fit_bag(mirrored, stage4, seed, 150), True)
    for pool in ("mean", "max", "p95", "mean+max"):
        row[f"left-right {pool}"] = roc_auc(truth, base - saved["contralateral"]
                                            + left_right(blocks, train, test, by_ref, pool, seed))
    return row


def main() -> None:
    """Score every variant in every saved fold and print the table with paired differences."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--negatives", default="50,500,1500", help="normal cells a film, besides the shipped 150")
    parser.add_argument("--bags", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    blocks, stage4 = load_screening_features(records, replace(ScreeningConfig(), tune_mirrors=True))
    negatives = [int(v) for v in args.negatives.split(",")]
    score_folds(args.maps, lambda path: fold_row(path, blocks, stage4, by_ref, negatives, args.bags), BASELINE,
                args.out, "the shipped verdict")


if __name__ == "__main__":
    main()
