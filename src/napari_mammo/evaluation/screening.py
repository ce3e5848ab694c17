"""Scoring the screening model on labelled images: image AUC, sensitivity and specificity at its verdict's
threshold, benign-vs-malignant AUC among the abnormal images, with the films each verdict used, and the
lesion sensitivity of its boxes at 0.5, 1 and 2 false positives per image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.evaluation.crossval import bootstrap_auc
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import confusion_matrix, roc_auc, roc_curve
from napari_mammo.models.screener import Screener, partner_file
from napari_mammo.records import CLASS_NAMES, Mammogram


def evaluate_screener(screener: Screener, records: Sequence[Mammogram], progress: Progress | None = None,
                      other_film: bool = True) -> dict:
    """Screen each image (with the woman's other film beside it, when `other_film`) and score the verdicts."""
    truth, abnormal_p, malignant_share, predicted, both, refs, boxes = [], [], [], [], [], [], []
    for index, record in enumerate(records):
        result = screener.screen_file(record.path, partner_file(record.path) if other_film else None)
        boxes.append((result.detections(), record))
        p = result.probabilities
        truth.append(CLASS_NAMES.index(record.label))
        abnormal_p.append(p["benign"] + p["malignant"])
        malignant_share.append(p["malignant"] / max(p["benign"] + p["malignant"], 1e-12))
        predicted.append(CLASS_NAMES.index(result.label))
        both.append(result.both_breasts)
        refs.append(record.ref)
        if progress:
            progress(progress_event("evaluating", index + 1, len(records)))
    report = screening_report(np.array(truth, int), np.array(abnormal_p), np.array(malignant_share),
                              np.array(predicted, int), np.array(both, bool), refs)
    curve = froc(boxes)
    report.update(lesions=curve["lesions"], lesion_sensitivity_at_fp={str(fp): sensitivity_at(curve, fp)
                                                                      for fp in (0.5, 1, 2)})
    return report


def screening_report(truth: np.ndarray, abnormal_p: np.ndarray, malignant_share: np.ndarray, predicted: np.ndarray,
                     both: np.ndarray, refs: list[str]) -> dict:
    """The figures of screened images: truth and verdict as class indices, p(abnormal), p(malignant | abnormal)."""
    from napari_mammo.records import woman_of

    positive, flagged = truth > 0, predicted > 0
    interval = (bootstrap_auc(positive, abnormal_p, np.array([woman_of(r) for r in refs]),
                              np.random.default_rng(0)) if 0 < positive.sum() < len(truth) else (np.nan, np.nan))
    return {
        "images": len(truth),
        "abnormal": int(positive.sum()),
        "both_films": int(both.sum()),
        "auc_normal_vs_abnormal": roc_auc(positive, abnormal_p),
        "auc_interval_95": list(interval),
        "roc_normal_vs_abnormal": [a.tolist() for a in roc_curve(positive, abnormal_p)],
        "sensitivity": float(flagged[positive].mean()) if positive.any() else float("nan"),
        "specificity": float((~flagged[~positive]).mean()) if (~positive).any() else float("nan"),
        "auc_benign_vs_malignant": roc_auc(truth[positive] == 2, malignant_share[positive]),
        "confusion_matrix": confusion_matrix(truth, predicted, 3).tolist(),
        "per_image": [{"ref": r, "truth": CLASS_NAMES[t], "verdict": CLASS_NAMES[v], "p_abnormal": float(p),
                       "both_films": bool(b)} for r, t, v, p, b in zip(refs, truth, predicted, abnormal_p, both,
                                                                      strict=True)],
    }


def format_screening_evaluation(report: dict) -> str:
    """The screening figures as a few lines of text."""
    low, high = report["auc_interval_95"]
    return "\n".join([
        f"{report['images']} images ({report['abnormal']} abnormal), {report['both_films']} screened with the "
        f"woman's other film ({report['split']} split)",
        f"image AUC normal vs abnormal: {report['auc_normal_vs_abnormal']:.3f} (95% interval by woman "
        f"{low:.3f}-{high:.3f})",
        f"at the verdict's threshold: sensitivity {report['sensitivity']:.3f}, specificity "
        f"{report['specificity']:.3f}",
        f"benign vs malignant AUC among the abnormal images: {report['auc_benign_vs_malignant']:.3f}",
        *([f"its boxes find {' / '.join(f'{v:.3f}' for v in report['lesion_sensitivity_at_fp'].values())} of the "
           f"{report['lesions']} located lesions at 0.5 / 1 / 2 false positives per image"]
          if "lesion_sensitivity_at_fp" in report else []),
    ])
