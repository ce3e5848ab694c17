"""Grey levels and geometry as the models take them: [0, 1] pixels, 0.2 mm pixels, a square canvas."""

from __future__ import annotations

import numpy as np

from napari_mammo.limits import MIN_SIDE, check_model_shape
from napari_mammo.records import MIAS_PIXEL_MM


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


def model_pixels(pixels: np.ndarray, task: str) -> np.ndarray:
    """A 2-D image as [0, 1] float32 for a model; ValueError for one that is not 2-D, empty or constant."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2:
        raise ValueError(f"expected a 2-D greyscale image, got shape {pixels.shape}")
    if pixels.size == 0:
        raise ValueError("the image is empty")
    norm = normalise(pixels)
    if pixels.min() == pixels.max():
        raise ValueError(f"the image is constant (every pixel is {pixels.flat[0]}); there is nothing to {task}")
    return norm


def to_mias_scale(pixels: np.ndarray, spacing_mm: tuple[float, float] | None,
                  min_side: int = MIN_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Resample to mini-MIAS' 0.2 mm pixels when the pixel size is known.

    Returns the image and its (row, column) scale: resampled pixels per input pixel along
    each axis, exact for the rounded output shape, so positions map back without drift.
    An image outside the models' sizes (`limits.check_model_shape`) is refused first.
    """
    same = not spacing_mm or abs(spacing_mm[0] - MIAS_PIXEL_MM) < 1e-6 and abs(spacing_mm[1] - MIAS_PIXEL_MM) < 1e-6
    shape = pixels.shape[:2] if same else (max(1, round(pixels.shape[0] * spacing_mm[0] / MIAS_PIXEL_MM)),
                                           max(1, round(pixels.shape[1] * spacing_mm[1] / MIAS_PIXEL_MM)))
    check_model_shape(*shape, min_side)  # before anything is allocated
    if same:
        return pixels, np.ones(2)
    from skimage.transform import resize

    resized = resize(pixels.astype(np.float32), shape, order=1, anti_aliasing=True, preserve_range=True)
    return resized, np.array(shape, float) / np.array(pixels.shape[:2], float)


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
