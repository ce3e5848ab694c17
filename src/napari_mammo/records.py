"""Records of mammograms and their lesions, independent of any file format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("normal", "benign", "malignant")
"""Image and patch classes, in the order the models use (index 0, 1, 2)."""

SEVERITY_CLASS = {"B": "benign", "M": "malignant"}
ABNORMALITIES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM")
TISSUES = ("F", "G", "D")
MIAS_PIXEL_MM = 0.2
"""Pixel edge of mini-MIAS images in millimetres (200 µm)."""


def is_mias_ref(text: str) -> bool:
    """Whether a name is a MIAS-style image reference: ASCII letters then digits ('mdb001')."""
    return re.fullmatch(r"[A-Za-z]+[0-9]+", text) is not None


def info_word(value: str, what: str, ref: str) -> str:
    """A field of an Info.txt row, refused (ValueError) unless it is one word of printable Latin-1 characters.

    Info.txt rows are space-separated Latin-1 text; a space, a line break or a character
    outside Latin-1 would split the row, add rows, or fail to encode.
    """
    ok = bool(value) and value.isprintable() and not any(c.isspace() for c in value)
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        ok = False
    if not ok:
        raise ValueError(f"the {what} {value!r} of image {ref!r} cannot be written into Info.txt: it must be one "
                         "word of printable Latin-1 characters (save as .csv to keep other text)")
    return value


@dataclass(frozen=True)
class Lesion:
    """One finding: a circle in pixel coordinates (row 0 at the top), or unlocated."""

    abnormality: str
    severity: str
    row: float | None = None
    col: float | None = None
    radius: float | None = None

    @property
    def located(self) -> bool:
        """Whether the finding has a centre and radius."""
        return self.row is not None and self.col is not None and self.radius is not None

    @property
    def label(self) -> str:
        """Class name of the finding: 'benign' or 'malignant'."""
        return SEVERITY_CLASS[self.severity]

    def box(self) -> tuple[float, float, float, float]:
        """Bounding box (row_min, col_min, row_max, col_max) of the circle."""
        if not self.located:
            raise ValueError(f"lesion {self.abnormality} {self.severity} has no location")
        return (self.row - self.radius, self.col - self.radius,
                self.row + self.radius, self.col + self.radius)


@dataclass(frozen=True)
class Mammogram:
    """One mammogram: its reference, background tissue, findings and image file."""

    ref: str
    tissue: str = ""
    lesions: tuple[Lesion, ...] = field(default_factory=tuple)
    path: Path | None = None

    @property
    def label(self) -> str:
        """Image-level class: malignant if any finding is, else benign if any, else normal."""
        severities = {lesion.severity for lesion in self.lesions}
        if "M" in severities:
            return "malignant"
        if "B" in severities:
            return "benign"
        return "normal"

    @property
    def woman(self) -> str:
        """Identifier of the woman: MIAS numbers films in left/right pairs (001+002, …)."""
        return woman_of(self.ref)

    def with_lesions(self, lesions: tuple[Lesion, ...]) -> Mammogram:
        """A copy with other findings."""
        return replace(self, lesions=tuple(lesions))


def partner_of(ref: str) -> str | None:
    """The reference of the woman's other film in mini-MIAS numbering (mdb001 <-> mdb002); None for other names."""
    match = re.fullmatch(r"mdb(\d{3})", ref, flags=re.IGNORECASE)
    if match is None:
        return None
    number = int(match.group(1))
    return f"mdb{number + 1 if number % 2 else number - 1:03d}"


def woman_of(ref: str) -> str:
    """Pair key of a MIAS-style reference: mdb001 and mdb002 give 'mdb001'."""
    stem = ref.rstrip("0123456789")
    digits = ref[len(stem):]
    if not digits:
        return ref
    number = int(digits)
    first = number - 1 if number % 2 == 0 else number
    return f"{stem}{first:0{len(digits)}d}"


def record_boxes(record: Mammogram) -> np.ndarray:
    """(N, 4) boxes (row_min, col_min, row_max, col_max) of the located lesions."""
    boxes = [lesion.box() for lesion in record.lesions if lesion.located]
    return np.array(boxes, np.float64).reshape(-1, 4)
