"""Classification metrics: confusion matrix, sensitivity and specificity, ROC curves and AUC."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return matrix


def per_class_rates(matrix: np.ndarray) -> list[dict[str, float]]:
    """One-vs-rest sensitivity and specificity of each class (NaN where undefined)."""
    total = matrix.sum()
    rates = []
    for k in range(matrix.shape[0]):
        tp = matrix[k, k]
        fn = matrix[k].sum() - tp
        fp = matrix[:, k].sum() - tp
        tn = total - tp - fn - fp
        rates.append({
            "sensitivity": float(tp / (tp + fn)) if tp + fn else float("nan"),
            "specificity": float(tn / (tn + fp)) if tn + fp else float("nan"),
        })
    return rates


def roc_curve(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates over all thresholds (ties handled as one step)."""
    positive = np.asarray(positive, bool)
    score = np.asarray(score, float)
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    distinct = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1] if len(score) else np.array([], int)
    tps = np.cumsum(positive)[distinct]
    fps = np.cumsum(~positive)[distinct]
    n_pos, n_neg = positive.sum(), (~positive).sum()
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(len(distinct) + 1, np.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(len(distinct) + 1, np.nan)
    return fpr, tpr


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (NaN when one class is absent)."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return float("nan")
    fpr, tpr = roc_curve(positive, score)
    return float(np.trapezoid(tpr, fpr))
