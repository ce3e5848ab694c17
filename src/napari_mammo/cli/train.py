"""`napari-mammo train`: fit CNNI-BCC, IDBLL or the screening model on a MIAS-style folder."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from napari_mammo.cli.common import (
    ALIASES,
    add_tuning_arguments,
    check_folds,
    model_name,
    progress_printer,
    training_records,
    tuning_options,
)
from napari_mammo.engine.progress import Progress, ProgressEvent
from napari_mammo.engine.runtime import DEVICES
from napari_mammo.errors import MammoInputError

STOP_REQUESTED = threading.Event()
"""Set by SIGINT or SIGTERM; training then stops at its next step or progress event at the latest."""


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop training cleanly (KeyboardInterrupt), even where the shell ignored SIGINT."""
    import signal

    def interrupt(signum, frame):
        # the KeyboardInterrupt is lost where it lands in a destructor or a garbage-collector callback ("Exception
        # ignored in …"), so training also checks the flag at every step
        STOP_REQUESTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def stopping(progress: Progress) -> Progress:
    """`progress` that raises KeyboardInterrupt once a stop was requested (the screening fit has no Stop flag)."""

    def report(event: ProgressEvent) -> None:
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
        progress(event)

    return report


def check_output(path: str, overwrite: bool) -> None:
    """Refuse, before any work, an output that cannot be written or would replace a file unasked."""
    out = Path(path)
    if out.is_dir():
        raise MammoInputError(out, "is a folder; give a file name ending in .safetensors")
    if out.exists() and not overwrite:
        raise MammoInputError(out, "already exists; pass --overwrite to replace it, or choose another name")
    parent = out.parent if str(out.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise MammoInputError(out, f"cannot be written ({existing} is not a writable folder)")


def train_screening(args: argparse.Namespace) -> int:
    """Fit the screening model on every image of a folder, calibrated on held-out folds; write its weights."""
    from napari_mammo.evaluation.crossval import format_crossval, load_screening_features
    from napari_mammo.models.screening import ScreeningConfig
    from napari_mammo.training.screening import fit_screener

    records = training_records(args.data)
    check_folds(args.folds, records, args.data)
    config = ScreeningConfig(**tuning_options(args))
    show, close = progress_printer(args.progress_json)
    show = stopping(show)
    try:
        cells, stage4 = load_screening_features(records, config, show)
        metadata = fit_screener(records, cells, args.out, config, folds=args.folds, seeds=args.cv_seeds,
                                progress=show, stage4=stage4)
    finally:
        close()
    print(format_crossval(metadata["crossval"]), file=sys.stderr)
    point = metadata["operating_point"]["both"]
    boxes = metadata["box_operating_point"]
    print(f"operating point (held-out, both films): p(abnormal) >= {point['threshold']:.3f}, sensitivity "
          f"{point['sensitivity']:.3f}, specificity {point['specificity']:.3f}; boxes (held-out): score >= "
          f"{boxes['threshold']:.3f}, {boxes['fp_per_image']:.2f} false positives per image, lesion sensitivity "
          f"{boxes['sensitivity']:.3f}; wrote {args.out}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Train a model on a MIAS-style folder."""
    if args.resume:
        from napari_mammo.training.loop import checkpoint_path

        if args.model == "screening":
            raise ValueError("--resume continues CNNI-BCC or IDBLL training; the screening model is fitted whole")
        if not checkpoint_path(args.out).is_file():
            raise MammoInputError(Path(args.out), f"has no checkpoint beside it ({checkpoint_path(args.out).name}) "
                                                  "to resume from: that run finished, or never ended an epoch")
    check_output(args.out, args.overwrite or args.resume)
    stop_on_signals()
    if args.model == "screening":
        return train_screening(args)
    records = training_records(args.data)
    show, close = progress_printer(args.progress_json)
    try:
        given = {key: value for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size),
                                               ("learning_rate", args.learning_rate)) if value is not None}
        common = {"seed": args.seed, "device": args.device, "max_steps_per_epoch": args.max_steps_per_epoch, **given}
        if args.model == "cnni-bcc":
            from napari_mammo.training.cnni_bcc import ClassifierConfig, train_classifier

            config = ClassifierConfig(patches=args.patches, labelling=args.labelling,
                                      crops_per_lesion=args.crops_per_lesion, **common)
            result = train_classifier(records, args.out, config, progress=show, stop=STOP_REQUESTED.is_set,
                                      resume=args.resume)
        else:
            from napari_mammo.training.idbll import DetectorConfig, train_detector

            config = DetectorConfig(augment=args.augment, **common)
            result = train_detector(records, args.out, config, progress=show, stop=STOP_REQUESTED.is_set,
                                    resume=args.resume)
    finally:
        close()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 writes and reports
        return 130 if result.stopped else 0
    if result.path is None:
        print("napari-mammo: stopped before any weights were kept", file=sys.stderr)
        return 1
    from napari_mammo.training.loop import checkpoint_path

    state = "stopped early; kept" if result.stopped else "kept"
    print(f"{state} the weights of epoch {result.best_epoch} (validation score {result.best_score:.3f}) "
          f"in {result.path}", file=sys.stderr)
    if result.stopped and checkpoint_path(args.out).is_file():
        print("napari-mammo: the same command with --resume goes on after the last finished epoch", file=sys.stderr)
    return 130 if result.stopped else 0


def add_parser(sub) -> argparse.ArgumentParser:
    """The `train` command's arguments."""
    train = sub.add_parser("train", help="train CNNI-BCC, IDBLL or the screening model on a MIAS-style folder",
                           description="Train on the train part of a seeded, pair-aware split of a MIAS-style "
                                       "folder; 20% of the women are held out as a test split and never used. "
                                       "Runs under torchrun for several processes (DDP).")
    train.add_argument("model", choices=["cnni-bcc", "idbll", "screening", *ALIASES], type=model_name,
                       help="CNNI-BCC, the IDBLL detector, or the screening model on the pretrained backbone "
                            "(fitted on every image, calibrated on held-out folds by woman); 'classifier' and "
                            "'detector' are older names of the first two")
    train.add_argument("--data", required=True, metavar="DIR", help="folder with Info.txt and the images")
    train.add_argument("--out", required=True, metavar="FILE.safetensors", help="where the best weights go")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    train.add_argument("--resume", action="store_true",
                       help="go on from the checkpoint beside --out (FILE.safetensors.checkpoint.pt, written after "
                            "every epoch and kept when training stops early), with the same options")
    train.add_argument("--epochs", type=int, default=None,
                       help="passes over the training data (default: 30 for CNNI-BCC, 40 for IDBLL)")
    train.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--batch-size", type=int, default=None, help="default 64 patches or 8 images")
    train.add_argument("--learning-rate", type=float, default=None, help="peak of the one-cycle schedule "
                                                                          "(default 0.001)")
    train.add_argument("--patches", default="middle", choices=["middle", "all", "breast"],
                       help="patch sampling: the poster's middle 4 columns (default), all 64, or those in the breast")
    train.add_argument("--crops-per-lesion", type=int, default=0, metavar="K",
                       help="classifier: add K jittered 128x128 crops around each located lesion of the training "
                            "images (default 0: the grid's patches only)")
    train.add_argument("--augment", default="seed", choices=["seed", "strong"],
                       help="detector: the poster's rotations and flip (default), or also zoom and gamma jitter")
    train.add_argument("--labelling", default="lesion", choices=["lesion", "image"],
                       help="patch labels from the lesion circles (default) or the image label")
    train.add_argument("--max-steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)
    train.add_argument("--cv-seeds", type=int, default=1,
                       help="screening: fold seeds of the cross-validation whose figures the weights keep (default "
                            "1; the first calibrates the verdict, so more seeds give the same model, more figures, "
                            "and take longer)")
    train.add_argument("--folds", type=int, default=5,
                       help="screening: folds by woman of that cross-validation (default 5)")
    add_tuning_arguments(train)
    train.add_argument("--progress-json", action="store_true", help="print progress as JSON lines on stdout")
    return train
