"""Layer data tuples for images and lesions, aligned through a shared scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..images import ImageData
from ..records import Mammogram

SEVERITY_COLOURS = {"B": "#ffd700", "M": "#ff3030", "": "#00c0ff"}
"""Edge colours of lesion circles: benign gold, malignant red, unknown cyan."""


def box_corners(box, index: tuple = ()) -> np.ndarray:
    """Four corners of a (row_min, col_min, row_max, col_max) box, slice coordinates first on a stack."""
    r0, c0, r1, c1 = box
    corners = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    return np.hstack([np.tile(np.asarray(index, float), (4, 1)), corners]) if index else corners


def image_layer(image: ImageData, name: str | None = None) -> tuple:
    """An Image layer tuple with the exact pixels, a mm scale when the pixel size is known."""
    pixels = image.pixels
    spacing = image.spacing_mm
    kwargs: dict = {
        "name": name or image.source.stem,
        "colormap": "gray",
        "metadata": {"source": str(image.source), "unit": "mm" if spacing else "pixel", **image.metadata},
    }
    if spacing:
        kwargs["scale"] = (1.0,) * (pixels.ndim - 2) + tuple(spacing)
        kwargs["units"] = ("pixel",) * (pixels.ndim - 2) + ("mm", "mm")
    if pixels.dtype == np.uint8:
        kwargs["contrast_limits"] = (0, 255)
    elif pixels.size:
        kwargs["contrast_limits"] = (float(pixels.min()), float(pixels.max()) or 1.0)
    return pixels, kwargs, "image"


def lesion_shapes(records: Sequence[Mammogram], scale: tuple[float, float] | None,
                  name: str, stacked: bool = False, heights: dict[str, int] | None = None) -> tuple | None:
    """A Shapes layer tuple of one ellipse per located lesion (a slice index first when stacked)."""
    shapes, features = [], {"ref": [], "class": [], "severity": [], "tissue": []}
    for index, record in enumerate(records):
        for lesion in record.lesions:
            if not lesion.located:
                continue
            shapes.append(box_corners(lesion.box(), (index,) if stacked else ()))
            for key, value in (("ref", record.ref), ("class", lesion.abnormality),
                               ("severity", lesion.severity), ("tissue", record.tissue)):
                features[key].append(value)
    if not shapes:
        return None
    kwargs: dict = {
        "name": name,
        "shape_type": "ellipse",
        "features": features,
        "edge_color": [SEVERITY_COLOURS.get(s, SEVERITY_COLOURS[""]) for s in features["severity"]],
        "face_color": "transparent",
        "edge_width": 3,
        "text": {"string": "{class} {severity}", "color": "white", "size": 10, "anchor": "upper_left"},
        "metadata": {"kind": "ground truth", "refs": [r.ref for r in records], "heights": heights or {}},
    }
    if scale:
        kwargs["scale"] = ((1.0,) if stacked else ()) + tuple(scale)
        kwargs["units"] = (("pixel",) if stacked else ()) + ("mm", "mm")
    return shapes, kwargs, "shapes"
