"""The mini-MIAS layout: Info.txt rows (origin at the bottom-left) and image folders."""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from napari_mammo.errors import MammoInputError
from napari_mammo.io.atomic import atomic_write_bytes, folder_lock
from napari_mammo.io.pgm import pgm_shape
from napari_mammo.records import ABNORMALITIES, TISSUES, Lesion, Mammogram, info_word, is_mias_ref

MIAS_SIZE = 1024
"""Edge of a mini-MIAS image in pixels; Info.txt's Y is measured up from the bottom."""

INFO_NAME = "Info.txt"


def _is_record_line(tokens: list[str]) -> bool:
    """Whether a line looks like a finding row (reference, tissue, class …)."""
    return len(tokens) >= 2 and is_mias_ref(tokens[0]) and tokens[1] in TISSUES


def _parse_row(tokens: list[str], where: str, height: int) -> tuple[str, str, Lesion | None]:
    """Parse one row: REFNUM BG CLASS [SEVERITY [X Y RADIUS]] into its parts."""
    ref, tissue = tokens[0], tokens[1]
    if len(tokens) < 3 or tokens[2] not in ABNORMALITIES:
        found = tokens[2] if len(tokens) > 2 else "nothing"
        raise ValueError(f"{where}: class {found!r} is not one of {', '.join(ABNORMALITIES)}")
    abnormality = tokens[2]
    rest = tokens[3:]
    if abnormality == "NORM":
        if rest:
            raise ValueError(f"{where}: a NORM row has no severity or coordinates, found {' '.join(rest)!r}")
        return ref, tissue, None
    if not rest or rest[0] not in ("B", "M"):
        raise ValueError(f"{where}: severity must be B or M for class {abnormality}")
    severity, coords = rest[0], rest[1:]
    if not coords or coords[0].startswith("*"):  # no centre given, or "*NOTE 3*"
        return ref, tissue, Lesion(abnormality, severity)
    if len(coords) != 3:
        raise ValueError(f"{where}: expected X Y RADIUS after the severity, found {' '.join(coords)!r}")
    try:
        x, y, radius = (float(c) for c in coords)
    except ValueError:
        raise ValueError(f"{where}: X Y RADIUS must be numbers, found {' '.join(coords)!r}") from None
    if not all(math.isfinite(v) for v in (x, y, radius)):
        raise ValueError(f"{where}: X Y RADIUS must be finite numbers, found {' '.join(coords)!r}")
    if radius <= 0:
        raise ValueError(f"{where}: radius must be positive, found {radius:g}")
    return ref, tissue, Lesion(abnormality, severity, row=height - y, col=x, radius=radius)


def _unmarked(text: str) -> str:
    """Text without a byte-order mark; UTF-16 (which a Latin-1 reading shows by its mark) decoded first."""
    if text[:2] in ("\xff\xfe", "\xfe\xff"):
        raw = text.encode("latin-1")
        return raw.decode("utf-16").removeprefix("\ufeff")
    return text.removeprefix("\ufeff").removeprefix("ï»¿")


def parse_info(text: str, source: str = INFO_NAME, height: int = MIAS_SIZE) -> list[Mammogram]:
    """Parse the text of an Info.txt into one record per image, in the order first listed.

    A byte-order mark is ignored (UTF-16 with its mark is decoded); a row holding a NUL
    character is refused with its line number. Time and memory grow linearly with the rows.
    """
    tissues: dict[str, str] = {}
    lesions: dict[str, list[Lesion]] = {}
    for number, line in enumerate(_unmarked(text).splitlines(), start=1):
        if "\x00" in line:
            raise ValueError(f"{source} line {number}: holds a NUL character; the file is damaged")
        tokens = line.split()
        if not _is_record_line(tokens):
            continue
        ref, tissue, lesion = _parse_row(tokens, f"{source} line {number}", height)
        if ref not in tissues:
            tissues[ref], lesions[ref] = tissue, []
        elif tissues[ref] != tissue:
            raise ValueError(f"{source} line {number}: {ref} has tissue {tissue}, earlier {tissues[ref]}")
        if lesion is not None:
            lesions[ref].append(lesion)
    return [Mammogram(ref=ref, tissue=tissue, lesions=tuple(lesions[ref])) for ref, tissue in tissues.items()]


def read_info(path: str | Path, height: int = MIAS_SIZE) -> list[Mammogram]:
    """Read an Info.txt file; the records' paths point at `<ref>.pgm` beside it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except OSError as err:
        raise MammoInputError(path, f"cannot be read ({err.strerror or err})") from err
    try:
        records = parse_info(text, source=path.name, height=height)
    except ValueError as err:
        raise MammoInputError(path, str(err).removeprefix(f"{path.name} ")) from None
    if not records:
        raise MammoInputError(path, "no rows of the form 'REFNUM BG CLASS [SEVERITY X Y RADIUS]'")
    folder = path.parent
    return [Mammogram(r.ref, r.tissue, r.lesions, folder / f"{r.ref}.pgm") for r in records]


def find_info(folder: str | Path) -> Path | None:
    """The Info.txt of a folder (any letter case), or None."""
    folder = Path(folder)
    for candidate in sorted(folder.glob("*")):
        if candidate.name.lower() == INFO_NAME.lower() and candidate.is_file():
            return candidate
    return None


def read_folder(folder: str | Path) -> list[Mammogram]:
    """Records of a MIAS-style folder whose images are present; warns once about missing ones."""
    folder = Path(folder)
    info = find_info(folder) if folder.is_dir() else folder
    if info is None:
        raise MammoInputError(folder, f"no {INFO_NAME} in this folder, so it is not a MIAS-style data set")
    records = read_info(info)
    present = [at_image_height(r) for r in records if r.path is not None and r.path.is_file()]
    missing = [r.ref for r in records if r.path is None or not r.path.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        warnings.warn(f"{info}: {len(missing)} listed image(s) not found, skipped: {shown}", stacklevel=2)
    return present


def record_for_image(path: str | Path) -> Mammogram | None:
    """The Info.txt record of an image file, if an Info.txt beside it lists it.

    A broken Info.txt does not stop the image from being read: it is reported as a
    warning naming the file and the line, and the image has no record.
    """
    path = Path(path)
    info = find_info(path.parent)
    if info is None:
        return None
    try:
        records = read_info(info)
    except MammoInputError as err:
        warnings.warn(f"{err} (the image is read without its lesions)", stacklevel=2)
        return None
    for record in records:
        if record.ref == path.stem:
            try:
                return at_image_height(Mammogram(record.ref, record.tissue, record.lesions, path))
            except MammoInputError as err:
                warnings.warn(f"{err} (the image is read without its lesions)", stacklevel=2)
                return None
    return None


def at_image_height(record: Mammogram) -> Mammogram:
    """Measure Y from the bottom of the record's own image when it is not 1024 pixels high; a lesion centred
    outside the image is refused (MammoInputError naming the image), never silently kept."""
    if record.path is None or record.path.suffix.lower() != ".pgm":
        return record
    height, width = pgm_shape(record.path)
    shift = height - MIAS_SIZE
    if shift:
        record = record.with_lesions(tuple(
            replace(lesion, row=lesion.row + shift) if lesion.located else lesion for lesion in record.lesions))
    for lesion in record.lesions:
        if lesion.located and not (0 <= lesion.row < height and 0 <= lesion.col < width):
            raise MammoInputError(record.path, f"its Info.txt row puts a {lesion.abnormality} lesion at x "
                                               f"{_number(lesion.col)}, y {_number(height - lesion.row)}, outside "
                                               f"this {width}x{height} image")
    return record


def format_info(records: Iterable[Mammogram], height: int | dict[str, int] = MIAS_SIZE, header: str = "") -> str:
    """Info.txt text for records (CRLF line ends, origin at the bottom-left, as MIAS has it).

    `height` is the images' height in pixels, or a mapping from reference to height.
    """
    lines = [*header.splitlines()]
    for record in records:
        image_height = height.get(record.ref, MIAS_SIZE) if isinstance(height, dict) else height
        ref = info_word(record.ref, "reference", record.ref)
        tissue = info_word(record.tissue, "tissue", ref)
        if not record.lesions:
            lines.append(f"{ref} {tissue} NORM")
        for lesion in record.lesions:
            kind, severity = info_word(lesion.abnormality, "class", ref), info_word(lesion.severity, "severity", ref)
            row = f"{ref} {tissue} {kind} {severity}"
            if lesion.located:
                y = image_height - lesion.row
                row += f" {_number(lesion.col)} {_number(y)} {_number(lesion.radius)}"
            lines.append(row)
    return "\r\n".join(lines) + "\r\n"


def _number(value: float) -> str:
    """An integer when the value is whole (as MIAS writes it), else a short decimal."""
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:.2f}"


def write_info(path: str | Path, records: Iterable[Mammogram], height: int | dict[str, int] = MIAS_SIZE,
               header: str = "", overwrite: bool = False) -> None:
    """Write records as a MIAS-style Info.txt, atomically; refuses to replace a file unless told."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise MammoInputError(path, "already exists; pass overwrite=True to replace it")
    atomic_write_bytes(path, format_info(records, height, header).encode("latin-1"))


def merge_into_info(folder: str | Path, records: list[Mammogram], heights: dict[str, int]) -> Path:
    """Add or replace these records' rows in the folder's Info.txt, keeping every other row.

    The read, merge and write happen under the folder's lock, so two processes saving into
    one folder at once keep both their rows. Returns the Info.txt written.
    """
    folder = Path(folder)
    with folder_lock(folder):
        info = find_info(folder)
        replaced = {r.ref for r in records}
        kept = [r for r in read_info(info) if r.ref not in replaced] if info is not None else []
        all_heights = {}
        for i, record in enumerate(kept):
            if record.path is not None and record.path.is_file():  # rows of images present: their own height
                kept[i] = at_image_height(record)
                all_heights[record.ref] = pgm_shape(record.path)[0]
        all_heights.update(heights)
        target = info or folder / INFO_NAME
        write_info(target, [*kept, *records], height=all_heights, overwrite=True)
    return target


CSV_COLUMNS = ("ref", "tissue", "class", "severity", "row", "col", "radius", "x", "y")


def format_csv(records: Iterable[Mammogram], height: int | dict[str, int] = MIAS_SIZE) -> str:
    """CSV of the findings, one row each (a normal image is one row with class NORM).

    Both conventions are written: row/col (pixels, row 0 at the top) and MIAS x/y
    (origin at the bottom-left).
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        image_height = height.get(record.ref, MIAS_SIZE) if isinstance(height, dict) else height
        for lesion in record.lesions or (None,):
            if lesion is None:
                writer.writerow([record.ref, record.tissue, "NORM", "", "", "", "", "", ""])
            elif not lesion.located:
                writer.writerow([record.ref, record.tissue, lesion.abnormality, lesion.severity, "", "", "", "", ""])
            else:
                writer.writerow([record.ref, record.tissue, lesion.abnormality, lesion.severity, _number(lesion.row),
                                 _number(lesion.col), _number(lesion.radius), _number(lesion.col),
                                 _number(image_height - lesion.row)])
    return buffer.getvalue()


def read_csv(path: str | Path) -> list[Mammogram]:
    """Read findings written by `format_csv` (row/col are used; x/y are for people)."""
    import csv

    path = Path(path)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
    except (OSError, UnicodeDecodeError) as err:
        raise MammoInputError(path, f"cannot be read ({err})") from err
    missing = [c for c in ("ref", "class", "severity", "row", "col", "radius") if rows and c not in rows[0]]
    if not rows or missing:
        raise MammoInputError(path, f"not a lesion CSV (needs columns {', '.join(CSV_COLUMNS[:7])})")
    records: dict[str, Mammogram] = {}
    for number, row in enumerate(rows, start=2):
        ref = row["ref"]
        record = records.setdefault(ref, Mammogram(ref, row.get("tissue", "") or ""))
        if row["class"] == "NORM":
            continue
        try:
            located = row["row"] != ""
            lesion = Lesion(row["class"], row["severity"],
                            float(row["row"]) if located else None, float(row["col"]) if located else None,
                            float(row["radius"]) if located else None)
        except ValueError:
            raise MammoInputError(path, f"line {number}: row, col and radius must be numbers") from None
        records[ref] = record.with_lesions((*record.lesions, lesion))
    return list(records.values())
