"""Size limits that keep a small hostile file from exhausting memory: checked before anything is allocated."""

from __future__ import annotations

import os
import warnings

from napari_mammo.errors import MammoInputError

_WARNED: set[str] = set()
MIN_SIDE = 128
"""The models need at least this many 0.2 mm pixels on each side (one CNNI-BCC patch)."""


def max_pixels() -> int:
    """The largest image, in pixels, that is read or handed to a model: $NAPARI_MAMMO_MAX_PIXELS, else 2**28."""
    value = os.environ.get("NAPARI_MAMMO_MAX_PIXELS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if value and value not in _WARNED:
        _WARNED.add(value)
        warnings.warn(f"NAPARI_MAMMO_MAX_PIXELS={value!r} is not a positive whole number; using {2**28}",
                      stacklevel=2)
    return 2**28


def check_pixels(path, height: int, width: int, frames: int = 1) -> None:
    """Refuse (MammoInputError naming `path`) a file whose declared size is above the budget, before decoding."""
    if height * width * frames > max_pixels():
        size = f"{frames}x{height}x{width}" if frames > 1 else f"{height}x{width}"
        raise MammoInputError(path, f"declares {size} pixels, more than the limit of {max_pixels()} "
                                    "(set NAPARI_MAMMO_MAX_PIXELS to raise it)")


def check_model_shape(height: int, width: int, min_side: int = MIN_SIDE) -> None:
    """Refuse (ValueError) an image at 0.2 mm that the models cannot take: too small, or too large to pad square."""
    if min(height, width) < min_side:
        raise ValueError(f"the image is {height}x{width} pixels at 0.2 mm; the models need at least {min_side} "
                         "on each side")
    if max(height, width) ** 2 > max_pixels():
        raise ValueError(f"the image is {height}x{width} pixels at 0.2 mm; its side is above the limit of "
                         f"{int(max_pixels() ** 0.5)} (set NAPARI_MAMMO_MAX_PIXELS to raise it)")
