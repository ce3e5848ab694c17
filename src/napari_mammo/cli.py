"""The `napari-mammo` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_mammo import __version__
from napari_mammo.engine.runtime import DEVICES
from napari_mammo.errors import MammoInputError
from napari_mammo.models.idbll.predict import BOX_THRESHOLD


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
        print(json.dumps(json_safe(entries), indent=2, allow_nan=False))
    else:
        print("\n".join(_format_entry(e) for e in entries))
    return 0


def _progress_printer(as_json: bool):
    """A progress callback: tqdm bars on stderr, or one JSON object per line on stdout."""
    if as_json:
        def emit(event: dict) -> None:
            print(json.dumps(event), flush=True)

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


def _records_for_training(data: str) -> list:
    """Records of a MIAS-style data folder, refusing one without images."""
    from napari_mammo.io.mias import read_folder

    records = read_folder(Path(data))
    if not records:
        raise MammoInputError(Path(data), "no images to train on")
    return records


def _stop_on_signals() -> None:
    """SIGINT and SIGTERM stop training cleanly (KeyboardInterrupt), even where the shell ignored SIGINT."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def train_screening(args: argparse.Namespace) -> int:
    """Fit the screening model on every image of a folder, calibrated on held-out folds; write its weights."""
    from tqdm import tqdm

    from napari_mammo.evaluation.crossval import format_crossval, load_cells
    from napari_mammo.io.mias import read_folder
    from napari_mammo.models.screening import ScreeningConfig
    from napari_mammo.training.screening import fit_screener

    records = read_folder(args.data)
    config = ScreeningConfig()
    with tqdm(total=len(records), desc="backbone features", unit="image", file=sys.stderr, leave=False) as bar:
        cells = load_cells(records, lambda done, total: bar.update(done - bar.n), config.features)
    with tqdm(desc="folds", unit="fold", file=sys.stderr, leave=False) as bar:
        metadata = fit_screener(records, cells, args.out, config, seeds=args.cv_seeds,
                                progress=lambda done, total: (setattr(bar, "total", total), bar.update(done - bar.n)))
    print(format_crossval({**metadata["crossval"]}), file=sys.stderr)
    point = metadata["operating_point"]["both"]
    print(f"operating point (held-out, both films): p(abnormal) >= {point['threshold']:.3f}, sensitivity "
          f"{point['sensitivity']:.3f}, specificity {point['specificity']:.3f}; wrote {args.out}", file=sys.stderr)
    return 0


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


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model on a MIAS-style folder."""
    check_output(args.out, args.overwrite)
    if args.model == "screening":
        return train_screening(args)
    _stop_on_signals()
    records = _records_for_training(args.data)
    show, close = _progress_printer(args.progress_json)
    try:
        if args.model == "classifier":
            from napari_mammo.training.cnni_bcc import ClassifierConfig, train_classifier

            config = ClassifierConfig(epochs=args.epochs, seed=args.seed, device=args.device,
                                      patches=args.patches, labelling=args.labelling,
                                      crops_per_lesion=args.crops_per_lesion, batch_size=args.batch_size or 64,
                                      learning_rate=args.learning_rate,
                                      max_steps_per_epoch=args.max_steps_per_epoch)
            result = train_classifier(records, args.out, config, progress=show)
        else:
            from napari_mammo.training.idbll import DetectorConfig, train_detector

            config = DetectorConfig(epochs=args.epochs, seed=args.seed, device=args.device,
                                    batch_size=args.batch_size or 8, learning_rate=args.learning_rate,
                                    augment=args.augment,
                                    max_steps_per_epoch=args.max_steps_per_epoch)
            result = train_detector(records, args.out, config, progress=show)
    finally:
        close()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 writes and reports
        return 130 if result.stopped else 0
    if result.path is None:
        print("napari-mammo: stopped before any weights were kept", file=sys.stderr)
        return 1
    state = "stopped early; kept" if result.stopped else "kept"
    print(f"{state} the weights of epoch {result.best_epoch} (validation score {result.best_score:.3f}) "
          f"in {result.path}", file=sys.stderr)
    return 130 if result.stopped else 0


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


def _each_image(paths: list[str], work, lines: bool = False) -> tuple[list[dict], int]:
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


def cmd_classify(args: argparse.Namespace) -> int:
    """Classify images with CNNI-BCC; JSON list on stdout with --json."""
    if args.model == "cnni-bcc":
        from napari_mammo.models.cnni_bcc.predict import PatchClassifier

        classifier = PatchClassifier.load(args.weights, device=args.device)
        results, failed = _each_image(
            args.images, lambda path: classifier.classify_file(path, selection=args.patches).to_json(path),
            args.jsonl)
    else:
        from napari_mammo.models.screener import Screener, partner_file

        screener = Screener.load(args.weights)

        def screen(path: str) -> dict:
            other = args.other if args.other != "auto" else partner_file(path)
            other = None if other == "none" else other
            return screener.screen_file(path, other).to_json(path)

        results, failed = _each_image(args.images, screen, args.jsonl)
    if args.json and not args.jsonl:  # with --jsonl each result was printed as it came
        print(json.dumps(json_safe(results), indent=2, allow_nan=False))
    elif not args.jsonl:
        print(f"{'image':<40} {'verdict':<10} {'normal':>7} {'benign':>7} {'malignant':>9}  patches N/B/M  films")
        for entry in results:
            p = entry["probabilities"]
            counts = [sum(1 for q in entry["patches"] if q["label"] == name) for name in p]
            films = "" if "both_breasts" not in entry else ("both" if entry["both_breasts"] else "this one")
            print(f"{entry['path']:<40} {entry['label']:<10} {p['normal']:7.3f} {p['benign']:7.3f} "
                  f"{p['malignant']:9.3f}  {counts[0]}/{counts[1]}/{counts[2]:<8} {films}")
    return 2 if failed else 0


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect lesions with IDBLL; JSON list on stdout with --json."""
    from napari_mammo.models.idbll.predict import LesionDetector

    detector = LesionDetector.load(args.weights, device=args.device)

    def detect(path: str) -> dict:
        detections = detector.detect_file(path, score_threshold=args.score_threshold)
        return {"path": path, "detections": [d.to_json() for d in detections]}

    results, failed = _each_image(args.images, detect, args.jsonl)
    if args.json and not args.jsonl:  # with --jsonl each result was printed as it came
        print(json.dumps(json_safe(results), indent=2, allow_nan=False))
    elif not args.jsonl:
        for entry in results:
            print(f"{entry['path']}: {len(entry['detections'])} detection(s) with score >= {args.score_threshold}")
            for det in entry["detections"][:10]:
                r0, c0, r1, c1 = det["box"]
                print(f"  {det['label']} {det['score']:.3f}  rows {r0:.0f}-{r1:.0f}, cols {c0:.0f}-{c1:.0f}")
            if len(entry["detections"]) > 10:
                print(f"  … {len(entry['detections']) - 10} more (use --json for all)")
    return 2 if failed else 0


def _evaluation_records(data: str, split: str, *metadata: dict) -> list:
    """The records to evaluate: a split named in every given weights' metadata, or all of them.

    With several models' weights, the split's images are those all of them hold out. 'auto'
    (the default) takes the test split when the folder holds any of its images, and every
    image otherwise (another labelled folder, as the Review widget does), saying so.
    """
    records = _records_for_training(data)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a model on a labelled folder."""
    if args.model == "detector":
        return _evaluate_detector(args)
    from napari_mammo.evaluation.classifier import evaluate_classifier, format_evaluation
    from napari_mammo.evaluation.plots import plot_report
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier

    classifier = PatchClassifier.load(args.weights, device=args.device)
    records = _evaluation_records(args.data, args.split, classifier.metadata)
    from tqdm import tqdm

    with tqdm(total=len(records), desc="evaluating", unit="image", file=sys.stderr, leave=False) as bar:
        report = evaluate_classifier(classifier, records, selection=args.patches,
                                     progress=lambda i, n: bar.update(1))
    report["weights"] = str(classifier.source)
    report["split"] = args.split
    if args.plot:
        report["plot"] = str(plot_report(report, args.plot))
    if args.json:
        print(json.dumps(json_safe(report), allow_nan=False))
    else:
        print(format_evaluation(report))
        if args.plot:
            print(f"plot: {report['plot']}")
    return 0


def _evaluate_detector(args: argparse.Namespace) -> int:
    """FROC evaluation of IDBLL."""
    from tqdm import tqdm

    from napari_mammo.evaluation.detector import evaluate_detector
    from napari_mammo.evaluation.plots import plot_froc
    from napari_mammo.models.idbll.predict import LesionDetector

    detector = LesionDetector.load(args.weights, device=args.device)
    records = _evaluation_records(args.data, args.split, detector.metadata)
    with tqdm(total=len(records), desc="evaluating", unit="image", file=sys.stderr, leave=False) as bar:
        report = evaluate_detector(detector, records, progress=lambda i, n: bar.update(1))
    report["weights"] = str(detector.source)
    report["split"] = args.split
    if args.plot:
        report["plot"] = str(plot_froc(report, args.plot))
    if args.json:
        print(json.dumps(json_safe(report), allow_nan=False))
    else:
        sens = report["sensitivity_at_fp"]
        print(f"{report['images']} images, {report['lesions']} located lesions ({args.split} split)")
        print(f"lesion sensitivity at 0.5 / 1 / 2 FP per image: {sens['0.5']:.3f} / {sens['1']:.3f} / {sens['2']:.3f}")
        print(f"mAP@0.5 IoU: {report['map_50']:.3f}")
        if args.plot:
            print(f"plot: {report['plot']}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Both models on a labelled folder against its truth: a table by suspicion, the summary, FROC and ROC."""
    from tqdm import tqdm

    from napari_mammo.engine.progress import drive
    from napari_mammo.evaluation.plots import plot_review
    from napari_mammo.evaluation.review import format_review, iter_predict_folder, review_predictions
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier
    from napari_mammo.models.idbll.predict import LesionDetector

    classifier = PatchClassifier.load(args.classifier_weights, device=args.device)
    detector = LesionDetector.load(args.detector_weights, device=args.device)
    records = _evaluation_records(args.data, args.split, classifier.metadata, detector.metadata)
    with tqdm(total=len(records), desc="reviewing", unit="image", file=sys.stderr, leave=False) as bar:
        predictions, skipped = drive(iter_predict_folder(records, classifier, detector), lambda _: bar.update(1))
    for message in skipped:
        print(f"napari-mammo: warning: skipped {message}", file=sys.stderr)
    if not predictions:
        raise MammoInputError(Path(args.data), "no image could be reviewed")
    reviews, summary = review_predictions(predictions, args.threshold)
    if args.plot:
        plot_review(summary, args.plot)
    if args.json:
        print(json.dumps(json_safe({"images": [vars(r) for r in reviews], "summary": summary, "split": args.split}),
                         allow_nan=False))
    else:
        print(format_review(reviews, summary))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def has_display() -> bool:
    """Whether a window (and OpenGL for napari's canvas) can be opened here."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32"))


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: shipped weights on the bundled sample, in napari or as PNG + JSON."""
    from napari_mammo.demo import run_demo

    if args.screenshot and (args.headless or not has_display()):
        raise ValueError("--screenshot captures the napari window and needs a display (use xvfb-run -a); "
                         "--headless draws demo.png without napari")
    headless = args.headless or not has_display()
    result = run_demo(Path(args.out), headless, Path(args.screenshot) if args.screenshot else None)
    c = result["classification"]
    films = "both films" if c.get("both_breasts") else "this film only"
    print(f"{result['image']}: truth {result['truth']['label']}, screening {c['label']} (p abnormal "
          f"{c['score']:.2f}, threshold {c['threshold']:.2f}, {films}), {len(result['detections'])} IDBLL box(es) "
          f"at score >= {BOX_THRESHOLD}; research use only, not for diagnosis")
    if headless or args.screenshot:
        print(f"screenshot: {result['files']['png']}")
    if headless:
        print(f"report: {result['files']['json']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the speed benchmark and print the ratios."""
    from napari_mammo.bench.models import (
        bench_classifier,
        bench_detector,
        bench_screening,
        format_detector_report,
        format_report,
        format_screening_report,
    )

    def show(step: int, steps: int, key: str, value: dict) -> None:
        print(f"[{step}/{steps}] {key}: {value['seconds'] * 1000:.1f} ms", file=sys.stderr, flush=True)

    report = {}
    if args.model in ("classifier", "all"):
        report["classifier"] = bench_classifier(threads=args.threads, repeats=args.repeats, progress=show)
    if args.model in ("detector", "all"):
        report["detector"] = bench_detector(threads=args.threads, repeats=max(args.repeats, 5))
    if args.model in ("screening", "all"):
        report["screening"] = bench_screening(threads=args.threads, repeats=args.repeats)
    if args.model == "napari" and not has_display():
        raise ValueError("bench napari needs a display (napari draws with OpenGL); run it as "
                         "`xvfb-run -a napari-mammo bench napari`")
    if args.model == "napari" or (args.model == "all" and has_display()):
        from napari_mammo.plugin.memory_bench import bench_viewer_memory

        report["napari"] = bench_viewer_memory(threads=args.threads)
    if args.json:
        print(json.dumps(json_safe(report), indent=2, allow_nan=False))
    else:
        if "classifier" in report:
            print(format_report(report["classifier"]))
        if "detector" in report:
            print(format_detector_report(report["detector"]))
        if "screening" in report:
            print(format_screening_report(report["screening"]))
        if "napari" in report:
            from napari_mammo.plugin.memory_bench import format_memory_report

            print(format_memory_report(report["napari"]))
    return 0


def json_safe(value):
    """A report with every NaN or infinite number as null, so that the JSON is valid."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def cmd_crossval(args: argparse.Namespace) -> int:
    """Cross-validate the screening model by woman on a labelled folder; print and write the figures."""
    from tqdm import tqdm

    from napari_mammo.evaluation.crossval import cross_validate, format_crossval, load_cells
    from napari_mammo.io.atomic import atomic_write_bytes
    from napari_mammo.io.mias import read_folder
    from napari_mammo.models.screening import ScreeningConfig

    records = read_folder(args.data)
    config = ScreeningConfig(layer=args.layer, zoom=args.zoom, weight_decay=args.weight_decay,
                             contralateral_weight_decay=args.contralateral_weight_decay, top_cells=args.top_cells)
    if args.folds < 2 or args.folds > len({r.woman for r in records}):
        raise ValueError(f"--folds must be between 2 and the number of women in {args.data}")
    with tqdm(total=len(records), desc="backbone features", unit="image", file=sys.stderr, leave=False) as bar:
        cells = load_cells(records, lambda done, total: bar.update(done - bar.n), config.features)
    with tqdm(total=args.folds * args.seeds, desc="folds", unit="fold", file=sys.stderr, leave=False) as bar:
        report = cross_validate(records, cells, args.folds, range(args.seeds), config,
                                lambda d, t: bar.update(d - bar.n))
    text = json.dumps(json_safe(report), indent=2, allow_nan=False)
    if args.out:
        atomic_write_bytes(args.out, (text + "\n").encode())
    print(text if args.json else format_crossval(report))
    return 0


def probability(text: str) -> float:
    """An argparse type: a number between 0 and 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="napari-mammo",
        description="Mammogram readers, CNNI-BCC patch classifier and IDBLL lesion locator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="print what the readers see in images or a MIAS folder",
                          description="Print size, pixel size, label and lesions of mammograms "
                                      "(PGM, DICOM, PNG, TIFF) or of every image of a MIAS folder.")
    info.add_argument("paths", nargs="+", metavar="PATH", help="image file, MIAS folder or Info.txt")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=cmd_info)

    train = sub.add_parser("train", help="train the classifier or the detector on a MIAS-style folder",
                           description="Train on the train part of a seeded, pair-aware split of a MIAS-style "
                                       "folder; 20% of the women are held out as a test split and never used. "
                                       "Runs under torchrun for several processes (DDP).")
    train.add_argument("model", choices=["classifier", "detector", "screening"],
                       help="CNNI-BCC, the IDBLL detector, or the screening model on the pretrained backbone "
                            "(fitted on every image, calibrated on held-out folds by woman)")
    train.add_argument("--data", required=True, metavar="DIR", help="folder with Info.txt and the images")
    train.add_argument("--out", required=True, metavar="FILE.safetensors", help="where the best weights go")
    train.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    train.add_argument("--epochs", type=int, default=30, help="passes over the training data (default 30)")
    train.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--batch-size", type=int, default=None, help="default 64 patches or 8 images")
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--patches", default="middle", choices=["middle", "all", "breast"],
                       help="patch sampling: the seed's middle 4 columns (default), all 64, or those in the breast")
    train.add_argument("--crops-per-lesion", type=int, default=0, metavar="K",
                       help="classifier: add K jittered 128x128 crops around each located lesion of the training "
                            "images (default 0: the grid's patches only)")
    train.add_argument("--augment", default="seed", choices=["seed", "strong"],
                       help="detector: the poster's rotations and flip (default), or also zoom and gamma jitter")
    train.add_argument("--labelling", default="lesion", choices=["lesion", "image"],
                       help="patch labels from the lesion circles (default) or the image label")
    train.add_argument("--max-steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)
    train.add_argument("--cv-seeds", type=int, default=3,
                       help="screening: fold seeds of the cross-validation kept in the model card (default 3)")
    train.add_argument("--progress-json", action="store_true", help="print progress as JSON lines on stdout")
    train.set_defaults(func=cmd_train)

    crossval = sub.add_parser("crossval", help="cross-validate the screening model by woman on a labelled folder",
                              description="K-fold cross-validation by woman (both films together, stratified by "
                                          "worst finding) of the screening model on the pretrained backbone: "
                                          "image AUC (most suspicious cell, left-minus-right, fused), "
                                          "benign-vs-malignant AUC and lesion sensitivity at 0.5/1/2 FP per image, "
                                          "as mean ± sd over folds and pooled with a 95% bootstrap interval. "
                                          "Backbone features are cached (NAPARI_MAMMO_CACHE, else ~/.cache).")
    crossval.add_argument("model", choices=["screening"], help="the model to cross-validate")
    crossval.add_argument("--data", required=True, metavar="DIR", help="folder with Info.txt and the images")
    crossval.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    crossval.add_argument("--seeds", type=int, default=1, help="repeat with this many fold seeds (default 1)")
    crossval.add_argument("--layer", default="blocks", choices=["head", "blocks", "stage5", "stage4"],
                          help="backbone features: the last blocks (320 channels, stride 32; default), after the "
                               "head conv (1280), stage 5 (192) or stage 4 (112, stride 16)")
    crossval.add_argument("--zoom", type=float, default=1.0, help="zoom of the 0.2 mm image before the backbone")
    crossval.add_argument("--weight-decay", type=float, default=1.0, help="L2 penalty of the cell heads")
    crossval.add_argument("--contralateral-weight-decay", type=float, default=1.0,
                          help="L2 penalty of the left-minus-right head")
    crossval.add_argument("--top-cells", type=int, default=1, help="image score: mean of this many top cells")
    crossval.add_argument("--out", metavar="FILE.json", help="also write the full report as JSON")
    crossval.add_argument("--json", action="store_true", help="print the full report as JSON")
    crossval.set_defaults(func=cmd_crossval)

    classify = sub.add_parser("classify", help="classify mammograms with CNNI-BCC",
                              description="Classify each image's 128x128 patches and give an image verdict "
                                          "(the most suspicious patch decides).")
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of images")
    classify.add_argument("--model", default="screening", choices=["screening", "cnni-bcc"],
                          help="the screening model on the pretrained backbone (default), or the poster's CNNI-BCC")
    classify.add_argument("--weights", metavar="FILE", help="a .safetensors file of that model (default: shipped)")
    classify.add_argument("--other", default="auto", metavar="FILE|auto|none",
                          help="screening: the woman's other film (same view); 'auto' (default) takes the MIAS "
                               "partner beside the image (mdb001 <-> mdb002), 'none' screens the film alone")
    classify.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    classify.add_argument("--patches", default="breast", choices=["breast", "all", "middle"],
                          help="which patches to classify (default: those in the breast)")
    classify.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    classify.add_argument("--jsonl", action="store_true",
                          help="print one JSON object per line as each image is done (kept if interrupted)")
    classify.set_defaults(func=cmd_classify)

    detect = sub.add_parser("detect", help="find lesions with the IDBLL detector",
                            description="Boxes in each image's pixel coordinates (row 0 at the top), sorted by "
                                        "score, every one above the threshold.")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of images")
    detect.add_argument("--weights", metavar="FILE", help="an IDBLL .safetensors file (default: shipped)")
    detect.add_argument("--score-threshold", type=probability, default=BOX_THRESHOLD, metavar="T",
                        help=f"keep detections scoring at least T, between 0 and 1 (default {BOX_THRESHOLD}, as in "
                             "the widget; 0.05 for a FROC curve)")
    detect.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    detect.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    detect.add_argument("--jsonl", action="store_true",
                        help="print one JSON object per line as each image is done (kept if interrupted)")
    detect.set_defaults(func=cmd_detect)

    evaluate = sub.add_parser("evaluate", help="evaluate a model on a labelled MIAS-style folder",
                              description="Patch and image accuracy, confusion matrix, per-class sensitivity "
                                          "and specificity, ROC AUC, and a PNG of the curves.")
    evaluate.add_argument("model", choices=["classifier", "detector"])
    evaluate.add_argument("--data", required=True, metavar="DIR")
    evaluate.add_argument("--weights", metavar="FILE", help="weights file (default: shipped)")
    evaluate.add_argument("--split", default="auto", choices=["auto", "test", "val", "train", "all"],
                          help="which part of the weights' recorded split to evaluate (default auto: the test "
                               "split when the folder holds it, else every image)")
    evaluate.add_argument("--patches", default="breast", choices=["breast", "all", "middle"])
    evaluate.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    evaluate.add_argument("--plot", metavar="FILE.png", help="write the ROC / FROC curves here")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=cmd_evaluate)

    review = sub.add_parser("review", help="both models against the truth of a labelled folder",
                            description="Classify and detect every image of a MIAS-style folder; print the images "
                                        "by suspicion with verdict, lesions found and false positives, then lesion "
                                        "sensitivity, FP/image, verdict accuracy, FROC points and ROC AUC.")
    review.add_argument("--data", required=True, metavar="DIR")
    review.add_argument("--split", default="auto", choices=["auto", "test", "val", "train", "all"],
                        help="the weights' recorded split to review (default auto: the test split, held out from "
                             "both models, when the folder holds it; else every image, as the Review widget)")
    review.add_argument("--threshold", type=probability, default=BOX_THRESHOLD,
                        help=f"box score threshold (default {BOX_THRESHOLD})")
    review.add_argument("--classifier-weights", metavar="FILE", help="CNNI-BCC weights (default: shipped)")
    review.add_argument("--detector-weights", metavar="FILE", help="IDBLL weights (default: shipped)")
    review.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    review.add_argument("--plot", metavar="FILE.png", help="write the FROC and ROC curves here")
    review.add_argument("--json", action="store_true")
    review.set_defaults(func=cmd_review)

    demo = sub.add_parser("demo", help="run both shipped models on the bundled sample",
                          description="The shipped weights on a synthetic mammogram (or, with NAPARI_MAMMO_MIAS "
                                      "set, a mini-MIAS test image). With a display it opens napari; without one "
                                      "(or --headless) it writes demo.png and demo.json.")
    demo.add_argument("--headless", action="store_true", help="write a PNG and a JSON report, open no window")
    demo.add_argument("--out", default="napari-mammo-demo", metavar="DIR", help="where headless output goes")
    demo.add_argument("--screenshot", metavar="FILE.png",
                      help="open napari, save a screenshot of its window here and close it")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="time CNNI-BCC (fast vs plain nn.Conv2d) and IDBLL detection",
                           description="CNNI-BCC: inference and a training step of 64 patches, fast vs plain "
                                       "NCHW, and one whole 1024x1024 image, each in a fresh process; prints the "
                                       "ratios. IDBLL: median detection time per 1024x1024 image. napari: peak RSS "
                                       "of the whole workflow in a shown viewer.")
    bench.add_argument("model", nargs="?", default="all",
                       choices=["all", "classifier", "detector", "screening", "napari"],
                       help="what to measure; 'napari' is the peak RSS of a shown viewer classifying and "
                            "detecting one 1024x1024 image (needs a display: use xvfb-run -a on a server)")
    bench.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    bench.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.set_defaults(func=cmd_bench)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one line on stderr; library deprecation noise is left to Python's filters."""
    print(f"napari-mammo: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ResourceWarning):  # notes to developers
                warnings.simplefilter("ignore", category)
            warnings.showwarning = _show_warning
            return args.func(args)
    except BrokenPipeError:  # the reader went away (`napari-mammo info DIR | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (MammoInputError, ValueError, OSError) as err:
        if args.debug:
            raise
        print(f"napari-mammo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-mammo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
