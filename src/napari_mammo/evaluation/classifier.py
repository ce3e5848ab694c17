"""Scoring CNNI-BCC on labelled images: patch and image level accuracy, ROC, confusion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_mammo.data.patches import extract, patch_labels, select_patches
from napari_mammo.data.preprocess import normalise
from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.evaluation.metrics import confusion_matrix, per_class_rates, roc_auc, roc_curve
from napari_mammo.io.images import read_image
from napari_mammo.models.cnni_bcc.predict import PatchClassifier
from napari_mammo.records import CLASS_NAMES, Mammogram


def evaluate_classifier(classifier: PatchClassifier, records: Sequence[Mammogram], selection: str = "breast",
                        labelling: str = "lesion", progress: Progress | None = None) -> dict:
    """Patch-level and image-level metrics of a classifier on labelled images."""
    from napari_mammo.models.cnni_bcc.predict import image_verdict, predict_patches

    patch_truth, patch_probs, image_truth, image_probs, image_pred, refs = [], [], [], [], [], []
    for index, record in enumerate(records):
        image = read_image(record.path)
        chosen = select_patches(image.pixels, selection) or select_patches(image.pixels, "all")
        probs = predict_patches(classifier.model, extract(normalise(image.pixels), chosen), classifier.device)
        patch_truth.append(patch_labels(record, chosen, labelling))
        patch_probs.append(probs)
        verdict, top = image_verdict(probs, classifier.threshold)
        image_truth.append(CLASS_NAMES.index(record.label))
        image_probs.append(top)
        image_pred.append(verdict)
        refs.append(record.ref)
        if progress:
            progress(progress_event("evaluating", index + 1, len(records)))
    patch_truth_a = np.concatenate(patch_truth) if patch_truth else np.zeros(0, int)
    patch_probs_a = np.concatenate(patch_probs) if patch_probs else np.zeros((0, 3))
    report = {
        "images": len(records),
        "patches": level_report(patch_truth_a, patch_probs_a, patch_probs_a.argmax(1) if len(patch_probs_a) else
                          np.zeros(0, int)),
        "image": level_report(np.array(image_truth, int), np.array(image_probs).reshape(-1, 3),
                              np.array(image_pred, int)),
        "per_image": [{"ref": ref, "truth": CLASS_NAMES[t], "predicted": CLASS_NAMES[p],
                       "probabilities": dict(zip(CLASS_NAMES, map(float, pr), strict=True))}
                      for ref, t, p, pr in zip(refs, image_truth, image_pred, image_probs, strict=True)],
        "image_threshold": classifier.threshold,
        "selection": selection,
        "labelling": labelling,
    }
    return report


def level_report(truth: np.ndarray, probs: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, confusion matrix, per-class rates and the two ROC curves at one level."""
    matrix = confusion_matrix(truth, predicted, 3)
    abnormal = truth > 0
    malignant = truth == 2
    abnormal_score = 1 - probs[:, 0] if len(probs) else np.zeros(0)
    malignant_score = probs[:, 2] if len(probs) else np.zeros(0)
    return {
        "count": int(len(truth)),
        "accuracy": float((truth == predicted).mean()) if len(truth) else float("nan"),
        "confusion_matrix": matrix.tolist(),
        "per_class": dict(zip(CLASS_NAMES, per_class_rates(matrix), strict=True)),
        "auc_normal_vs_abnormal": roc_auc(abnormal, abnormal_score),
        "auc_malignant_vs_rest": roc_auc(malignant, malignant_score),
        "roc_normal_vs_abnormal": [c.tolist() for c in roc_curve(abnormal, abnormal_score)],
        "roc_malignant_vs_rest": [c.tolist() for c in roc_curve(malignant, malignant_score)],
    }


def format_evaluation(report: dict) -> str:
    """A readable summary of an evaluation report."""
    lines = [f"{report['images']} images, patches: {report['selection']}, labels: {report['labelling']}"]
    for level in ("image", "patches"):
        r = report[level]
        lines.append(f"{level:>7}: n={r['count']}, accuracy {r['accuracy']:.3f}, AUC normal-vs-abnormal "
                     f"{r['auc_normal_vs_abnormal']:.3f}, AUC malignant-vs-rest {r['auc_malignant_vs_rest']:.3f}")
        for name, rates in r["per_class"].items():
            lines.append(f"         {name:<9} sensitivity {rates['sensitivity']:.3f}  "
                         f"specificity {rates['specificity']:.3f}")
        lines.append("         confusion (rows true N/B/M, columns predicted): " + str(r["confusion_matrix"]))
    return "\n".join(lines)
