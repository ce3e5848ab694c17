"""The poster's augmentation (rotation by 90°, 180°, 270° and vertical flip) of images and positions.

Positions are pixel-centre coordinates (row, col), row 0 at the top. The same transform
applied to an image, to points and to boxes keeps them aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_mammo.records import Lesion, Mammogram


@dataclass(frozen=True)
class Transform:
    """Rotate counter-clockwise by `quarter_turns`×90°, then flip vertically if `flip`."""

    quarter_turns: int = 0
    flip: bool = False


SEED_TRANSFORMS: tuple[Transform, ...] = (
    Transform(0), Transform(1), Transform(2), Transform(3), Transform(0, flip=True),
)
"""The poster's augmentation: the original, three rotations and a vertical flip."""

ALL_TRANSFORMS: tuple[Transform, ...] = tuple(Transform(k, f) for f in (False, True) for k in range(4))
"""The eight symmetries of the square (the dihedral group)."""


def apply_image(image: np.ndarray, t: Transform) -> np.ndarray:
    """Transform the last two axes of an image (or a stack of patches)."""
    out = np.rot90(image, t.quarter_turns % 4, axes=(-2, -1))
    if t.flip:
        out = np.flip(out, axis=-2)
    return np.ascontiguousarray(out)


def apply_points(points: np.ndarray, shape: tuple[int, int], t: Transform) -> np.ndarray:
    """Transform (N, 2) row/col points of an image of `shape` (height, width)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2).copy()
    height, width = shape
    for _ in range(t.quarter_turns % 4):
        pts = np.stack([width - 1 - pts[:, 1], pts[:, 0]], axis=1)
        height, width = width, height
    if t.flip:
        pts[:, 0] = height - 1 - pts[:, 0]
    return pts


def apply_boxes(boxes: np.ndarray, shape: tuple[int, int], t: Transform) -> np.ndarray:
    """Transform (N, 4) boxes (row_min, col_min, row_max, col_max); the result is sorted again."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    a = apply_points(boxes[:, :2], shape, t)
    b = apply_points(boxes[:, 2:], shape, t)
    return np.concatenate([np.minimum(a, b), np.maximum(a, b)], axis=1)


def transformed_shape(shape: tuple[int, int], t: Transform) -> tuple[int, int]:
    """Height and width after the transform."""
    return (shape[1], shape[0]) if t.quarter_turns % 2 else (shape[0], shape[1])


def apply_record(record: Mammogram, shape: tuple[int, int], t: Transform) -> Mammogram:
    """Move a record's lesion centres with the image; radii and unlocated findings stay."""
    lesions = []
    for lesion in record.lesions:
        if lesion.located:
            (row, col), = apply_points(np.array([[lesion.row, lesion.col]]), shape, t)
            lesion = Lesion(lesion.abnormality, lesion.severity, float(row), float(col), lesion.radius)
        lesions.append(lesion)
    return record.with_lesions(tuple(lesions))
