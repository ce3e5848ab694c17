"""IDBLL inference: a loaded lesion detector that returns scored boxes in image pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_mammo.data.preprocess import normalise, to_canvas, to_mias_scale
from napari_mammo.engine.progress import Progress, StopFlag, progress_event, run_to_end
from napari_mammo.errors import MammoInputError
from napari_mammo.limits import MIN_SIDE

MODEL_NAME = "idbll"
BOX_THRESHOLD = 0.3
"""The box score shown by default, in the widgets and on the command line."""


LABELS = ("lesion",)


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
        from napari_mammo.engine.runtime import pick_device
        from napari_mammo.engine.weights import load_model
        from napari_mammo.models.idbll.network import build_idbll

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

        from napari_mammo.models.idbll.network import INPUT_SIZE

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
        yield progress_event("preparing", 1, 3)
        scaled, mias = to_mias_scale(norm, spacing_mm, 8 if roi is not None else MIN_SIDE)
        canvas, factor = to_canvas(scaled, INPUT_SIZE, upscale=roi is None)
        yield progress_event("detecting", 2, 3)
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
        yield progress_event("done", 3, 3)
        return detections

    def detect(self, pixels: np.ndarray, spacing_mm: tuple[float, float] | None = None,
               roi: tuple[int, int, int, int] | None = None, score_threshold: float = 0.05,
               progress: Progress | None = None, stop: StopFlag | None = None) -> list[Detection]:
        """Detect lesions in a 2-D image (see `iter_detect`)."""
        return run_to_end(self.iter_detect(pixels, spacing_mm, roi, score_threshold), progress, stop)

    def detect_file(self, path: str | Path, **kwargs) -> list[Detection]:
        """Read an image file and detect lesions in it."""
        from napari_mammo.io.images import read_single_image

        image = read_single_image(path)
        try:
            return self.detect(image.pixels, image.spacing_mm, **kwargs)
        except ValueError as err:
            raise MammoInputError(path, str(err)) from None
