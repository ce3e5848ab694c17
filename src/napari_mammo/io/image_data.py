"""The pixels of one image with its pixel size, as every reader returns them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ImageData:
    """Pixels of one mammogram (2-D, or 3-D for a stack) and their size in millimetres."""

    pixels: np.ndarray
    spacing_mm: tuple[float, float] | None
    source: Path
    metadata: dict = field(default_factory=dict)
