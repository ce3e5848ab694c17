"""The `napari-mammo` command line."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import MammoInputError


def describe(path: Path) -> list[dict]:
    """What the readers see at a path: one entry per image (size, pixel size, label, lesions)."""
    from .images import read_image
    from .mias import INFO_NAME, find_info, read_folder, record_for_image

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


def _format_entry(entry: dict) -> str:
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


def cmd_info(args: argparse.Namespace) -> int:
    """Print what the readers see for each path."""
    entries = [entry for path in args.paths for entry in describe(Path(path))]
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        print("\n".join(_format_entry(e) for e in entries))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="napari-mammo",
        description="Mammogram readers, CNNI-BCC patch classifier and IDBLL lesion locator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="print what the readers see in images or a MIAS folder",
                          description="Print size, pixel size, label and lesions of mammograms "
                                      "(PGM, DICOM, PNG, TIFF) or of every image of a MIAS folder.")
    info.add_argument("paths", nargs="+", metavar="PATH", help="image file, MIAS folder or Info.txt")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except MammoInputError as err:
        print(f"napari-mammo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-mammo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
