"""Training IDBLL: detection samples on the model's canvas, box jitter, the training run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from napari_mammo.data.augment import SEED_TRANSFORMS, apply_boxes, apply_image
from napari_mammo.data.preprocess import normalise, to_canvas, to_mias_scale
from napari_mammo.engine.progress import Progress, StopFlag, progress_event
from napari_mammo.io.images import read_image
from napari_mammo.models.idbll.predict import LABELS, MODEL_NAME, LesionDetector
from napari_mammo.records import Mammogram, record_boxes
from napari_mammo.training.loop import TrainConfig, TrainResult


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
            progress(progress_event("reading", index + 1, len(records)))
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
                   progress: Progress | None = None, stop: StopFlag | None = None,
                   resume: bool = False) -> TrainResult:
    """Train IDBLL on the train part of the pair-aware split; keep the weights best on validation.

    Batches draw images with lesions `lesion_fraction` of the time (most images are
    normal), each under a random seed augmentation that moves its boxes with it (and, with
    `augment='strong'`, zoom and gamma jitter). The validation score is the mean lesion
    sensitivity at 0.5, 1 and 2 false positives per image.
    """
    import torch

    from napari_mammo.engine.weights import save_weights
    from napari_mammo.models.idbll.network import INPUT_SIZE, build_idbll
    from napari_mammo.training import loop

    config = config or DetectorConfig()
    run = loop.start_training(config.device, config.seed, progress)
    device = run.device
    parts, val_records = loop.training_split(records, config.split_seed, config.hold_out_test)
    train = build_samples(parts["train"], INPUT_SIZE, run.report)
    model = build_idbll().to(device)
    net = loop.distribute(model, run)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps = loop.steps_per_epoch(len(train), config.batch_size, run, config.max_steps_per_epoch)
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
        return loop.optimise(losses["classification"] + losses["bbox_regression"], optimiser, scheduler)

    def validate(epoch: int, train_loss: float) -> None:
        """Score: mean lesion sensitivity at 0.5, 1 and 2 FP/image, steadier than one point on few lesions."""
        from napari_mammo.evaluation.detector import evaluate_detector

        sens = evaluate_detector(LesionDetector(model, metadata, device, Path(out)), val_records)["sensitivity_at_fp"]
        model.train()
        score = float(np.mean(list(sens.values())))
        entry = {"epoch": epoch, "train_loss": train_loss, "val_score": score, "val_sensitivity_at_1fp": sens["1"]}
        meta = {**metadata, "best_epoch": epoch, "val_sensitivity_at_1fp": sens["1"], "val_mean_sensitivity": score}
        loop.keep_if_best(run, entry, score, lambda: save_weights(out, model.state_dict(), MODEL_NAME,
                                                       {**meta, "history": run.result.history}))

    checkpoint = loop.make_checkpoint(out, run, model, optimiser, scheduler, rng, config, resume)
    return loop.run_epochs(run, config.epochs, steps, lambda epoch: net.train(), step, validate, stop, checkpoint)
