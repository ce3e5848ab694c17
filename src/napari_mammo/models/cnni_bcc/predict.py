"""CNNI-BCC inference: patch probabilities, the image verdict, and a loaded classifier for whole images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_mammo.data.patches import PATCH, extract, select_patches
from napari_mammo.data.preprocess import model_pixels, normalise, to_mias_scale
from napari_mammo.engine.progress import Progress, StopFlag, progress_event, run_to_end
from napari_mammo.errors import MammoInputError
from napari_mammo.io.image_data import ImageData
from napari_mammo.io.images import read_image
from napari_mammo.records import CLASS_NAMES, Mammogram

MODEL_NAME = "cnni-bcc"
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
            yield progress_event("classifying", step + 1, steps)
    return out


def predict_patches(model, patches: np.ndarray, device: str, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, 3) of patches, in batches."""
    return run_to_end(iter_predict_patches(model, patches, device, batch_size))


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
    patch_image: np.ndarray | None = None
    """k + 1 on the pixels of patch k (0 outside every patch): which patch a pixel belongs to."""
    model = "cnni-bcc"
    """The model that gave it (a class constant, not a field)."""

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
        from napari_mammo.engine.runtime import pick_device
        from napari_mammo.engine.weights import load_model
        from napari_mammo.models.cnni_bcc.network import CNNIBCC

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
        scaled, (scale_r, scale_c) = to_mias_scale(model_pixels(pixels, "classify"), spacing_mm)
        chosen = select_patches(scaled, selection) or select_patches(scaled, "all")
        probs = yield from iter_predict_patches(self.model, extract(scaled, chosen), self.device)
        classes = probs.argmax(1)
        verdict, image_probs = image_verdict(probs, self.threshold)
        label_image = np.zeros(pixels.shape, np.uint8)
        patch_image = np.zeros(pixels.shape, np.int32)
        patches = []
        for number, (patch, cls, p) in enumerate(zip(chosen, classes, probs, strict=True)):
            top, left = int(round(patch.row / scale_r)), int(round(patch.col / scale_c))
            bottom = int(round((patch.row + PATCH) / scale_r))
            right = int(round((patch.col + PATCH) / scale_c))
            label_image[top:bottom, left:right] = cls + 1
            patch_image[top:bottom, left:right] = number + 1
            patches.append({"row": top, "col": left, "label": CLASS_NAMES[cls],
                            "probabilities": {name: float(v) for name, v in zip(CLASS_NAMES, p, strict=True)}})
        return Classification(CLASS_NAMES[verdict],
                              {name: float(v) for name, v in zip(CLASS_NAMES, image_probs, strict=True)},
                              patches, label_image, patch_image)

    def classify(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
                 selection: str = "breast", progress: Progress | None = None,
                 stop: StopFlag | None = None) -> Classification:
        """Classify a 2-D image's patches and derive the image verdict (see `iter_classify`)."""
        return run_to_end(self.iter_classify(pixels, spacing_mm, selection), progress, stop)

    def classify_file(self, path: str | Path, **kwargs) -> Classification:
        """Read an image file and classify it."""
        from napari_mammo.io.images import read_single_image

        image: ImageData = read_single_image(path)
        try:
            return self.classify(image.pixels, image.spacing_mm, **kwargs)
        except ValueError as err:
            raise MammoInputError(path, str(err)) from None
