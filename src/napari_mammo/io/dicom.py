"""Reading DICOM mammograms with pydicom: modality LUT, MONOCHROME1, pixel spacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mammo.errors import MammoInputError
from napari_mammo.io.image_data import ImageData


def _spacing(dataset) -> tuple[float, float] | None:
    """Row and column pixel spacing in mm, from PixelSpacing or ImagerPixelSpacing."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = dataset.get(keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return float(value[0]), float(value[1])
    return None


DEFLATED = "1.2.840.10008.1.2.1.99"
"""Deflated Explicit VR Little Endian: the whole data set is zlib-compressed, and inflated on reading."""


def _inflated_size(path: Path, data_start: int, limit: int) -> int:
    """How many bytes a deflated data set inflates to, counted in chunks and stopping past `limit`."""
    import zlib

    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with path.open("rb") as handle:
        handle.seek(data_start)
        while chunk := handle.read(1 << 20):
            while chunk:
                total += len(inflater.decompress(chunk, 1 << 24))
                if total > limit:
                    return total
                chunk = inflater.unconsumed_tail
    return total


def check_deflated_size(path: Path) -> None:
    """Refuse, before pydicom inflates it whole, a deflated DICOM that inflates past the pixel budget."""
    import pydicom

    from napari_mammo.limits import max_pixels

    meta = pydicom.filereader.read_file_meta_info(path)
    if str(meta.get("TransferSyntaxUID", "")) == DEFLATED:
        with path.open("rb") as handle:  # the data set starts after the preamble and the file meta group
            pydicom.filereader.read_preamble(handle, False)
            pydicom.filereader._read_file_meta_info(handle)
            start = handle.tell()
        limit = max_pixels() * 8 + (64 << 20)  # 8 bytes a pixel, and room for the other elements
        if _inflated_size(path, start, limit) > limit:
            raise MammoInputError(path, f"is deflated and inflates to more than {limit} bytes, above the pixel "
                                        "budget (set NAPARI_MAMMO_MAX_PIXELS to raise it)")


def check_declared_size(path: Path, dataset) -> None:
    """Refuse, before its pixels are decoded, a DICOM whose Rows × Columns × frames is above the pixel budget."""
    from napari_mammo.limits import check_pixels

    rows, columns = int(dataset.get("Rows", 0) or 0), int(dataset.get("Columns", 0) or 0)
    frames = int(dataset.get("NumberOfFrames", 1) or 1) * int(dataset.get("SamplesPerPixel", 1) or 1)
    check_pixels(path, rows, columns, frames)


def read_dicom(path: str | Path) -> ImageData:
    """Read a greyscale DICOM image with its modality LUT applied and MONOCHROME1 inverted."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut

    path = Path(path)
    try:
        check_deflated_size(path)
        dataset = pydicom.dcmread(path)
        check_declared_size(path, dataset)
        raw = dataset.pixel_array
    except MammoInputError:
        raise
    except InvalidDicomError as err:
        raise MammoInputError(path, f"not a valid DICOM file ({err})") from err
    except (AttributeError, KeyError, ValueError, RuntimeError, OSError) as err:
        raise MammoInputError(path, f"DICOM file has no readable pixel data ({err})") from err
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise MammoInputError(path, f"photometric interpretation {photometric} is not greyscale")
    pixels = apply_modality_lut(raw, dataset)
    if photometric == "MONOCHROME1":
        # brightness runs the other way: invert within the stored range so dense tissue is bright
        bits = int(dataset.get("BitsStored", 16))
        if "RescaleSlope" in dataset or "ModalityLUTSequence" in dataset:
            pixels = pixels.max() + pixels.min() - pixels
        else:
            signed = int(dataset.get("PixelRepresentation", 0)) == 1
            low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
            pixels = (high + low) - pixels.astype(np.int64)
    if pixels.dtype.kind == "f" and np.all(pixels == np.round(pixels)):
        pixels = pixels.astype(np.int32)
    if pixels.dtype.kind in "iu":
        pixels = _smallest_int(pixels)
    metadata = {
        "format": "DICOM",
        "photometric": photometric,
        "modality": str(dataset.get("Modality", "")),
        **film_identity(dataset),
    }
    return ImageData(np.asarray(pixels), _spacing(dataset), path, metadata)


def film_identity(dataset) -> dict[str, str]:
    """Whose film it is and which: PatientID, ImageLaterality (L/R) and ViewPosition (CC, MLO, …)."""
    return {"patient": str(dataset.get("PatientID", "")).strip(),
            "laterality": str(dataset.get("ImageLaterality", dataset.get("Laterality", ""))).strip().upper(),
            "view": str(dataset.get("ViewPosition", "")).strip().upper()}


def is_other_breast(own: dict, theirs: dict) -> bool:
    """Whether two films' identities (`film_identity`) are one patient's two breasts in the same view."""
    other_side = {"L": "R", "R": "L"}.get(str(own.get("laterality", "")))
    return bool(own.get("patient")) and other_side is not None and (
        theirs.get("patient"), theirs.get("laterality"), theirs.get("view", "")) == (
        own["patient"], other_side, own.get("view", ""))


def dicom_partner(path: str | Path) -> Path | None:
    """The same woman's other breast in the same view, among the DICOM files beside `path` (headers only)."""
    import pydicom

    path = Path(path)
    try:
        own = film_identity(pydicom.dcmread(path, stop_before_pixels=True))
    except Exception:  # not readable as DICOM: the image reader says why
        return None
    if not own["patient"] or own["laterality"] not in ("L", "R"):
        return None  # no patient or no side: no partner can be told
    for candidate in sorted(path.parent.iterdir()):
        if candidate == path or candidate.suffix.lower() not in (".dcm", ".dicom"):
            continue
        try:
            theirs = film_identity(pydicom.dcmread(candidate, stop_before_pixels=True))
        except Exception:  # a damaged neighbour is simply not the partner
            continue
        if is_other_breast(own, theirs):
            return candidate
    return None


def _smallest_int(pixels: np.ndarray) -> np.ndarray:
    """Cast integers to the smallest of uint8, uint16, int16, int32 that holds them."""
    low, high = int(pixels.min(initial=0)), int(pixels.max(initial=0))
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return pixels.astype(dtype)
    return pixels.astype(np.int64)
