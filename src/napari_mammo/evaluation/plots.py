"""Figures of the evaluations: ROC, FROC, confusion matrices, the review summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mammo.records import CLASS_NAMES


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Write a figure as PNG atomically and close it."""
    import io

    from napari_mammo.io.atomic import atomic_write_bytes

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    pyplot().close(fig)
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
    fig, axes = pyplot().subplots(1, 3, figsize=(15, 4.8))
    for ax, level in zip(axes[:2], ("image", "patches"), strict=True):
        r = report[level]
        draw_roc(ax, [("normal vs abnormal", r["roc_normal_vs_abnormal"], r["auc_normal_vs_abnormal"]),
                      ("malignant vs rest", r["roc_malignant_vs_rest"], r["auc_malignant_vs_rest"])],
                 f"ROC, {level} level (n={r['count']})")
    draw_confusion(axes[2], np.array(report["image"]["confusion_matrix"]),
                   f"image confusion matrix (accuracy {report['image']['accuracy']:.3f})")
    return save_figure(fig, path)


def draw_confusion(ax, matrix: np.ndarray, title: str) -> None:
    """A 3-class confusion matrix (rows true, columns predicted) with its counts."""
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):  # white numbers on the dark cells
        dark = value > matrix.max() / 2
        ax.text(j, i, str(value), ha="center", va="center", color="white" if dark else "black")
    ax.set(title=title, xticks=range(3), yticks=range(3), xticklabels=CLASS_NAMES, yticklabels=CLASS_NAMES,
           xlabel="predicted", ylabel="true")


def plot_screening(report: dict, path: str | Path) -> Path:
    """A PNG with the screening model's image ROC curve and its verdicts' confusion matrix."""
    fig, axes = pyplot().subplots(1, 2, figsize=(10, 4.8))
    draw_roc(axes[0], [("normal vs abnormal", report["roc_normal_vs_abnormal"], report["auc_normal_vs_abnormal"])],
             f"screening ROC (n={report['images']})")
    draw_confusion(axes[1], np.array(report["confusion_matrix"]),
                   f"verdicts (sensitivity {report['sensitivity']:.2f}, specificity {report['specificity']:.2f})")
    return save_figure(fig, path)


def plot_froc(report: dict, path: str | Path) -> Path:
    """A PNG of the detector's FROC curve with the 0.5, 1 and 2 FP/image points."""
    fig, ax = pyplot().subplots(figsize=(6, 4.5))
    points = {f"{sens:.2f} at {fp} FP/image": (float(fp), sens) for fp, sens in report["sensitivity_at_fp"].items()}
    draw_froc(ax, report["froc"], f"IDBLL FROC ({report['images']} images, {report['lesions']} lesions; "
              f"mAP@0.5 {report['map_50']:.3f})", points)
    return save_figure(fig, path)


def draw_review(figure, summary: dict) -> None:
    """The folder's FROC (the chosen box threshold marked) and image ROC on a matplotlib Figure."""
    from napari_mammo.evaluation.plots import draw_froc, draw_roc

    figure.clear()
    froc_ax, roc_ax = figure.subplots(1, 2)
    point = {f"boxes ≥ {summary['threshold']:.2f}": (summary["fp_per_image"], summary["sensitivity"])}
    draw_froc(froc_ax, summary["froc"], f"IDBLL FROC ({summary['lesions']} lesions)", point)
    draw_roc(roc_ax, [("normal vs abnormal", summary["roc_normal_vs_abnormal"], summary["auc_normal_vs_abnormal"])],
             f"CNNI-BCC ROC ({summary['images']} images)")


def plot_review(summary: dict, path: str | Path) -> Path:
    """A PNG of the folder's FROC and ROC (see `draw_review`)."""

    figure = pyplot().figure(figsize=(11, 4.5))
    draw_review(figure, summary)
    return save_figure(figure, path)
