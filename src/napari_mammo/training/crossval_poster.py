"""Cross-validation by woman of the poster's networks, CNNI-BCC and IDBLL, in the same folds as the screening model's.

Each fold trains the network from scratch on the other folds (its own validation women
taken from them, no test split of its own) and scores the held-out fold's images.
CNNI-BCC: image AUC normal vs abnormal (most suspicious patch) and benign vs malignant
among the abnormal. IDBLL: lesion sensitivity at 0.5, 1 and 2 false positives per image
and image AUC normal vs abnormal with the best box score as the image's score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.evaluation.crossval import bootstrap_auc, mean_sd, woman_folds
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.records import Mammogram

FP_POINTS = (0.5, 1, 2)


@dataclass
class HeldOut:
    """One fold's held-out images scored by the network trained on the other folds."""

    records: list[Mammogram]
    abnormal: np.ndarray
    """Each image's abnormality score."""
    score_name: str
    """What that score is: 'cells' (the most suspicious patch) or 'best_box'."""
    malignant: np.ndarray | None = None
    """CNNI-BCC: p(malignant | abnormal) of each image."""
    detections: list | None = None
    """IDBLL: each image's boxes."""


def fold_scores(report: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth (0/1/2), p(abnormal) and p(malignant | abnormal) of each image of an evaluation report."""
    rows = report["per_image"]
    truth = np.array([("normal", "benign", "malignant").index(r["truth"]) for r in rows])
    p = np.array([[r["probabilities"][k] for k in ("normal", "benign", "malignant")] for r in rows]).reshape(-1, 3)
    return truth, 1 - p[:, 0], p[:, 2] / np.maximum(p[:, 1] + p[:, 2], 1e-12)


def cnni_bcc_fold(train: list[Mammogram], test: list[Mammogram], path: Path, config, seed: int) -> HeldOut:
    """Train CNNI-BCC on `train` and score `test` (patches in the breast)."""
    from napari_mammo.evaluation.classifier import evaluate_classifier
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier
    from napari_mammo.training.cnni_bcc import train_classifier

    train_classifier(train, path, replace(config, seed=seed, hold_out_test=False))
    report = evaluate_classifier(PatchClassifier.load(path, config.device), test, selection="breast")
    _, abnormal, malignant = fold_scores(report)
    return HeldOut(list(test), abnormal, "cells", malignant=malignant)


def idbll_fold(train: list[Mammogram], test: list[Mammogram], path: Path, config, seed: int) -> HeldOut:
    """Train IDBLL on `train` and detect on `test` (every box, no score threshold)."""
    from napari_mammo.io.images import read_image
    from napari_mammo.models.idbll.predict import LesionDetector
    from napari_mammo.training.idbll import train_detector

    train_detector(train, path, replace(config, seed=seed, hold_out_test=False))
    detector = LesionDetector.load(path, config.device)
    detections = []
    for record in test:
        image = read_image(record.path)
        detections.append(detector.detect(image.pixels, image.spacing_mm, score_threshold=0.0))
    best = np.array([max((d.score for d in found), default=0.0) for found in detections])
    return HeldOut(list(test), best, "best_box", detections=detections)


def fold_figures(held: HeldOut) -> dict:
    """A fold's image AUC, and benign-vs-malignant AUC (CNNI-BCC) or lesion sensitivities (IDBLL)."""
    truth = np.array([("normal", "benign", "malignant").index(r.label) for r in held.records])
    figures = {f"auc_{held.score_name}": roc_auc(truth > 0, held.abnormal)}
    if held.malignant is not None:
        figures["auc_benign_vs_malignant"] = roc_auc(truth[truth > 0] == 2, held.malignant[truth > 0])
    if held.detections is not None:
        curve = froc(list(zip(held.detections, held.records, strict=True)))
        figures.update({f"sensitivity_at_{fp}_fp": sensitivity_at(curve, fp) for fp in FP_POINTS})
    return figures


def pooled_figures(held: list[HeldOut], seed: int) -> dict:
    """All folds of one seed together: image AUC with a 95 % interval by woman, and the pooled FROC points."""
    records = [r for h in held for r in h.records]
    truth = np.array([r.label != "normal" for r in records])
    scores = np.concatenate([h.abnormal for h in held])
    women = np.array([r.woman for r in records])
    name = held[0].score_name
    out = {f"auc_{name}": roc_auc(truth, scores),
           f"auc_{name}_95ci": bootstrap_auc(truth, scores, women, np.random.default_rng(seed))}
    if all(h.detections is not None for h in held):
        curve = froc([(d, r) for h in held for d, r in zip(h.detections, h.records, strict=True)])
        out.update({f"sensitivity_at_{fp}_fp": sensitivity_at(curve, fp) for fp in FP_POINTS})
    return out


TRAIN_AND_SCORE: dict[str, Callable[..., HeldOut]] = {"cnni-bcc": cnni_bcc_fold, "idbll": idbll_fold}


def cross_validate_poster(model: str, records: Sequence[Mammogram], folds: int, seeds: Sequence[int], config,
                          work: Path, progress: Progress | None = None) -> dict:
    """Train and score `model` ('cnni-bcc' or 'idbll') on each fold of each seed; per-fold figures, mean ± sd,
    pooled figures per seed. Each fold's weights are kept in `work`."""
    per_fold, pooled, total = [], [], folds * len(seeds)
    for seed in seeds:
        parts = woman_folds(records, folds, seed)
        held = []
        for k, test in enumerate(parts):
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            path = Path(work) / f"{model}-seed{seed}-fold{k}.safetensors"
            held.append(TRAIN_AND_SCORE[model](train, test, path, config, seed * 100 + k))
            per_fold.append({"seed": seed, "fold": k, "images": len(test), **fold_figures(held[-1])})
            if progress:
                progress(progress_event("folds", len(per_fold), total))
        pooled.append(pooled_figures(held, seed))
    keys = [key for key in per_fold[0] if key not in ("seed", "fold", "images")]
    summary = {key: mean_sd([f[key] for f in per_fold]) for key in keys}
    return {"model": model, "config": asdict(config), "images": len(records),
            "women": len({r.woman for r in records}), "folds": folds, "seeds": list(seeds),
            "summary": summary, "pooled": pooled, "per_fold": per_fold}
