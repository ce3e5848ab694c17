"""Reading mammograms of any supported format into greyscale arrays with a pixel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mammo.errors import MammoInputError
from napari_mammo.io.image_data import ImageData
from napari_mammo.io.pgm import read_pgm
from napari_mammo.limits import check_pixels
from napari_mammo.records import MIAS_PIXEL_MM

PGM_SUFFIXES = (".pgm",)
DICOM_SUFFIXES = (".dcm", ".dicom")
RASTER_SUFFIXES = (".png", ".tif", ".tiff")




def is_dicom(path: Path) -> bool:
    """Whether a file has a DICOM suffix or the 'DICM' preamble marker."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_image(path: str | Path) -> ImageData:
    """Read a PGM, DICOM, PNG or TIFF mammogram; raise MammoInputError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise MammoInputError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix in PGM_SUFFIXES:
        return ImageData(read_pgm(path), (MIAS_PIXEL_MM, MIAS_PIXEL_MM), path, {"format": "PGM"})
    if is_dicom(path):
        from napari_mammo.io.dicom import read_dicom

        return read_dicom(path)
    if suffix in RASTER_SUFFIXES:
        return ImageData(read_raster(path), None, path, {"format": suffix.lstrip(".").upper()})
    raise MammoInputError(path, f"unsupported file type {suffix or '(no suffix)'}; expected PGM, DICOM, PNG or TIFF")


def _read_png(path: Path) -> np.ndarray:
    """A PNG's pixels (colour channels last), its declared size checked before it is decoded."""
    import skimage.io

    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":  # width and height lead the IHDR chunk
        check_pixels(path, int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big"))
    return np.asarray(skimage.io.imread(path))


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF's first series with colour samples last; pages of a greyscale stack stay first."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        if len(series.shape) >= 2:
            check_pixels(path, int(series.shape[-2]), int(series.shape[-1]),
                         int(np.prod(series.shape[:-2], dtype=np.int64)))
        pixels = series.asarray()
        if "S" in series.axes:  # colour samples, wherever the file keeps them
            pixels = np.moveaxis(pixels, series.axes.index("S"), -1)
    return pixels


def read_raster(path: Path) -> np.ndarray:
    """Read a PNG or TIFF as greyscale (a multi-page TIFF as a stack); a colour image is refused."""
    if path.stat().st_size == 0:
        raise MammoInputError(path, "is an empty file")
    try:
        pixels = _read_tiff(path) if path.suffix.lower() in (".tif", ".tiff") else _read_png(path)
    except MammoInputError:
        raise
    except Exception as err:  # the imaging libraries raise many kinds for corrupt files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MammoInputError(path, f"cannot be decoded as {path.suffix.lstrip('.').upper()} ({first})") from err
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        colour = pixels[..., :3]
        if not (np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2])):
            raise MammoInputError(path, f"is a colour (RGB) image of shape {pixels.shape}; mammograms are greyscale")
        pixels = colour[..., 0]
    if pixels.ndim not in (2, 3):  # a multi-page TIFF is a stack of greyscale slices
        raise MammoInputError(path, f"expected a 2-D greyscale image or a stack of them, got shape {pixels.shape}")
    if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
        raise MammoInputError(path, "contains NaN or infinite pixel values")
    return pixels


def read_single_image(path: str | Path) -> ImageData:
    """Read one 2-D mammogram; a stack (multi-page TIFF) is refused with what to do instead."""
    image = read_image(path)
    if image.pixels.ndim != 2:
        raise MammoInputError(path, f"is a stack of {image.pixels.shape[0]} slices of "
                                    f"{image.pixels.shape[1]}x{image.pixels.shape[2]}; the models take one image "
                                    "at a time (in napari, Classify and Detect can run on every slice)")
    return image
