"""The poster's patch sampling and patch labels, on images of any size.

An image is cut into a grid of `size`×`size` patches. An image whose sides are not a
multiple of `size` is padded with zeros at the bottom and right (never cropped, never
resized), so pixel coordinates and lesion positions stay where they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from napari_mammo.records import CLASS_NAMES, Mammogram

PATCH = 128
Selection = Literal["middle", "all", "breast"]
Labelling = Literal["lesion", "image"]


@dataclass(frozen=True)
class Patch:
    """Position of a patch: its top-left pixel and its grid cell."""

    row: int
    col: int
    grid_row: int
    grid_col: int


def pad_to_multiple(image: np.ndarray, size: int = PATCH) -> np.ndarray:
    """Pad the last two axes with zeros at the bottom/right up to a multiple of `size`."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % size, (-width) % size
    if not pad_h and not pad_w:
        return image
    widths = [(0, 0)] * (image.ndim - 2) + [(0, pad_h), (0, pad_w)]
    return np.pad(image, widths)


def grid_shape(shape: tuple[int, ...], size: int = PATCH) -> tuple[int, int]:
    """Rows and columns of the patch grid over an image of this shape (after padding)."""
    height, width = shape[-2:]
    return -(-height // size), -(-width // size)


def breast_mask(image: np.ndarray) -> np.ndarray:
    """Foreground (breast) mask: Otsu threshold of a smoothed image, largest region, holes filled."""
    from scipy import ndimage
    from skimage.filters import gaussian, threshold_otsu

    smooth = gaussian(image.astype(np.float32), sigma=4, preserve_range=True)
    if float(smooth.max()) == float(smooth.min()):
        return np.zeros(image.shape, dtype=bool)
    mask = smooth > threshold_otsu(smooth)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum(mask, labels, range(1, count + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(mask)


def select_patches(image: np.ndarray, selection: Selection = "middle", size: int = PATCH,
                   min_breast: float = 0.5) -> list[Patch]:
    """Patches of the grid: the poster's middle half of the columns, all, or those mostly in the breast."""
    rows, cols = grid_shape(image.shape, size)
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    if selection == "middle":
        first = cols // 4
        keep = range(first, first + max(cols - 2 * first, 1))
        cells = [(r, c) for r, c in cells if c in keep]
    elif selection == "breast":
        mask = pad_to_multiple(breast_mask(image), size)
        cover = mask.reshape(rows, size, cols, size).mean(axis=(1, 3))
        cells = [(r, c) for r, c in cells if cover[r, c] >= min_breast]
    elif selection != "all":
        raise ValueError(f"unknown patch selection {selection!r}; use 'middle', 'all' or 'breast'")
    return [Patch(r * size, c * size, r, c) for r, c in cells]


def extract(image: np.ndarray, patches: list[Patch], size: int = PATCH) -> np.ndarray:
    """Stack the pixels of the given patches, shape (N, size, size)."""
    padded = pad_to_multiple(image, size)
    out = np.empty((len(patches), size, size), dtype=padded.dtype)
    for i, patch in enumerate(patches):
        out[i] = padded[patch.row : patch.row + size, patch.col : patch.col + size]
    return out


def disc_overlap(row: float, col: float, radius: float, top: int, left: int, size: int = PATCH,
                 samples: int = 16) -> float:
    """Fraction of a patch covered by a disc, estimated on a samples×samples grid of points."""
    offsets = (np.arange(samples) + 0.5) * size / samples - 0.5
    rr, cc = np.meshgrid(top + offsets, left + offsets, indexing="ij")
    inside = (rr - row) ** 2 + (cc - col) ** 2 <= radius**2
    if inside.any():
        return float(inside.mean())
    # a small disc can fall between the sample points: test the nearest point of the patch
    near_r = min(max(row, top - 0.5), top + size - 0.5)
    near_c = min(max(col, left - 0.5), left + size - 0.5)
    return 1e-6 if (near_r - row) ** 2 + (near_c - col) ** 2 <= radius**2 else 0.0


def patch_labels(record: Mammogram, patches: list[Patch], labelling: Labelling = "lesion",
                 size: int = PATCH, min_overlap: float = 0.0) -> np.ndarray:
    """Class index of each patch (0 normal, 1 benign, 2 malignant).

    'image' gives every patch the image's label (the poster's second option). 'lesion'
    gives a patch the worst severity of the lesion circles that cover more than
    `min_overlap` of it, and normal otherwise; a finding with no location (MIAS's widespread
    calcifications) cannot be placed, so it labels every patch.
    """
    if labelling == "image":
        return np.full(len(patches), CLASS_NAMES.index(record.label), dtype=np.int64)
    if labelling != "lesion":
        raise ValueError(f"unknown labelling {labelling!r}; use 'lesion' or 'image'")
    labels = np.zeros(len(patches), dtype=np.int64)
    for lesion in record.lesions:
        cls = CLASS_NAMES.index(lesion.label)
        for i, patch in enumerate(patches):
            if labels[i] >= cls:
                continue
            if not lesion.located or disc_overlap(lesion.row, lesion.col, lesion.radius,
                                                  patch.row, patch.col, size) > min_overlap:
                labels[i] = cls
    return labels


def lesion_crops(record: Mammogram, image: np.ndarray, per_lesion: int, rng: np.random.Generator,
                 size: int = PATCH, jitter: int = PATCH // 4) -> tuple[np.ndarray, np.ndarray]:
    """Extra training patches around each located lesion: (N, size, size) crops and their classes.

    Each crop holds the lesion centre within `jitter` pixels of its own centre, so a lesion
    is seen whole and at many positions instead of cut by the fixed grid.
    """
    padded = pad_to_multiple(image, size)
    crops, labels = [], []
    for lesion in record.lesions:
        if not lesion.located:
            continue
        for _ in range(per_lesion):
            dr, dc = rng.integers(-jitter, jitter + 1, size=2)
            top = int(np.clip(round(lesion.row) - size // 2 + dr, 0, padded.shape[0] - size))
            left = int(np.clip(round(lesion.col) - size // 2 + dc, 0, padded.shape[1] - size))
            crops.append(padded[top : top + size, left : left + size])
            labels.append(CLASS_NAMES.index(lesion.label))
    if not crops:
        return np.zeros((0, size, size), image.dtype), np.zeros(0, np.int64)
    return np.stack(crops), np.array(labels, np.int64)
