"""IDBLL end to end: detection data, training, loading and detecting lesions in whole images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .augment import SEED_TRANSFORMS, apply_boxes, apply_image
from .classifier import drive, normalise, to_mias_scale
from .errors import MammoInputError
from .images import read_image
from .records import Mammogram
from .training import Progress, StopFlag, TrainConfig, TrainResult

MODEL_NAME = "idbll"
LABELS = ("lesion",)


def to_canvas(pixels01: np.ndarray, size: int, upscale: bool = True) -> tuple[np.ndarray, float]:
    """Pad a [0, 1] image at the bottom/right to a square and resize it to `size`; returns (canvas, factor).

    `factor` is input pixels per canvas pixel. With `upscale=False` a square smaller than
    `size` is padded, not enlarged (a region of interest at full resolution).
    """
    from skimage.transform import resize

    side = max(pixels01.shape)
    square = np.zeros((side, side), np.float32)
    square[: pixels01.shape[0], : pixels01.shape[1]] = pixels01
    if side <= size and not upscale:
        canvas = np.zeros((size, size), np.float32)
        canvas[:side, :side] = square
        return canvas, 1.0
    canvas = resize(square, (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
    return canvas.astype(np.float32), side / size


def record_boxes(record: Mammogram) -> np.ndarray:
    """(N, 4) boxes (row_min, col_min, row_max, col_max) of the located lesions."""
    boxes = [lesion.box() for lesion in record.lesions if lesion.located]
    return np.array(boxes, np.float64).reshape(-1, 4)


@dataclass
class DetectionSample:
    """One training image on the model's canvas with its boxes in canvas pixels."""

    ref: str
    canvas: np.ndarray
    boxes: np.ndarray


def build_samples(records: Sequence[Mammogram], size: int, progress: Progress | None = None) -> list[DetectionSample]:
    """Read, normalise and shrink each image; boxes follow (unlocated findings add none)."""
    samples = []
    for index, record in enumerate(records):
        image = read_image(record.path)
        scaled, mias = to_mias_scale(normalise(image.pixels), image.spacing_mm)
        canvas, factor = to_canvas(scaled, size)
        boxes = record_boxes(record) * np.tile(mias, 2) / factor
        samples.append(DetectionSample(record.ref, canvas, boxes))
        if progress:
            progress({"phase": "reading", "step": index + 1, "steps": len(records)})
    return samples


def _targets(boxes: np.ndarray, size: int):
    """torchvision target dict: boxes as (x1, y1, x2, y2) clipped to the canvas, label 1."""
    import torch

    xyxy = np.clip(boxes[:, [1, 0, 3, 2]], 0, size).astype(np.float32)
    keep = (xyxy[:, 2] - xyxy[:, 0] >= 1) & (xyxy[:, 3] - xyxy[:, 1] >= 1)
    xyxy = xyxy[keep]
    return {"boxes": torch.from_numpy(xyxy).reshape(-1, 4), "labels": torch.ones(len(xyxy), dtype=torch.int64)}


@dataclass
class DetectorConfig(TrainConfig):
    """How to train IDBLL; saved in the weights' metadata."""

    epochs: int = 40
    batch_size: int = 8
    lesion_fraction: float = 0.75
    augment: str = "seed"
    """'seed': the poster's rotations and vertical flip; 'strong': also zoom (±15%) and gamma (±30%) jitter."""


def jitter(canvas: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, zoom: float = 0.15,
           gamma: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Random zoom about the top-left corner (cropped or padded back to size) and gamma; boxes follow."""
    from skimage.transform import rescale

    size = canvas.shape[0]
    factor = float(np.exp(rng.uniform(np.log(1 - zoom), np.log(1 + zoom))))
    zoomed = rescale(canvas, factor, order=1, anti_aliasing=factor < 1, preserve_range=True)[:size, :size]
    out = np.zeros_like(canvas)
    out[: zoomed.shape[0], : zoomed.shape[1]] = zoomed
    out = np.clip(out, 0, 1) ** float(np.exp(rng.uniform(-gamma, gamma)))
    return out.astype(np.float32), np.clip(boxes * factor, 0, size)


def train_detector(records: Sequence[Mammogram], out: str | Path, config: DetectorConfig | None = None,
                   progress: Progress | None = None, stop: StopFlag | None = None) -> TrainResult:
    """Train IDBLL on the train part of the pair-aware split; keep the weights best on validation.

    Batches draw images with lesions `lesion_fraction` of the time (most images are
    normal), each under a random seed augmentation that moves its boxes with it (and, with
    `augment='strong'`, zoom and gamma jitter). The validation score is the mean lesion
    sensitivity at 0.5, 1 and 2 false positives per image.
    """
    import torch

    from .models.idbll import INPUT_SIZE, build_idbll
    from .training import begin, loop, optimise, record, steps_per_epoch, training_split, wrap
    from .weights import save_weights

    config = config or DetectorConfig()
    run = begin(config.device, config.seed, progress)
    device = run.device
    parts, val_records = training_split(records, config.split_seed)
    train = build_samples(parts["train"], INPUT_SIZE, run.report)
    model = build_idbll().to(device)
    net = wrap(model, run)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = steps_per_epoch(len(train), config.batch_size, run, config.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=steps * config.epochs)
    rng = np.random.default_rng(config.seed + 1000 * run.dist.rank)
    with_lesions = [i for i, s in enumerate(train) if len(s.boxes)] or list(range(len(train)))
    metadata = {"labels": list(LABELS), "config": asdict(config), "input_size": INPUT_SIZE,
                "split": {name: [r.ref for r in part] for name, part in parts.items()}}

    def step(index: int) -> float:
        images, targets = [], []
        for _ in range(config.batch_size):
            pool = with_lesions if rng.random() < config.lesion_fraction else range(len(train))
            sample = train[int(rng.choice(list(pool)))]
            transform = SEED_TRANSFORMS[int(rng.integers(len(SEED_TRANSFORMS)))]
            canvas, boxes = sample.canvas, sample.boxes
            if config.augment == "strong":
                canvas, boxes = jitter(canvas, boxes, rng)
            boxes = apply_boxes(boxes, canvas.shape, transform)
            images.append(torch.from_numpy(apply_image(canvas, transform))[None].to(device))
            targets.append({k: v.to(device) for k, v in _targets(boxes, INPUT_SIZE).items()})
        losses = net(images, targets)
        return optimise(losses["classification"] + losses["bbox_regression"], optimiser, scheduler)

    def validate(epoch: int, train_loss: float) -> None:
        """Score: mean lesion sensitivity at 0.5, 1 and 2 FP/image, steadier than one point on few lesions."""
        sens = evaluate_detector(LesionDetector(model, metadata, device, Path(out)), val_records)["sensitivity_at_fp"]
        model.train()
        score = float(np.mean(list(sens.values())))
        entry = {"epoch": epoch, "train_loss": train_loss, "val_score": score, "val_sensitivity_at_1fp": sens["1"]}
        meta = {**metadata, "best_epoch": epoch, "val_sensitivity_at_1fp": sens["1"], "val_mean_sensitivity": score}
        record(run, entry, score, lambda: save_weights(out, model.state_dict(), MODEL_NAME,
                                                       {**meta, "history": run.result.history}))

    return loop(run, config.epochs, steps, lambda epoch: net.train(), step, validate, stop)


@dataclass
class Detection:
    """One box in the input image's pixels (row 0 at the top)."""

    box: tuple[float, float, float, float]
    label: str
    score: float

    def to_json(self) -> dict:
        """The command line's JSON object for this detection."""
        return {"box": [round(v, 2) for v in self.box], "label": self.label, "score": round(self.score, 5)}


class LesionDetector:
    """Loaded IDBLL weights, ready to find lesions in whole images or regions of them."""

    def __init__(self, model, metadata: dict, device: str, source: Path | None) -> None:
        self.model, self.metadata, self.device, self.source = model, metadata, device, source

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> LesionDetector:
        """Load weights (the shipped default when `path` is None) onto a device."""
        from .models.idbll import build_idbll
        from .runtime import pick_device
        from .weights import load_model

        model, metadata, path = load_model(path, MODEL_NAME, "IDBLL", build_idbll)
        device = pick_device(device)
        return cls(model.to(device).eval(), metadata, device, path)

    def iter_detect(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
                    roi: tuple[int, int, int, int] | None = None, score_threshold: float = 0.05):
        """Generator of progress events returning detections sorted by score.

        `roi` (row_min, col_min, row_max, col_max) restricts detection to that region,
        run at full resolution when it fits the model's input.
        """
        import torch

        from .models.idbll import INPUT_SIZE

        pixels = np.asarray(pixels)
        if pixels.ndim != 2:
            raise ValueError(f"expected a 2-D greyscale image, got shape {pixels.shape}")
        if pixels.size == 0 or pixels.min() == pixels.max():
            raise ValueError("the image is empty or constant; there is nothing to detect")
        norm = normalise(pixels)
        top = left = 0
        if roi is not None:
            r0, c0, r1, c1 = (int(round(v)) for v in roi)
            r0, c0 = max(r0, 0), max(c0, 0)
            r1, c1 = min(r1, pixels.shape[0]), min(c1, pixels.shape[1])
            if r1 - r0 < 8 or c1 - c0 < 8:
                raise ValueError(f"the region of interest {roi} is too small or outside the image")
            norm, top, left = norm[r0:r1, c0:c1], r0, c0
        yield {"phase": "preparing", "step": 1, "steps": 3}
        scaled, mias = to_mias_scale(norm, spacing_mm)
        canvas, factor = to_canvas(scaled, INPUT_SIZE, upscale=roi is None)
        yield {"phase": "detecting", "step": 2, "steps": 3}
        self.model.eval()
        with torch.no_grad():
            out = self.model([torch.from_numpy(canvas)[None].to(self.device)])[0]
        boxes = out["boxes"].cpu().numpy()[:, [1, 0, 3, 2]] * factor / np.tile(mias, 2)
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] + top, top, top + norm.shape[0])
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] + left, left, left + norm.shape[1])
        scores = out["scores"].cpu().numpy()
        order = np.argsort(-scores)
        detections = [Detection(tuple(float(v) for v in boxes[i]), LABELS[0], float(scores[i]))
                      for i in order if scores[i] >= score_threshold
                      and boxes[i, 2] - boxes[i, 0] >= 1 and boxes[i, 3] - boxes[i, 1] >= 1]
        yield {"phase": "done", "step": 3, "steps": 3}
        return detections

    def detect(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
               roi: tuple[int, int, int, int] | None = None, score_threshold: float = 0.05,
               progress: Progress | None = None, stop: StopFlag | None = None) -> list[Detection]:
        """Detect lesions in a 2-D image (see `iter_detect`)."""
        return drive(self.iter_detect(pixels, spacing_mm, roi, score_threshold), progress, stop)

    def detect_file(self, path: str | Path, **kwargs) -> list[Detection]:
        """Read an image file and detect lesions in it."""
        from .images import read_single_image

        image = read_single_image(path)
        try:
            return self.detect(image.pixels, image.spacing_mm, **kwargs)
        except ValueError as err:
            raise MammoInputError(path, str(err)) from None


def hits(detections: Sequence[Detection], record: Mammogram) -> tuple[np.ndarray, np.ndarray]:
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
        hit, _ = hits(dets, record)
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


def evaluate_detector(detector: LesionDetector, records: Sequence[Mammogram], progress=None) -> dict:
    """FROC, sensitivity at 0.5, 1 and 2 FP/image, and mAP@0.5 on labelled images."""
    per_image = []
    for index, record in enumerate(records):
        image = read_image(record.path)
        per_image.append((detector.detect(image.pixels, image.spacing_mm, score_threshold=0.0), record))
        if progress:
            progress(index + 1, len(records))
    curve = froc(per_image)
    return {"images": len(records), "lesions": curve["lesions"], "froc": curve,
            "sensitivity_at_fp": {str(fp): sensitivity_at(curve, fp) for fp in (0.5, 1, 2)},
            "map_50": average_precision(per_image, 0.5)}
