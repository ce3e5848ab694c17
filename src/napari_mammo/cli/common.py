"""What the commands share: JSON that is always valid, number types, the images of a batch, progress bars."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from napari_mammo.engine.progress import Progress
from napari_mammo.errors import MammoInputError


def json_safe(value):
    """A report with every NaN or infinite number as null, so that the JSON is valid."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


ALIASES = {"classifier": "cnni-bcc", "detector": "idbll"}
"""The older command-line names of the poster's two models."""


def model_name(text: str) -> str:
    """An argparse type: a model's name, its older alias replaced ('classifier' is 'cnni-bcc')."""
    return ALIASES.get(text, text)


def chosen_model(model: str | None, weights: str | None, choices: tuple[str, ...]) -> str:
    """The model a command runs: `--model` when given, else the one a `--weights` file holds (when it is one of
    `choices`), else the first choice, the default (its loader then names a foreign file)."""
    if model is not None:
        return model
    if weights is not None:
        from napari_mammo.engine.weights import weights_header

        try:
            held = weights_header(weights).get("model")
        except MammoInputError:  # unreadable: the default model's loader says why, naming the file
            held = None
        if held in choices:
            return held
    return choices[0]


def probability(text: str) -> float:
    """An argparse type: a number between 0 and 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def has_display() -> bool:
    """Whether a window (and OpenGL for napari's canvas) can be opened here."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32"))


def progress_printer(as_json: bool):
    """A progress callback: tqdm bars on stderr, or one JSON object per line on stdout."""
    if as_json:
        def emit(event: dict) -> None:
            print(json.dumps(json_safe(event), allow_nan=False), flush=True)

        return emit, lambda: None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def show(event: dict) -> None:
        phase = event["phase"]
        if phase == "validated":
            score = (f"validation image AUC {event['val_image_auc']:.3f}, balanced patch accuracy "
                     f"{event['val_balanced_accuracy']:.3f}" if "val_balanced_accuracy" in event else
                     f"validation sensitivity at 1 FP/image {event['val_sensitivity_at_1fp']:.3f}")
            tqdm.write(f"epoch {event['epoch']}: train loss {event['train_loss']:.4f}, {score} "
                       f"(best epoch {event['best_epoch']})", file=sys.stderr)
            return
        key = phase if phase != "training" else f"epoch {event['epoch']}/{event['epochs']}"
        if key not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            bars[key] = tqdm(total=event["steps"], desc=key, unit="step", file=sys.stderr, leave=False)
        bar = bars[key]
        bar.n = event["step"]
        if "loss" in event:
            bar.set_postfix(loss=f"{event['loss']:.3f}", refresh=False)
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return show, close


def training_records(data: str) -> list:
    """Records of a MIAS-style data folder, refusing one without images."""
    from napari_mammo.io.mias import read_folder

    records = read_folder(Path(data))
    if not records:
        raise MammoInputError(Path(data), "no images to train on")
    return records


def evaluation_records(data: str, split: str, *metadata: dict) -> list:
    """The records to evaluate: a split named in every given weights' metadata, or all of them.

    With several models' weights, the split's images are those all of them hold out. 'auto'
    (the default) takes the test split when the folder holds any of its images, and every
    image otherwise (another labelled folder, as the Review widget does), saying so.
    """
    records = training_records(data)
    if split == "all":
        return records
    wanted = "test" if split == "auto" else split
    refs = None
    for meta in metadata:
        named = set(meta.get("split", {}).get(wanted, [])) if isinstance(meta.get("split"), dict) else set()
        if not named:
            if split == "auto":
                return records
            raise MammoInputError(Path(data), f"the weights name no {wanted!r} split; use --split all")
        refs = named if refs is None else refs & named
    chosen = [r for r in records if r.ref in refs]
    if not chosen and split == "auto":
        print(f"napari-mammo: none of the weights' test images is in {data}; evaluating all {len(records)} "
              "images (use --split test to insist on the held-out images)", file=sys.stderr)
        return records
    if not chosen:
        raise MammoInputError(Path(data), f"none of the weights' {wanted!r} images are in this folder; "
                                          "use --split all to evaluate every image in it")
    return chosen


def image_paths(paths: list[str]) -> list[str]:
    """The paths, each folder replaced by the images in it (sorted; PGM, DICOM, PNG, TIFF)."""
    from napari_mammo.io.images import DICOM_SUFFIXES, PGM_SUFFIXES, RASTER_SUFFIXES

    suffixes = PGM_SUFFIXES + DICOM_SUFFIXES + RASTER_SUFFIXES
    out = []
    for path in paths:
        if Path(path).is_dir():
            found = sorted(str(p) for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                raise MammoInputError(path, "is a folder without images (.pgm, .dcm, .png, .tif)")
            out += found
        else:
            out.append(path)
    return out


def each_image(paths: list[str], work, lines: bool = False) -> tuple[list[dict], int]:
    """Apply `work` to each path (a folder: to its images); a bad file is one line on stderr and the others go on.

    With `lines`, each result is printed as one JSON line as soon as it is known, so an
    interrupted batch keeps what was done.
    """
    results, failed = [], 0
    for path in image_paths(paths):
        try:
            result = work(path)
        except (MammoInputError, ValueError, OSError) as err:
            print(f"napari-mammo: error: {err if isinstance(err, MammoInputError) else f'{path}: {err}'}",
                  file=sys.stderr)
            failed += 1
            continue
        results.append(result)
        if lines:
            print(json.dumps(json_safe(result), allow_nan=False), flush=True)
    return results, failed


@contextmanager
def progress_bar(description: str, unit: str) -> Iterator[Progress]:
    """A tqdm bar on stderr that follows progress events (its total from each event's `steps`)."""
    from tqdm import tqdm

    with tqdm(desc=description, unit=unit, file=sys.stderr, leave=False) as bar:
        def show(event: dict) -> None:
            bar.total, bar.n = event["steps"], event["step"]
            bar.refresh()

        yield show


def untrained_records(data: str, metadata: dict, split: str) -> list:
    """The images of a folder that a whole-folder model (its metadata names what it was `trained_on`) was not
    fitted on (--split auto or test); all of them, said to be optimistic, when none is left or with --split all."""
    records, trained = evaluation_records(data, "all"), set(metadata["trained_on"])
    fresh = [r for r in records if r.ref not in trained]
    if split in ("auto", "test") and fresh:
        if len(fresh) < len(records):
            print(f"napari-mammo: evaluating the {len(fresh)} images the model was not fitted on "
                  f"({len(records) - len(fresh)} others here were)", file=sys.stderr)
        return fresh
    if split not in ("auto", "all"):
        raise MammoInputError(Path(records[0].path).parent if records else Path("."),
                              f"this model was fitted on every image here; it has no {split!r} split (use --split all)")
    seen = sum(r.ref in trained for r in records)
    if seen:
        print(f"napari-mammo: warning: {seen} of these {len(records)} images were used to fit the model, so its "
              "figures on them are optimistic; `napari-mammo crossval screening` gives held-out figures",
              file=sys.stderr)
    return records


def check_folds(folds: int, records: list, data: str) -> None:
    """Refuse a number of folds by woman that the folder cannot fill."""
    women = len({r.woman for r in records})
    if folds < 2 or folds > women:
        raise ValueError(f"--folds must be between 2 and the number of women in {data} ({women}), got {folds}")


def tuning_options(args: argparse.Namespace) -> dict:
    """The ScreeningConfig fields the fine-tuning options set (those not given keep the config's defaults)."""
    given = {"tune_epochs": args.tune_epochs, "tune_steps": args.tune_steps, "tune_mirrors": args.tune_mirrors,
             "verdict_map": args.verdict_map, "verdict_tune_epochs": args.verdict_epochs,
             "verdict_both_maps": args.verdict_both_maps, "box_mirrors": args.box_mirrors,
             "fine_asymmetry": args.fine_asymmetry}
    return {key: value for key, value in given.items() if value is not None}


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """The screening model's fine-tuning options (train and crossval)."""
    from napari_mammo.models.screening import ScreeningConfig

    defaults = ScreeningConfig()
    parser.add_argument("--tune-epochs", type=int, default=None,
                        help="screening: epochs of fine-tuning the tuned cell map that gives the boxes and heatmap "
                             f"(default {defaults.tune_epochs}; 0: boxes from the cell head)")
    parser.add_argument("--tune-steps", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--tune-mirrors", action=argparse.BooleanOptionalAction, default=None,
                        help="screening: fine-tune the tuned cell map on each film's left-right mirror image too "
                             "(default; its backbone features are computed and cached once)")
    parser.add_argument("--verdict-map", action=argparse.BooleanOptionalAction, default=None,
                        help="screening, with mirror images: fine-tune a second tuned map on the films alone, whose "
                             "asymmetry the verdict sums instead of the mirrored map's (default)")
    parser.add_argument("--verdict-epochs", type=int, default=None,
                        help="screening: epochs of fine-tuning the verdict map "
                             f"(default {defaults.verdict_tune_epochs})")
    parser.add_argument("--verdict-both-maps", action=argparse.BooleanOptionalAction, default=None,
                        help="screening, with two maps: the verdict sums both maps' asymmetries instead of the "
                             "verdict map's alone (default: the verdict map's alone)")
    parser.add_argument("--box-mirrors", action=argparse.BooleanOptionalAction, default=None,
                        help="screening: read the boxes' tuned map on each film's mirror image too and average the "
                             f"two (test-time mirrors; default {'on' if defaults.box_mirrors else 'off'})")
    parser.add_argument("--fine-asymmetry", action=argparse.BooleanOptionalAction, default=None,
                        help="screening: the both-films verdict also sums the asymmetry of a frozen cell head on the "
                             f"finer stage-4 features (default {'on' if defaults.fine_asymmetry else 'off'})")
