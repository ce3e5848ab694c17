"""`napari-mammo evaluate`: one model against the truth of a labelled folder."""

from __future__ import annotations

import argparse
import json
import sys

from napari_mammo.cli.common import evaluation_records, json_safe
from napari_mammo.engine.runtime import DEVICES


def run(args: argparse.Namespace) -> int:
    """Evaluate a model on a labelled folder."""
    if args.model == "detector":
        return evaluate_detector(args)
    from napari_mammo.evaluation.classifier import evaluate_classifier, format_evaluation
    from napari_mammo.evaluation.plots import plot_report
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier

    classifier = PatchClassifier.load(args.weights, device=args.device)
    records = evaluation_records(args.data, args.split, classifier.metadata)
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


def evaluate_detector(args: argparse.Namespace) -> int:
    """FROC evaluation of IDBLL."""
    from tqdm import tqdm

    from napari_mammo.evaluation.detector import evaluate_detector
    from napari_mammo.evaluation.plots import plot_froc
    from napari_mammo.models.idbll.predict import LesionDetector

    detector = LesionDetector.load(args.weights, device=args.device)
    records = evaluation_records(args.data, args.split, detector.metadata)
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


def add_parser(sub) -> argparse.ArgumentParser:
    """The `evaluate` command's arguments."""
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
    return evaluate
