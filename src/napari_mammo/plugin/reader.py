"""npe2 reader contributions: MIAS images with their lesions, MIAS folders, DICOM, PNG/TIFF."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_mammo.io.image_data import ImageData
from napari_mammo.io.images import DICOM_SUFFIXES, PGM_SUFFIXES, RASTER_SUFFIXES, read_image
from napari_mammo.io.mias import INFO_NAME, find_info, read_folder, record_for_image
from napari_mammo.plugin.companions import LESIONS, Key, companion
from napari_mammo.plugin.layers import image_layer, lesion_shapes

LayerData = list[tuple]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return a reader for mammogram files or MIAS folders, or None for anything else."""
    paths = [path] if isinstance(path, str) else list(path)
    if paths and all(_format_of(Path(p)) for p in paths):
        return read_paths
    return None


def _format_of(path: Path) -> str | None:
    """Which of our formats a path is: 'folder', 'image', or None."""
    if path.is_dir():
        return "folder" if find_info(path) is not None else None
    if path.name.lower() == INFO_NAME.lower():
        return "folder"
    if path.suffix.lower() in (*PGM_SUFFIXES, *DICOM_SUFFIXES, *RASTER_SUFFIXES):
        return "image"
    return None


def read_paths(path: str | list[str]) -> LayerData:
    """Read each path into layer data tuples."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: LayerData = []
    for item in map(Path, paths):
        layers.extend(read_folder_layers(item) if _format_of(item) == "folder" else read_image_layers(item))
    return layers


def read_image_layers(path: Path) -> LayerData:
    """An image, and its lesion circles when an Info.txt beside it lists it."""
    image = read_image(path)
    layers = [image_layer(image)]
    if path.suffix.lower() in PGM_SUFFIXES:
        record = record_for_image(path)
        if record is not None:
            record_meta = {Key.REF: record.ref, Key.LABEL: record.label, Key.TISSUE: record.tissue}
            layers[0][1]["metadata"].update(record_meta)
            shapes = lesion_shapes([record], image.spacing_mm, companion(path.stem, LESIONS),
                                   heights={record.ref: int(image.pixels.shape[0])})
            if shapes is not None:
                layers.append(shapes)
    return layers


def read_folder_layers(path: Path) -> LayerData:
    """A MIAS folder as one image stack (a slice per listed image) and its lesion circles."""
    folder = path if path.is_dir() else path.parent
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = read_folder(folder)
    for warning in caught:
        warnings.warn(str(warning.message), stacklevel=2)
    if not records:
        from napari_mammo.errors import MammoInputError

        raise MammoInputError(folder, "none of the images its Info.txt lists are present")
    images = [read_image(r.path) for r in records]
    height = max(i.pixels.shape[0] for i in images)
    width = max(i.pixels.shape[1] for i in images)
    # images of other sizes are padded at the bottom/right (never cropped), so lesions stay put
    stack = np.stack([np.pad(i.pixels, ((0, height - i.pixels.shape[0]), (0, width - i.pixels.shape[1])))
                      for i in images])
    spacing = images[0].spacing_mm
    stacked = ImageData(stack, spacing, folder, {"format": "MIAS folder"})
    first = image_layer(stacked, name=folder.name)
    sizes = {r.ref: list(i.pixels.shape) for r, i in zip(records, images, strict=True)}
    first[1]["metadata"].update({Key.REFS: [r.ref for r in records], Key.LABELS: [r.label for r in records],
                                 Key.SIZES: sizes})
    layers = [first]
    heights = {r.ref: int(i.pixels.shape[0]) for r, i in zip(records, images, strict=True)}
    shapes = lesion_shapes(records, spacing, companion(folder.name, LESIONS), stacked=True, heights=heights)
    if shapes is not None:
        layers.append(shapes)
    return layers
