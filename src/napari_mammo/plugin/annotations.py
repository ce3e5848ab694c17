"""Ground truth drawn in napari (image layers with lesion Shapes) written out as a MIAS folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_mammo.io.mias import INFO_NAME, merge_into_info, write_info
from napari_mammo.io.pgm import read_pgm, write_pgm
from napari_mammo.plugin.companions import LESIONS, Key, companion
from napari_mammo.plugin.layers import feature_text, shape_lesion
from napari_mammo.records import Lesion, Mammogram, is_mias_ref

if TYPE_CHECKING:
    import napari

def pgm_pixels(pixels) -> np.ndarray:
    """Pixels as PGM can hold them: 8 and 16-bit integers kept, other types scaled to uint8."""
    pixels = np.asarray(pixels)
    if pixels.dtype in (np.uint8, np.uint16):
        return pixels
    low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
    return np.round((np.nan_to_num(pixels, nan=low) - low) / ((high - low) or 1) * 255).astype(np.uint8)


def shapes_to_lesions(layer, shape_indices: list[int] | None = None) -> list[Lesion]:
    """Circles of a Shapes layer (ellipses or rectangles) as lesions, in the layer's data pixels."""
    features = layer.features
    return [shape_lesion(layer.data[i], feature_text(features, "class", i, "MISC"),
                         feature_text(features, "severity", i, "B"))
            for i in (shape_indices if shape_indices is not None else range(len(layer.data)))]


def export_layers_as_mias(viewer: napari.Viewer, folder: Path) -> list[Mammogram]:
    """Write each greyscale image layer (every slice of a stack) and the Shapes layer named
    '<image> lesions' as PGM + Info.txt."""
    import napari

    images = [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image) and layer.ndim in (2, 3)
              and not layer.rgb]
    if not images:
        raise ValueError("no greyscale image layer (2-D, or a stack of 2-D slices) is open")
    shapes = {layer.name: layer for layer in viewer.layers if isinstance(layer, napari.layers.Shapes)}
    records, heights = [], {}
    for number, image in enumerate(images, start=1):
        for ref, pixels, lesions in annotated_planes(image, shapes.get(companion(image.name, LESIONS)), True, number):
            path = folder / f"{ref}.pgm"
            write_pgm(path, pixels)
            records.append(Mammogram(ref, image.metadata.get(Key.TISSUE, "F") or "F", lesions, path))
            heights[ref] = pixels.shape[0]
    write_info(folder / INFO_NAME, records, height=heights, overwrite=True)
    return records


def annotated_planes(image_layer, shapes_layer, every_slice: bool = False,
                     number: int = 1) -> list[tuple[str, np.ndarray, tuple[Lesion, ...]]]:
    """(reference, pixels, lesions) of the image, or of each slice of a stack that was detected or
    has boxes (every slice with `every_slice`); a slice without shapes is normal.

    References are the layer's name or the stack's MIAS names when they look like 'mdb001';
    otherwise 'img' and the layer's `number` (and the slice's).
    """
    from napari_mammo.plugin.slices import on_slice

    if image_layer.rgb or image_layer.ndim not in (2, 3):
        raise ValueError(f"{image_layer.name!r} is not a 2-D greyscale image or a stack of them")
    if image_layer.ndim == 2:
        ref = image_layer.name if is_mias_ref(image_layer.name) else f"img{number:03d}"
        lesions = tuple(shapes_to_lesions(shapes_layer)) if shapes_layer is not None else ()
        return [(ref, pgm_pixels(image_layer.data), lesions)]
    refs = image_layer.metadata.get(Key.REFS) or []
    sizes = image_layer.metadata.get(Key.SIZES) or {}
    shapes = [np.asarray(v) for v in shapes_layer.data] if shapes_layer is not None else []
    count = image_layer.data.shape[0]
    if every_slice:
        slices = set(range(count))
    else:
        slices = {int(k[0]) for k in shapes_layer.metadata.get(Key.SLICES, []) if k}
        slices |= {int(round(v[0, 0])) for v in shapes if v.shape[1] == 3}
    planes = []
    for k in sorted(k for k in slices if 0 <= k < count):
        ref = refs[k] if k < len(refs) and is_mias_ref(refs[k]) else f"img{number:02d}{k + 1:03d}"
        height, width = sizes.get(ref, image_layer.data.shape[1:])
        on_k = [i for i, v in enumerate(shapes) if v.shape[1] == 3 and on_slice(v, (k,))]
        lesions = tuple(shapes_to_lesions(shapes_layer, on_k)) if on_k else ()
        planes.append((ref, pgm_pixels(image_layer.data[k][:height, :width]), lesions))
    return planes


def save_image_annotations(image_layer, shapes_layer, folder: Path) -> Path:
    """Add or update the image (or each annotated slice of a stack) as PGM + lesions in a MIAS-style folder.

    Other images' rows in its Info.txt are kept; these images' rows are replaced. A PGM of
    the same name holding other pixels is never replaced. Every write is atomic.
    """
    planes = annotated_planes(image_layer, shapes_layer)
    if not planes:
        raise ValueError(f"nothing to save: run Detect on {image_layer.name!r} or draw boxes first")
    for ref, pixels, _ in planes:
        path = folder / f"{ref}.pgm"
        if path.exists() and not np.array_equal(read_pgm(path), pixels):
            raise ValueError(f"{path}: a different image of this name is already there; choose another "
                             f"folder or rename the layer")
    folder.mkdir(parents=True, exist_ok=True)
    tissue = image_layer.metadata.get(Key.TISSUE, "F") or "F"
    records, heights = [], {}
    for ref, pixels, lesions in planes:
        path = folder / f"{ref}.pgm"
        if not path.exists():
            write_pgm(path, pixels)
        records.append(Mammogram(ref, tissue, lesions, path))
        heights[ref] = pixels.shape[0]
    return merge_into_info(folder, records, heights)
