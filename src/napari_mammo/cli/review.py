"""`napari-mammo review`: both models against the truth of a labelled folder, by suspicion."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_mammo.cli.common import evaluation_records, json_safe, probability, progress_bar
from napari_mammo.engine.runtime import DEVICES
from napari_mammo.errors import MammoInputError
from napari_mammo.models.idbll.predict import BOX_THRESHOLD


def run(args: argparse.Namespace) -> int:
    """Both models on a labelled folder against its truth: a table by suspicion, the summary, FROC and ROC."""
    from napari_mammo.engine.progress import run_to_end
    from napari_mammo.evaluation.plots import plot_review
    from napari_mammo.evaluation.review import format_review, iter_predict_folder, review_predictions
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier
    from napari_mammo.models.idbll.predict import LesionDetector

    classifier = PatchClassifier.load(args.classifier_weights, device=args.device)
    detector = LesionDetector.load(args.detector_weights, device=args.device)
    records = evaluation_records(args.data, args.split, classifier.metadata, detector.metadata)
    with progress_bar("reviewing", "image") as show:
        predictions, skipped = run_to_end(iter_predict_folder(records, classifier, detector), show)
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


def add_parser(sub) -> argparse.ArgumentParser:
    """The `review` command's arguments."""
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
    return review
