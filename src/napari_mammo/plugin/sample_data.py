"""Sample data for napari's File menu: a synthetic mammogram with its lesions."""

from __future__ import annotations

from pathlib import Path

from napari_mammo.io.image_data import ImageData
from napari_mammo.io.synthetic import sample_mammogram
from napari_mammo.plugin.layers import image_layer, lesion_shapes
from napari_mammo.records import MIAS_PIXEL_MM


def synthetic_sample() -> list[tuple]:
    """A synthetic malignant mammogram (not patient data) and its ground-truth circles."""
    pixels, record = sample_mammogram()
    spacing = (MIAS_PIXEL_MM, MIAS_PIXEL_MM)
    image = ImageData(pixels, spacing, Path("synthetic"), {"format": "synthetic", "label": record.label})
    layers = [image_layer(image, name="synthetic mammogram")]
    shapes = lesion_shapes([record], spacing, "synthetic mammogram lesions")  # the "<image> lesions" rule
    if shapes is not None:
        layers.append(shapes)
    return layers
