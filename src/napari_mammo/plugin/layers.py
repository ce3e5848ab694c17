"""Layer data tuples for images and lesions, aligned through a shared scale."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_mammo.io.image_data import ImageData
from napari_mammo.plugin.companions import TRUTH_KIND, Key
from napari_mammo.records import ABNORMALITIES, Lesion, Mammogram

SEVERITY_COLOURS = {"B": "#ffd700", "M": "#ff3030", "": "#00c0ff"}
"""Edge colours of lesion circles: benign gold, malignant red, unknown cyan."""


def box_corners(box, index: tuple = ()) -> np.ndarray:
    """Four corners of a (row_min, col_min, row_max, col_max) box, slice coordinates first on a stack."""
    r0, c0, r1, c1 = box
    corners = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float)
    return np.hstack([np.tile(np.asarray(index, float), (4, 1)), corners]) if index else corners


def shape_box(vertices) -> tuple[float, float, float, float]:
    """The (row_min, col_min, row_max, col_max) box of a shape's last two coordinates."""
    corners = np.asarray(vertices, float)[:, -2:]
    return (*map(float, corners.min(axis=0)), *map(float, corners.max(axis=0)))


def shape_lesion(vertices, abnormality: str, severity: str) -> Lesion:
    """The lesion circle a shape (ellipse or rectangle) stands for, its class and severity made valid.

    The circle is centred in the shape's box with half its longer side as radius (at least
    1 pixel); a severity such as 'malignant' counts as M, anything else not M as B, and a
    class MIAS does not know (or NORM, which has no lesion) as MISC.
    """
    r0, c0, r1, c1 = shape_box(vertices)
    if severity not in ("B", "M"):
        severity = "M" if severity.lower().startswith("m") else "B"
    if abnormality not in ABNORMALITIES or abnormality == "NORM":
        abnormality = "MISC"
    return Lesion(abnormality, severity, (r0 + r1) / 2, (c0 + c1) / 2, max(max(r1 - r0, c1 - c0) / 2, 1.0))


def feature_text(features, name: str, index: int, default: str) -> str:
    """A feature value as text, or the default when the column is absent or the value empty."""
    if features is None or name not in features:
        return default
    value = features[name][index] if not hasattr(features[name], "iloc") else features[name].iloc[index]
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def image_layer(image: ImageData, name: str | None = None) -> tuple:
    """An Image layer tuple with the exact pixels, a mm scale when the pixel size is known."""
    pixels = image.pixels
    spacing = image.spacing_mm
    kwargs: dict = {
        "name": name or image.source.stem,
        "colormap": "gray",
        "metadata": {Key.SOURCE: str(image.source), Key.UNIT: "mm" if spacing else "pixel", **image.metadata},
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
        "metadata": {Key.KIND: TRUTH_KIND, Key.REFS: [r.ref for r in records], Key.HEIGHTS: heights or {}},
    }
    if scale:
        kwargs["scale"] = ((1.0,) if stacked else ()) + tuple(scale)
        kwargs["units"] = (("pixel",) if stacked else ()) + ("mm", "mm")
    return shapes, kwargs, "shapes"
