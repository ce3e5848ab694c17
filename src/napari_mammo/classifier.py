"""CNNI-BCC end to end: patch data sets, training, loading and classifying whole images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .augment import SEED_TRANSFORMS, apply_image
from .errors import MammoInputError
from .images import ImageData, read_image
from .patches import PATCH, extract, patch_labels, select_patches
from .records import CLASS_NAMES, MIAS_PIXEL_MM, Mammogram
from .training import Progress, StopFlag, TrainConfig, TrainResult

MODEL_NAME = "cnni-bcc"


def normalise(pixels: np.ndarray) -> np.ndarray:
    """Grey levels as float32 in [0, 1]: uint8 by /255, other types by their own min and max."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    values = pixels.astype(np.float32)
    if not np.isfinite(values).all():
        raise ValueError("image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def to_mias_scale(pixels: np.ndarray, spacing_mm: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Resample to mini-MIAS' 0.2 mm pixels when the pixel size is known.

    Returns the image and its (row, column) scale: resampled pixels per input pixel along
    each axis, exact for the rounded output shape, so positions map back without drift.
    """
    if not spacing_mm or abs(spacing_mm[0] - MIAS_PIXEL_MM) < 1e-6 and abs(spacing_mm[1] - MIAS_PIXEL_MM) < 1e-6:
        return pixels, np.ones(2)
    from skimage.transform import resize

    shape = (max(1, round(pixels.shape[0] * spacing_mm[0] / MIAS_PIXEL_MM)),
             max(1, round(pixels.shape[1] * spacing_mm[1] / MIAS_PIXEL_MM)))
    resized = resize(pixels.astype(np.float32), shape, order=1, anti_aliasing=True, preserve_range=True)
    return resized, np.array(shape, float) / np.array(pixels.shape[:2], float)


@dataclass
class PatchSet:
    """Patches (N, 128, 128) float32, their class indices and the image each came from."""

    patches: np.ndarray
    labels: np.ndarray
    owners: list[str]


def build_patch_set(records: Sequence[Mammogram], selection: str = "middle", labelling: str = "lesion",
                    progress: Progress | None = None, crops_per_lesion: int = 0, seed: int = 0) -> PatchSet:
    """Read each record's image and cut its grid patches with labels, plus jittered lesion crops if asked."""
    from .patches import lesion_crops

    rng = np.random.default_rng(seed)
    chunks, labels, owners = [], [], []
    for index, record in enumerate(records):
        image = read_image(record.path)
        pixels = normalise(image.pixels)
        chosen = select_patches(image.pixels, selection)
        chunks.append(extract(pixels, chosen))
        labels.append(patch_labels(record, chosen, labelling))
        owners.extend([record.ref] * len(chosen))
        if crops_per_lesion:
            crops, classes = lesion_crops(record, pixels, crops_per_lesion, rng)
            chunks.append(crops)
            labels.append(classes)
            owners.extend([record.ref] * len(crops))
        if progress:
            progress({"phase": "reading", "step": index + 1, "steps": len(records)})
    if not chunks:
        return PatchSet(np.zeros((0, PATCH, PATCH), np.float32), np.zeros(0, np.int64), [])
    return PatchSet(np.concatenate(chunks), np.concatenate(labels), owners)


@dataclass
class ClassifierConfig(TrainConfig):
    """How to train CNNI-BCC; saved in the weights' metadata."""

    patches: str = "middle"
    labelling: str = "lesion"
    crops_per_lesion: int = 0


def balanced_batches(labels: np.ndarray, batch_size: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """Indices (steps, batch_size) drawing each present class equally often, with replacement.

    Normal patches outnumber lesion patches about 25 to 1 in mini-MIAS; sampling by class
    shows the network every class in every batch (each lesion patch under a fresh
    augmentation) instead of weighting a rare few heavily in the loss.
    """
    groups = [np.flatnonzero(labels == k) for k in range(len(CLASS_NAMES))]
    groups = [g for g in groups if len(g)]
    classes = rng.integers(len(groups), size=(steps, batch_size))
    picks = rng.random((steps, batch_size))
    out = np.empty((steps, batch_size), dtype=np.int64)
    for k, group in enumerate(groups):
        mask = classes == k
        out[mask] = group[(picks[mask] * len(group)).astype(np.int64)]
    return out


def _augment_batch(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply one of the seed's transforms (identity, 90°, 180°, 270°, vertical flip) to each patch."""
    choice = rng.integers(len(SEED_TRANSFORMS), size=len(batch))
    out = np.empty_like(batch)
    for k, transform in enumerate(SEED_TRANSFORMS):
        mask = choice == k
        if mask.any():
            out[mask] = apply_image(batch[mask], transform)
    return out


INPUT_MEAN, INPUT_STD = 0.5, 0.25
"""Patches in [0, 1] are standardised with these before the network sees them."""


def model_input(patches: np.ndarray):
    """A (N, 1, 128, 128) float32 tensor of standardised patches."""
    import torch

    return torch.from_numpy((np.ascontiguousarray(patches, dtype=np.float32) - INPUT_MEAN) / INPUT_STD)[:, None]


def iter_predict_patches(model, patches: np.ndarray, device: str, batch_size: int = 64):
    """Generator of progress events; returns softmax probabilities (N, 3) of the patches."""
    import torch

    out = np.zeros((len(patches), len(CLASS_NAMES)), np.float32)
    model.eval()
    steps = math.ceil(len(patches) / batch_size)
    with torch.no_grad():
        for step, start in enumerate(range(0, len(patches), batch_size)):
            batch = model_input(patches[start : start + batch_size]).to(device)
            out[start : start + len(batch)] = torch.softmax(model(batch), dim=1).float().cpu().numpy()
            yield {"phase": "classifying", "step": step + 1, "steps": steps}
    return out


def drive(generator, progress: Progress | None = None, stop: StopFlag | None = None):
    """Run a progress generator to its end, reporting each event; returns its return value."""
    while True:
        try:
            event = next(generator)
        except StopIteration as done:
            return done.value
        if progress:
            progress(event)
        if stop and stop():
            generator.close()
            raise InterruptedError("cancelled")


def predict_patches(model, patches: np.ndarray, device: str, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, 3) of patches, in batches."""
    return drive(iter_predict_patches(model, patches, device, batch_size))


def image_verdict(probabilities: np.ndarray, threshold: float = 0.5) -> tuple[int, np.ndarray]:
    """Image class and probabilities from its patches: the most suspicious patch decides.

    The most suspicious patch is the one with the highest abnormality 1 − p(normal). Its
    abnormality s is recalibrated piecewise linearly so that `threshold` (chosen on the
    validation split at training time) maps to 0.5: the image's p(normal) is 1 − s', and
    s' is shared between benign and malignant as that patch shares it. The verdict is the
    most probable class, so it always agrees with the reported probabilities.
    """
    if len(probabilities) == 0:
        return 0, np.array([1.0, 0.0, 0.0], np.float32)
    top = probabilities[int(np.argmax(1.0 - probabilities[:, 0]))]
    s = float(1.0 - top[0])
    t = min(max(threshold, 1e-6), 1 - 1e-6)
    calibrated = 0.5 * s / t if s < t else 0.5 + 0.5 * (s - t) / (1 - t)
    share = top[1:] / max(float(top[1:].sum()), 1e-12)
    probs = np.array([1.0 - calibrated, calibrated * share[0], calibrated * share[1]], np.float32)
    if calibrated < 0.5:
        return 0, probs
    return (1 if probs[1] >= probs[2] else 2), probs


def best_threshold(scores: np.ndarray, truth: np.ndarray, lesion_class: np.ndarray) -> float:
    """The abnormality threshold that maximises 3-class image accuracy on held-out images."""
    candidates = np.unique(np.r_[0.5, scores])
    best, best_acc = 0.5, -1.0
    for t in candidates:
        predicted = np.where(scores >= t, lesion_class, 0)
        acc = float((predicted == truth).mean())
        if acc > best_acc + 1e-12:
            best, best_acc = float(t), acc
    return best


def train_classifier(records: Sequence[Mammogram], out: str | Path, config: ClassifierConfig | None = None,
                     progress: Progress | None = None, stop: StopFlag | None = None) -> TrainResult:
    """Train CNNI-BCC on the train part of a pair-aware split; keep the weights best on validation.

    The test part of the split (20% of the women, seeded) is never used here. Batches draw
    the three classes equally (see `balanced_batches`), each patch under a random seed
    augmentation. Returns when
    the epochs are done, when `stop()` turns true, or on KeyboardInterrupt; the file at
    `out` then holds the best weights so far. Runs under torchrun (DDP) as well.
    """
    import torch
    import torch.nn.functional as F

    from .models.cnni_bcc import CNNIBCC
    from .training import begin, loop, optimise, record, steps_per_epoch, training_split, wrap
    from .weights import save_weights

    config = config or ClassifierConfig()
    run = begin(config.device, config.seed, progress)
    device = run.device
    parts, val_records = training_split(records, config.split_seed)
    train = build_patch_set(parts["train"], config.patches, config.labelling, run.report,
                            config.crops_per_lesion, config.seed)
    val = build_patch_set(val_records, config.patches, config.labelling)

    model = CNNIBCC(fast=True).to(device)
    net = wrap(model, run)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed + 1000 * run.dist.rank)
    steps = steps_per_epoch(len(train.labels), config.batch_size, run, config.max_steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, config.learning_rate, total_steps=steps * config.epochs)
    metadata = {"classes": list(CLASS_NAMES), "config": asdict(config), "patch_size": PATCH,
                "input": {"scale": "grey levels to [0, 1] (uint8 / 255)", "mean": INPUT_MEAN, "std": INPUT_STD},
                "split": {name: [r.ref for r in part] for name, part in parts.items()},
                "architecture": "CNNI-BCC (poster), ReLU after conv2d_1, depthwise_conv2d_1, conv2d_2"}
    batches: list[np.ndarray] = []

    def start_epoch(epoch: int) -> None:
        net.train()
        batches[:] = list(balanced_batches(train.labels, config.batch_size, steps, rng))

    def step(index: int) -> float:
        chosen = batches[index]
        batch = model_input(_augment_batch(train.patches[chosen], rng)).to(device)
        return optimise(F.cross_entropy(net(batch), torch.from_numpy(train.labels[chosen]).to(device)),
                        optimiser, scheduler)

    def validate(epoch: int, train_loss: float) -> None:
        """Score on the validation images: image-level normal-vs-abnormal ROC AUC (what the
        verdict is judged on), with the balanced patch accuracy breaking ties."""
        from .metrics import roc_auc

        predicted = predict_patches(model, val.patches, device, 256).argmax(1)
        recalls = [float((predicted[val.labels == k] == k).mean()) for k in range(3) if (val.labels == k).any()]
        balanced = float(np.mean(recalls)) if recalls else 0.0
        scores, truth, lesion_class = image_scores(model, val_records, device)
        auc = roc_auc(truth > 0, scores)
        score = (0.0 if np.isnan(auc) else auc) + 1e-3 * balanced
        entry = {"epoch": epoch, "train_loss": train_loss, "val_balanced_accuracy": balanced,
                 "val_image_auc": auc, "val_score": score}
        meta = {**metadata, "best_epoch": epoch, "val_balanced_patch_accuracy": balanced,
                "val_image_auc_normal_vs_abnormal": auc,
                "image_threshold": best_threshold(scores, truth, lesion_class)}
        record(run, entry, score, lambda: save_weights(out, model.state_dict(), MODEL_NAME,
                                                       {**meta, "history": run.result.history}))

    return loop(run, config.epochs, steps, start_epoch, step, validate, stop)


def image_scores(model, records: Sequence[Mammogram], device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: abnormality score of the most suspicious breast patch, true class, and that patch's lesion class."""
    scores, truth, lesion_class = [], [], []
    for record in records:
        image = read_image(record.path)
        pixels = normalise(image.pixels)
        chosen = select_patches(image.pixels, "breast") or select_patches(image.pixels, "all")
        probs = predict_patches(model, extract(pixels, chosen), device)
        top = probs[int(np.argmax(1.0 - probs[:, 0]))]
        scores.append(float(1.0 - top[0]))
        lesion_class.append(1 if top[1] >= top[2] else 2)
        truth.append(CLASS_NAMES.index(record.label))
    return np.array(scores), np.array(truth), np.array(lesion_class)


@dataclass
class Classification:
    """The result for one image: verdict, probabilities, and every classified patch."""

    label: str
    probabilities: dict[str, float]
    patches: list[dict]
    label_image: np.ndarray

    def to_json(self, path: str) -> dict:
        """The command line's JSON object for this image."""
        return {"path": path, "label": self.label, "probabilities": self.probabilities, "patches": self.patches}


class PatchClassifier:
    """Loaded CNNI-BCC weights, ready to classify whole images."""

    def __init__(self, model, metadata: dict, device: str, source: Path) -> None:
        self.model, self.metadata, self.device, self.source = model, metadata, device, source

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "auto") -> PatchClassifier:
        """Load weights (the shipped default when `path` is None) onto a device."""
        from .models.cnni_bcc import CNNIBCC
        from .runtime import pick_device
        from .weights import load_model

        model, metadata, path = load_model(path, MODEL_NAME, "CNNI-BCC", lambda: CNNIBCC(fast=True))
        if metadata.get("classes", list(CLASS_NAMES)) != list(CLASS_NAMES):
            raise MammoInputError(path, f"classes {metadata.get('classes')} are not {list(CLASS_NAMES)}")
        device = pick_device(device)
        return cls(model.to(device).eval(), metadata, device, path)

    @property
    def threshold(self) -> float:
        """Image-level abnormality threshold from training (0.5 when absent)."""
        return float(self.metadata.get("image_threshold", 0.5))

    def iter_classify(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
                      selection: str = "breast"):
        """Generator of progress events that returns the image's Classification.

        Images with a known pixel size other than 0.2 mm are resampled to it first; patch
        positions are reported in the input image's pixels. `selection` 'breast' (default)
        classifies the patches at least half inside the breast, falling back to all patches
        when no breast is found.
        """
        pixels = np.asarray(pixels)
        if pixels.ndim != 2:
            raise ValueError(f"expected a 2-D greyscale image, got shape {pixels.shape}")
        if pixels.size == 0:
            raise ValueError("the image is empty")
        norm = normalise(pixels)
        if pixels.min() == pixels.max():
            raise ValueError(f"the image is constant (every pixel is {pixels.flat[0]}); there is nothing to classify")
        scaled, (scale_r, scale_c) = to_mias_scale(norm, spacing_mm)
        chosen = select_patches(scaled, selection) or select_patches(scaled, "all")
        probs = yield from iter_predict_patches(self.model, extract(scaled, chosen), self.device)
        classes = probs.argmax(1)
        verdict, image_probs = image_verdict(probs, self.threshold)
        label_image = np.zeros(pixels.shape, np.uint8)
        patches = []
        for patch, cls, p in zip(chosen, classes, probs, strict=True):
            top, left = int(round(patch.row / scale_r)), int(round(patch.col / scale_c))
            bottom = int(round((patch.row + PATCH) / scale_r))
            right = int(round((patch.col + PATCH) / scale_c))
            label_image[top:bottom, left:right] = cls + 1
            patches.append({"row": top, "col": left, "label": CLASS_NAMES[cls],
                            "probabilities": {name: float(v) for name, v in zip(CLASS_NAMES, p, strict=True)}})
        return Classification(CLASS_NAMES[verdict],
                              {name: float(v) for name, v in zip(CLASS_NAMES, image_probs, strict=True)},
                              patches, label_image)

    def classify(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
                 selection: str = "breast", progress: Progress | None = None,
                 stop: StopFlag | None = None) -> Classification:
        """Classify a 2-D image's patches and derive the image verdict (see `iter_classify`)."""
        return drive(self.iter_classify(pixels, spacing_mm, selection), progress, stop)

    def classify_file(self, path: str | Path, **kwargs) -> Classification:
        """Read an image file and classify it."""
        from .images import read_single_image

        image: ImageData = read_single_image(path)
        try:
            return self.classify(image.pixels, image.spacing_mm, **kwargs)
        except ValueError as err:
            raise MammoInputError(path, str(err)) from None
