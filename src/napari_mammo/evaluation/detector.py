"""Scoring detections against lesion circles: matching, FROC, sensitivity at a false-positive rate, mAP."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.io.images import read_image
from napari_mammo.models.idbll.predict import Detection, LesionDetector
from napari_mammo.records import Mammogram, record_boxes


def match_lesions(detections: Sequence[Detection], record: Mammogram) -> tuple[np.ndarray, np.ndarray]:
    """Which detections hit a lesion (box centre inside its circle) and which lesions were hit."""
    lesions = [lesion for lesion in record.lesions if lesion.located]
    hit = np.zeros(len(detections), bool)
    found = np.zeros(len(lesions), bool)
    for i, det in enumerate(detections):
        row, col = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
        for j, lesion in enumerate(lesions):
            if (row - lesion.row) ** 2 + (col - lesion.col) ** 2 <= lesion.radius**2:
                hit[i] = True
                found[j] = True
    return hit, found


def froc(per_image: list[tuple[list[Detection], Mammogram]]) -> dict:
    """FROC curve: lesion sensitivity against mean false positives per image, over score thresholds."""
    scores = sorted({d.score for dets, _ in per_image for d in dets}, reverse=True)
    total_lesions = sum(1 for _, r in per_image for les in r.lesions if les.located)
    images = max(len(per_image), 1)
    # each detection's score and whether it is a hit; each lesion's best hitting score
    det_scores, det_hits, lesion_best = [], [], []
    for dets, record in per_image:
        hit, _ = match_lesions(dets, record)
        det_scores.extend(d.score for d in dets)
        det_hits.extend(hit)
        for lesion in (les for les in record.lesions if les.located):
            best = [d.score for d in dets if ((d.box[0] + d.box[2]) / 2 - lesion.row) ** 2 +
                    ((d.box[1] + d.box[3]) / 2 - lesion.col) ** 2 <= lesion.radius**2]
            lesion_best.append(max(best) if best else -1.0)
    det_scores, det_hits, lesion_best = map(np.array, (det_scores, det_hits, lesion_best))
    fps, sens = [0.0], [0.0]
    for t in scores:
        fps.append(float(((det_scores >= t) & ~det_hits).sum() / images))
        sens.append(float((lesion_best >= t).sum() / total_lesions) if total_lesions else float("nan"))
    return {"thresholds": [float("inf"), *scores], "fp_per_image": fps, "sensitivity": sens,
            "lesions": total_lesions, "images": len(per_image)}


def sensitivity_at(curve: dict, fp: float) -> float:
    """Highest sensitivity reached with at most `fp` false positives per image."""
    best = 0.0
    for f, s in zip(curve["fp_per_image"], curve["sensitivity"], strict=True):
        if f <= fp and not math.isnan(s):
            best = max(best, s)
    return best


def operating_point_at(curve: dict, fp: float) -> dict:
    """The lowest score threshold of a FROC curve with at most `fp` false positives per image, and its figures."""
    best = 0
    for i, f in enumerate(curve["fp_per_image"]):
        if f <= fp:
            best = i
    threshold = curve["thresholds"][best]
    return {"threshold": float(threshold) if math.isfinite(threshold) else 1.0,
            "fp_per_image": float(curve["fp_per_image"][best]), "sensitivity": float(curve["sensitivity"][best]),
            "target_fp_per_image": float(fp)}


def average_precision(per_image: list[tuple[list[Detection], Mammogram]], iou: float = 0.5) -> float:
    """VOC-style average precision at an IoU threshold, every detection matched once, greedily by score."""
    entries, total = [], 0
    for dets, record in per_image:
        gt = record_boxes(record)
        total += len(gt)
        used = np.zeros(len(gt), bool)
        for det in sorted(dets, key=lambda d: -d.score):
            match = False
            if len(gt):
                b = np.array(det.box)
                inter_h = np.clip(np.minimum(b[2], gt[:, 2]) - np.maximum(b[0], gt[:, 0]), 0, None)
                inter_w = np.clip(np.minimum(b[3], gt[:, 3]) - np.maximum(b[1], gt[:, 1]), 0, None)
                inter = inter_h * inter_w
                union = (b[2] - b[0]) * (b[3] - b[1]) + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter
                overlaps = np.where(used, 0, inter / np.maximum(union, 1e-9))
                j = int(np.argmax(overlaps))
                if overlaps[j] >= iou:
                    used[j], match = True, True
            entries.append((det.score, match))
    if not total:
        return float("nan")
    entries.sort(key=lambda e: -e[0])
    tp = np.cumsum([m for _, m in entries])
    precision = tp / np.arange(1, len(entries) + 1) if entries else np.zeros(0)
    recall = tp / total if entries else np.zeros(0)
    ap, prev_recall = 0.0, 0.0
    for k in range(len(entries)):
        if entries[k][1]:
            ap += (recall[k] - prev_recall) * precision[k:].max()
            prev_recall = recall[k]
    return float(ap)


def evaluate_detector(detector: LesionDetector, records: Sequence[Mammogram], progress: Progress | None = None) -> dict:
    """FROC, sensitivity at 0.5, 1 and 2 FP/image, and mAP@0.5 on labelled images."""
    per_image = []
    for index, record in enumerate(records):
        image = read_image(record.path)
        per_image.append((detector.detect(image.pixels, image.spacing_mm, score_threshold=0.0), record))
        if progress:
            progress(progress_event("evaluating", index + 1, len(records)))
    curve = froc(per_image)
    return {"images": len(records), "lesions": curve["lesions"], "froc": curve,
            "sensitivity_at_fp": {str(fp): sensitivity_at(curve, fp) for fp in (0.5, 1, 2)},
            "map_50": average_precision(per_image, 0.5)}
