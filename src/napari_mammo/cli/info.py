"""`napari-mammo info`: what the readers see in images or a MIAS folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_mammo.cli.common import json_safe
from napari_mammo.errors import MammoInputError


def describe(path: Path) -> list[dict]:
    """What the readers see at a path: one entry per image (size, pixel size, label, lesions)."""
    from napari_mammo.io.images import read_image
    from napari_mammo.io.mias import INFO_NAME, find_info, read_folder, record_for_image

    if path.is_dir() or path.name.lower() == INFO_NAME.lower():
        folder = path if path.is_dir() else path.parent
        if find_info(folder) is None:
            raise MammoInputError(folder, f"no {INFO_NAME} here, so it is not a MIAS-style folder")
        pairs = [(r.path, r) for r in read_folder(folder)]
    else:
        pairs = [(path, record_for_image(path) if path.suffix.lower() == ".pgm" else None)]
    entries = []
    for image_path, record in pairs:
        image = read_image(image_path)
        entry = {
            "path": str(image_path),
            "shape": list(image.pixels.shape),
            "dtype": str(image.pixels.dtype),
            "pixel_mm": list(image.spacing_mm) if image.spacing_mm else None,
            "format": image.metadata.get("format"),
            "label": record.label if record else None,
            "tissue": record.tissue if record else None,
            "lesions": [
                {"class": les.abnormality, "severity": les.severity, "row": les.row, "col": les.col,
                 "radius": les.radius}
                for les in (record.lesions if record else ())
            ],
        }
        entries.append(entry)
    return entries


def format_entry(entry: dict) -> str:
    """A readable block for one image."""
    size = "x".join(str(s) for s in entry["shape"])
    pixel = f", {entry['pixel_mm'][0]:g} mm pixels" if entry["pixel_mm"] else ""
    lines = [f"{entry['path']}: {entry['format']} {size} {entry['dtype']}{pixel}"]
    if entry["label"] is not None:
        lines.append(f"  label {entry['label']}, tissue {entry['tissue']}, {len(entry['lesions'])} finding(s)")
    for les in entry["lesions"]:
        where = (f"centre row {les['row']:g} col {les['col']:g}, radius {les['radius']:g}"
                 if les["row"] is not None else "no location given")
        lines.append(f"    {les['class']} {les['severity']}: {where}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print what the readers see for each path."""
    entries = [entry for path in args.paths for entry in describe(Path(path))]
    if args.json:
        print(json.dumps(json_safe(entries), indent=2, allow_nan=False))
    else:
        print("\n".join(format_entry(e) for e in entries))
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    """The `info` command's arguments."""
    info = sub.add_parser("info", help="print what the readers see in images or a MIAS folder",
                          description="Print size, pixel size, label and lesions of mammograms "
                                      "(PGM, DICOM, PNG, TIFF) or of every image of a MIAS folder.")
    info.add_argument("paths", nargs="+", metavar="PATH", help="image file, MIAS folder or Info.txt")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    return info
