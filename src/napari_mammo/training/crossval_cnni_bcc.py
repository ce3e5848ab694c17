"""Cross-validation by woman of the poster's CNNI-BCC, in the same folds as the screening model's.

Each fold trains CNNI-BCC from scratch on the other folds (its own validation women taken
from them, no test split of its own) and scores the held-out fold's images: image AUC
normal vs abnormal (most suspicious patch) and benign vs malignant among the abnormal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.evaluation.crossval import bootstrap_auc, mean_sd, woman_folds
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.records import Mammogram


def fold_scores(report: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth (0/1/2), p(abnormal) and p(malignant | abnormal) of each image of an evaluation report."""
    rows = report["per_image"]
    truth = np.array([("normal", "benign", "malignant").index(r["truth"]) for r in rows])
    p = np.array([[r["probabilities"][k] for k in ("normal", "benign", "malignant")] for r in rows]).reshape(-1, 3)
    return truth, 1 - p[:, 0], p[:, 2] / np.maximum(p[:, 1] + p[:, 2], 1e-12)


def cross_validate_cnni_bcc(records: Sequence[Mammogram], folds: int, seeds: Sequence[int], config, work: Path,
                            progress: Progress | None = None) -> dict:
    """Train and score CNNI-BCC on each fold of each seed; per-fold figures, mean ± sd, pooled AUC per seed."""
    from napari_mammo.evaluation.classifier import evaluate_classifier
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier
    from napari_mammo.training.cnni_bcc import train_classifier

    per_fold, pooled, total = [], [], folds * len(seeds)
    for seed in seeds:
        parts = woman_folds(records, folds, seed)
        held = []
        for k, test in enumerate(parts):
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            path = Path(work) / f"cnni-bcc-seed{seed}-fold{k}.safetensors"
            train_classifier(train, path, replace(config, seed=seed * 100 + k, hold_out_test=False))
            report = evaluate_classifier(PatchClassifier.load(path, config.device), test, selection="breast")
            truth, abnormal, malignant = fold_scores(report)
            held.append((test, truth, abnormal))
            per_fold.append({"seed": seed, "fold": k, "images": len(test),
                             "auc_cells": roc_auc(truth > 0, abnormal),
                             "auc_benign_vs_malignant": roc_auc(truth[truth > 0] == 2, malignant[truth > 0])})
            if progress:
                progress(progress_event("folds", len(per_fold), total))
        truth = np.concatenate([h[1] for h in held])
        scores = np.concatenate([h[2] for h in held])
        women = np.array([r.woman for h in held for r in h[0]])
        pooled.append({"auc_cells": roc_auc(truth > 0, scores),
                       "auc_cells_95ci": bootstrap_auc(truth > 0, scores, women, np.random.default_rng(seed))})
    keys = ("auc_cells", "auc_benign_vs_malignant")
    summary = {key: mean_sd([f[key] for f in per_fold]) for key in keys}
    return {"model": "cnni-bcc", "config": asdict(config), "images": len(records),
            "women": len({r.woman for r in records}), "folds": folds, "seeds": list(seeds),
            "summary": summary, "pooled": pooled, "per_fold": per_fold}
