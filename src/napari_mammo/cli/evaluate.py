"""`napari-mammo evaluate`: one model against the truth of a labelled folder."""

from __future__ import annotations

import argparse
import json

from napari_mammo.cli.common import ALIASES, evaluation_records, json_safe, model_name, progress_bar, untrained_records
from napari_mammo.engine.runtime import DEVICES


def run(args: argparse.Namespace) -> int:
    """Evaluate a model on a labelled folder: its figures as text or JSON, the curves as a PNG."""
    parts = {"screening": screening_parts, "cnni-bcc": classifier_parts, "idbll": detector_parts}[args.model]
    model, measure, plot, describe = parts(args)
    if "trained_on" in model.metadata:  # fitted on whole folders, not on a recorded split
        records = untrained_records(args.data, model.metadata, args.split)
    else:
        records = evaluation_records(args.data, args.split, model.metadata)
    with progress_bar("evaluating", "image") as show:
        report = measure(model, records, show)
    report["weights"], report["split"] = str(model.source), args.split
    if args.plot:
        report["plot"] = str(plot(report, args.plot))
    if args.json:
        print(json.dumps(json_safe(report), allow_nan=False))
    else:
        print(describe(report))
        if args.plot:
            print(f"plot: {report['plot']}")
    return 0


def screening_parts(args: argparse.Namespace) -> tuple:
    """The screening model, and how it is measured, plotted and described."""
    from napari_mammo.evaluation.plots import plot_screening
    from napari_mammo.evaluation.screening import evaluate_screener, format_screening_evaluation
    from napari_mammo.models.screener import Screener

    def measure(model, records, show) -> dict:
        return evaluate_screener(model, records, show, other_film=not args.single_film)

    return Screener.load(args.weights), measure, plot_screening, format_screening_evaluation


def classifier_parts(args: argparse.Namespace) -> tuple:
    """CNNI-BCC, and how it is measured, plotted and described."""
    from napari_mammo.evaluation.classifier import evaluate_classifier, format_evaluation
    from napari_mammo.evaluation.plots import plot_report
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier

    classifier = PatchClassifier.load(args.weights, device=args.device)

    def measure(model, records, show) -> dict:
        return evaluate_classifier(model, records, selection=args.patches, progress=show)

    return classifier, measure, plot_report, format_evaluation


def detector_parts(args: argparse.Namespace) -> tuple:
    """IDBLL, and how it is measured (FROC), plotted and described."""
    from napari_mammo.evaluation.detector import evaluate_detector
    from napari_mammo.evaluation.plots import plot_froc
    from napari_mammo.models.idbll.predict import LesionDetector

    def describe(report: dict) -> str:
        sens = report["sensitivity_at_fp"]
        return (f"{report['images']} images, {report['lesions']} located lesions ({report['split']} split)\n"
                f"lesion sensitivity at 0.5 / 1 / 2 FP per image: {sens['0.5']:.3f} / {sens['1']:.3f} / "
                f"{sens['2']:.3f}\nmAP@0.5 IoU: {report['map_50']:.3f}")

    detector = LesionDetector.load(args.weights, device=args.device)
    return detector, lambda model, records, show: evaluate_detector(model, records, progress=show), plot_froc, describe


def add_parser(sub) -> argparse.ArgumentParser:
    """The `evaluate` command's arguments."""
    evaluate = sub.add_parser("evaluate", help="evaluate a model on a labelled MIAS-style folder",
                              description="screening: image AUC with its 95% interval by woman, sensitivity "
                                          "and specificity at the verdict's threshold, benign-vs-malignant AUC. "
                                          "CNNI-BCC: patch and image accuracy, confusion matrix, per-class "
                                          "sensitivity and specificity, ROC AUC. IDBLL: FROC and mAP. With --plot, "
                                          "a PNG of the curves.")
    evaluate.add_argument("model", choices=["screening", "cnni-bcc", "idbll", *ALIASES], type=model_name,
                          help="the screening model, CNNI-BCC or IDBLL ('classifier' and 'detector' are older "
                               "names of the last two)")
    evaluate.add_argument("--data", required=True, metavar="DIR")
    evaluate.add_argument("--weights", metavar="FILE", help="weights file (default: shipped)")
    evaluate.add_argument("--split", default="auto", choices=["auto", "test", "val", "train", "all"],
                          help="which part of the weights' recorded split to evaluate (default auto: the test "
                               "split when the folder holds it, else every image)")
    evaluate.add_argument("--patches", default="breast", choices=["breast", "all", "middle"],
                          help="CNNI-BCC: which patches to classify (default: those in the breast)")
    evaluate.add_argument("--single-film", action="store_true",
                          help="screening: screen each image alone, without the woman's other film beside it")
    evaluate.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    evaluate.add_argument("--plot", metavar="FILE.png", help="write the ROC / FROC curves here")
    evaluate.add_argument("--json", action="store_true")
    return evaluate
