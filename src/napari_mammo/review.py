"""Reviewing predictions against the ground truth: one image, or a whole labelled folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .detector import Detection, hits
from .records import Mammogram


@dataclass
class ImageReview:
    """One image's predictions against its truth."""

    ref: str
    path: str
    truth: str
    verdict: str
    abnormality: float
    best_box: float
    lesions: int
    found: int
    false_positives: int


def review_image(record: Mammogram, verdict: str, abnormality: float, detections: Sequence[Detection],
                 threshold: float) -> ImageReview:
    """Compare one image's verdict and boxes (those scoring ≥ threshold) with its record."""
    shown = [d for d in detections if d.score >= threshold]
    hit, found = hits(shown, record)
    return ImageReview(record.ref, str(record.path), record.label, verdict, abnormality,
                       max((d.score for d in detections), default=0.0), len(found), int(found.sum()),
                       int((~hit).sum()))


def summarise(reviews: Sequence[ImageReview]) -> dict:
    """Lesion sensitivity, false positives per image and verdict accuracy over reviewed images."""
    lesions = sum(r.lesions for r in reviews)
    return {
        "images": len(reviews),
        "lesions": lesions,
        "sensitivity": sum(r.found for r in reviews) / lesions if lesions else float("nan"),
        "fp_per_image": sum(r.false_positives for r in reviews) / len(reviews) if reviews else float("nan"),
        "accuracy": float(np.mean([r.truth == r.verdict for r in reviews])) if reviews else float("nan"),
    }
