"""Reading and writing PGM files (binary P5 and ASCII P2, 8 or 16 bits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_mammo.errors import MammoInputError
from napari_mammo.io.atomic import atomic_write_bytes
from napari_mammo.limits import check_pixels

_WHITESPACE = b" \t\r\n\v\f"


def _header_tokens(raw: bytes, path: Path, count: int) -> tuple[list[bytes], int]:
    """Read `count` whitespace-separated header tokens after the magic, skipping comments."""
    tokens: list[bytes] = []
    pos = 2
    while len(tokens) < count:
        while pos < len(raw) and raw[pos] in _WHITESPACE:
            pos += 1
        if pos >= len(raw):
            raise MammoInputError(path, "truncated PGM header (file ends before width, height and maxval)")
        if raw[pos : pos + 1] == b"#":
            end = raw.find(b"\n", pos)
            pos = len(raw) if end < 0 else end + 1
            continue
        start = pos
        while pos < len(raw) and raw[pos] not in _WHITESPACE and raw[pos : pos + 1] != b"#":
            pos += 1
        tokens.append(raw[start:pos])
    # exactly one whitespace byte separates maxval from the raster
    return tokens, pos + 1


def read_pgm(path: str | Path) -> np.ndarray:
    """Read a PGM file as a 2-D uint8 (maxval < 256) or uint16 array, exactly as stored."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise MammoInputError(path, f"cannot be read ({err.strerror or err})") from err
    magic = raw[:2]
    if magic not in (b"P5", b"P2"):
        raise MammoInputError(path, f"not a greyscale PGM file (starts with {magic!r}, expected b'P5' or b'P2')")
    tokens, start = _header_tokens(raw, path, 3)
    try:
        width, height, maxval = (int(t) for t in tokens)
    except ValueError:
        raise MammoInputError(path, f"corrupt PGM header: {b' '.join(tokens)!r} is not width height maxval") from None
    if width <= 0 or height <= 0 or not 0 < maxval < 65536:
        raise MammoInputError(path, f"corrupt PGM header: width {width}, height {height}, maxval {maxval}")
    check_pixels(path, height, width)
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    if magic == b"P2":
        values = raw[start - 1 :].split()
        if len(values) < width * height:
            raise MammoInputError(path, f"truncated: {len(values)} of {width * height} pixel values")
        try:
            pixels = np.array([int(v) for v in values[: width * height]], dtype=np.int64)
        except ValueError:
            raise MammoInputError(path, "corrupt ASCII PGM: a pixel value is not a number") from None
        except OverflowError:
            raise MammoInputError(path, f"corrupt: a pixel value is far above maxval {maxval}") from None
    else:
        needed = width * height * dtype.itemsize
        body = raw[start : start + needed]
        if len(body) < needed:
            raise MammoInputError(
                path, f"truncated: {len(body)} of {needed} bytes of pixels for a {width}x{height} image"
            )
        pixels = np.frombuffer(body, dtype=dtype)
    if pixels.max(initial=0) > maxval:
        raise MammoInputError(path, f"corrupt: pixel value {int(pixels.max())} above maxval {maxval}")
    out_dtype = np.uint8 if maxval < 256 else np.uint16
    return pixels.astype(out_dtype).reshape(height, width)


def pgm_shape(path: str | Path) -> tuple[int, int]:
    """Height and width from a PGM header, without reading the pixels."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as err:
        raise MammoInputError(path, f"cannot be read ({err.strerror or err})") from err
    if head[:2] not in (b"P5", b"P2"):
        raise MammoInputError(path, f"not a greyscale PGM file (starts with {head[:2]!r}, expected b'P5' or b'P2')")
    tokens, _ = _header_tokens(head, path, 2)
    try:
        width, height = (int(t) for t in tokens)
    except ValueError:
        raise MammoInputError(path, f"corrupt PGM header: {b' '.join(tokens)!r} is not width height") from None
    return height, width






def write_pgm(path: str | Path, image: np.ndarray, comment: str = "napari-mammo") -> None:
    """Write a 2-D uint8 or uint16 array as a binary PGM, atomically."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: PGM needs a 2-D uint8 or uint16 image, got {image.dtype} {image.shape}")
    maxval = 255 if image.dtype == np.uint8 else 65535
    header = f"P5\n# {comment}\n{image.shape[1]} {image.shape[0]}\n{maxval}\n".encode("ascii")
    body = image.astype(">u2").tobytes() if image.dtype == np.uint16 else image.tobytes()
    atomic_write_bytes(path, header + body)
