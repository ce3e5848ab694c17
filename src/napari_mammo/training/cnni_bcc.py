"""Training CNNI-BCC: patch data sets with labels, class-balanced batches, the training run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from napari_mammo.data.augment import SEED_TRANSFORMS, apply_image
from napari_mammo.data.patches import PATCH, extract, patch_labels, select_patches
from napari_mammo.data.preprocess import normalise
from napari_mammo.engine.progress import Progress, StopFlag, progress_event
from napari_mammo.io.images import read_image
from napari_mammo.models.cnni_bcc.predict import (
    INPUT_MEAN,
    INPUT_STD,
    MODEL_NAME,
    image_scores,
    model_input,
    predict_patches,
)
from napari_mammo.records import CLASS_NAMES, Mammogram
from napari_mammo.training.loop import TrainConfig, TrainResult


@dataclass
class PatchSet:
    """Patches (N, 128, 128) float32, their class indices and the image each came from."""

    patches: np.ndarray
    labels: np.ndarray
    owners: list[str]


def build_patch_set(records: Sequence[Mammogram], selection: str = "middle", labelling: str = "lesion",
                    progress: Progress | None = None, crops_per_lesion: int = 0, seed: int = 0) -> PatchSet:
    """Read each record's image and cut its grid patches with labels, plus jittered lesion crops if asked."""
    from napari_mammo.data.patches import lesion_crops

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
            progress(progress_event("reading", index + 1, len(records)))
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
    """Apply one of the poster's transforms (identity, 90°, 180°, 270°, vertical flip) to each patch."""
    choice = rng.integers(len(SEED_TRANSFORMS), size=len(batch))
    out = np.empty_like(batch)
    for k, transform in enumerate(SEED_TRANSFORMS):
        mask = choice == k
        if mask.any():
            out[mask] = apply_image(batch[mask], transform)
    return out


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
                     progress: Progress | None = None, stop: StopFlag | None = None,
                     resume: bool = False) -> TrainResult:
    """Train CNNI-BCC on the train part of a pair-aware split; keep the weights best on validation.

    The test part of the split (20% of the women, seeded) is never used here. Batches draw
    the three classes equally (see `balanced_batches`), each patch under a random seed
    augmentation. Returns when
    the epochs are done, when `stop()` turns true, or on KeyboardInterrupt; the file at
    `out` then holds the best weights so far. Runs under torchrun (DDP) as well.
    """
    import torch
    import torch.nn.functional as F

    from napari_mammo.engine.weights import save_weights
    from napari_mammo.models.cnni_bcc.network import CNNIBCC
    from napari_mammo.training import loop

    config = config or ClassifierConfig()
    run = loop.start_training(config.device, config.seed, progress)
    device = run.device
    parts, val_records = loop.training_split(records, config.split_seed, config.hold_out_test)
    train = build_patch_set(parts["train"], config.patches, config.labelling, run.report,
                            config.crops_per_lesion, config.seed)
    val = build_patch_set(val_records, config.patches, config.labelling)

    model = CNNIBCC(fast=True).to(device)
    net = loop.distribute(model, run)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed + 1000 * run.dist.rank)
    steps = loop.steps_per_epoch(len(train.labels), config.batch_size, run, config.max_steps_per_epoch)
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
        return loop.optimise(F.cross_entropy(net(batch), torch.from_numpy(train.labels[chosen]).to(device)),
                        optimiser, scheduler)

    def validate(epoch: int, train_loss: float) -> None:
        """Score on the validation images: image-level normal-vs-abnormal ROC AUC (what the
        verdict is judged on), with the balanced patch accuracy breaking ties."""
        from napari_mammo.evaluation.metrics import roc_auc

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
        loop.keep_if_best(run, entry, score, lambda: save_weights(out, model.state_dict(), MODEL_NAME,
                                                       {**meta, "history": run.result.history}))

    checkpoint = loop.make_checkpoint(out, run, model, optimiser, scheduler, rng, config, resume)
    return loop.run_epochs(run, config.epochs, steps, start_epoch, step, validate, stop, checkpoint)
