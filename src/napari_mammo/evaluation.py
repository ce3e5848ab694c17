"""Evaluating CNNI-BCC on labelled images: patch and image metrics, ROC curves, a PNG report."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .classifier import PatchClassifier, normalise
from .images import read_image
from .metrics import confusion_matrix, per_class_rates, roc_auc, roc_curve
from .patches import extract, patch_labels, select_patches
from .records import CLASS_NAMES, Mammogram


def evaluate_classifier(classifier: PatchClassifier, records: Sequence[Mammogram], selection: str = "breast",
                        labelling: str = "lesion", progress: Callable[[int, int], None] | None = None) -> dict:
    """Patch-level and image-level metrics of a classifier on labelled images."""
    from .classifier import image_verdict, predict_patches

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
            progress(index + 1, len(records))
    patch_truth_a = np.concatenate(patch_truth) if patch_truth else np.zeros(0, int)
    patch_probs_a = np.concatenate(patch_probs) if patch_probs else np.zeros((0, 3))
    report = {
        "images": len(records),
        "patches": _level(patch_truth_a, patch_probs_a, patch_probs_a.argmax(1) if len(patch_probs_a) else
                          np.zeros(0, int)),
        "image": _level(np.array(image_truth, int), np.array(image_probs).reshape(-1, 3), np.array(image_pred, int)),
        "per_image": [{"ref": ref, "truth": CLASS_NAMES[t], "predicted": CLASS_NAMES[p],
                       "probabilities": dict(zip(CLASS_NAMES, map(float, pr), strict=True))}
                      for ref, t, p, pr in zip(refs, image_truth, image_pred, image_probs, strict=True)],
        "image_threshold": classifier.threshold,
        "selection": selection,
        "labelling": labelling,
    }
    return report


def _level(truth: np.ndarray, probs: np.ndarray, predicted: np.ndarray) -> dict:
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


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: str | Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    import io

    from .pgm import atomic_write_bytes

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def draw_roc(ax, curves: list[tuple[str, list, float]], title: str) -> None:
    """ROC curves [(name, (fpr, tpr), auc)] on a matplotlib axes, with the chance line."""
    for name, (fpr, tpr), auc in curves:
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(title=title, xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize="small")


def draw_froc(ax, curve: dict, title: str, points: dict | None = None) -> None:
    """A FROC curve on a matplotlib axes, with labelled points {label: (fp_per_image, sensitivity)}."""
    ax.step(curve["fp_per_image"], curve["sensitivity"], where="post")
    for label, (fp, sens) in (points or {}).items():
        ax.plot(fp, sens, "o", label=label)
    ax.set(xlim=(0, 4), ylim=(0, 1.01), xlabel="false positives per image", ylabel="lesion sensitivity", title=title)
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="lower right", fontsize="small")


def plot_report(report: dict, path: str | Path) -> Path:
    """A PNG with the image- and patch-level ROC curves and the image confusion matrix."""
    fig, axes = _pyplot().subplots(1, 3, figsize=(15, 4.8))
    for ax, level in zip(axes[:2], ("image", "patches"), strict=True):
        r = report[level]
        draw_roc(ax, [("normal vs abnormal", r["roc_normal_vs_abnormal"], r["auc_normal_vs_abnormal"]),
                      ("malignant vs rest", r["roc_malignant_vs_rest"], r["auc_malignant_vs_rest"])],
                 f"ROC, {level} level (n={r['count']})")
    matrix = np.array(report["image"]["confusion_matrix"])
    axes[2].imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        axes[2].text(j, i, str(value), ha="center", va="center")
    axes[2].set(title=f"image confusion matrix (accuracy {report['image']['accuracy']:.3f})",
                xticks=range(3), yticks=range(3), xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
                xlabel="predicted", ylabel="true")
    return _save_figure(fig, path)


def plot_froc(report: dict, path: str | Path) -> Path:
    """A PNG of the detector's FROC curve with the 0.5, 1 and 2 FP/image points."""
    fig, ax = _pyplot().subplots(figsize=(6, 4.5))
    points = {f"{sens:.2f} at {fp} FP/image": (float(fp), sens) for fp, sens in report["sensitivity_at_fp"].items()}
    draw_froc(ax, report["froc"], f"IDBLL FROC ({report['images']} images, {report['lesions']} lesions; "
              f"mAP@0.5 {report['map_50']:.3f})", points)
    return _save_figure(fig, path)


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
