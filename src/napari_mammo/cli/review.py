"""`napari-mammo review`: a model's verdicts and boxes against the truth of a labelled folder, by suspicion."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from napari_mammo.cli.common import evaluation_records, json_safe, probability, progress_bar, untrained_records
from napari_mammo.engine.runtime import DEVICES
from napari_mammo.errors import MammoInputError
from napari_mammo.models.idbll.predict import BOX_THRESHOLD


def run(args: argparse.Namespace) -> int:
    """The screening model (or the poster's two) on a labelled folder against its truth: a table by suspicion,
    the summary, FROC and ROC."""
    from napari_mammo.engine.progress import run_to_end
    from napari_mammo.evaluation.plots import plot_review
    from napari_mammo.evaluation.review import format_review, review_predictions

    poster_weights = args.classifier_weights or args.detector_weights
    if args.model == "screening" and poster_weights:
        raise ValueError("--classifier-weights and --detector-weights are the poster's models' weights: add "
                         "--model poster to review CNNI-BCC and IDBLL")
    if args.model == "poster" and args.weights:
        raise ValueError("--weights are screening weights; with --model poster give --classifier-weights and "
                         "--detector-weights")
    generator, threshold = screening_predictions(args) if args.model == "screening" else poster_predictions(args)
    threshold = threshold if args.threshold is None else args.threshold
    with progress_bar("reviewing", "image") as show:
        predictions, skipped = run_to_end(generator, show)
    for message in skipped:
        print(f"napari-mammo: warning: skipped {message}", file=sys.stderr)
    if not predictions:
        raise MammoInputError(Path(args.data), "no image could be reviewed")
    reviews, summary = review_predictions(predictions, threshold)
    if args.plot:
        plot_review(summary, args.plot)
    if args.json:
        print(json.dumps(json_safe({"images": [vars(r) for r in reviews], "summary": summary, "split": args.split,
                                    "model": args.model}), allow_nan=False))
    else:
        print(format_review(reviews, summary))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def screening_predictions(args: argparse.Namespace):
    """The screening model's predictions on the images of the folder it was not fitted on (see --split), and
    its default box threshold."""
    from napari_mammo.evaluation.review import iter_screen_folder
    from napari_mammo.models.screener import Screener

    screener = Screener.load(args.weights)
    records = untrained_records(args.data, screener.metadata, args.split)
    return iter_screen_folder(records, screener), screener.box_threshold


def poster_predictions(args: argparse.Namespace):
    """CNNI-BCC's verdicts and IDBLL's boxes on the split both hold out (see --split), and IDBLL's default box
    threshold."""
    from napari_mammo.evaluation.review import iter_predict_folder
    from napari_mammo.models.cnni_bcc.predict import PatchClassifier
    from napari_mammo.models.idbll.predict import LesionDetector

    classifier = PatchClassifier.load(args.classifier_weights, device=args.device)
    detector = LesionDetector.load(args.detector_weights, device=args.device)
    records = evaluation_records(args.data, args.split, classifier.metadata, detector.metadata)
    return iter_predict_folder(records, classifier, detector), BOX_THRESHOLD


def add_parser(sub) -> argparse.ArgumentParser:
    """The `review` command's arguments."""
    review = sub.add_parser("review", help="a model's verdicts and boxes against the truth of a labelled folder",
                            description="Screen (or classify and detect) every image of a MIAS-style folder; print "
                                        "the images by suspicion with verdict, lesions found and false positives, "
                                        "then lesion sensitivity, FP/image, verdict accuracy, FROC points and ROC "
                                        "AUC.")
    review.add_argument("--data", required=True, metavar="DIR")
    review.add_argument("--model", default="screening", choices=["screening", "poster"],
                        help="the screening model's verdicts and boxes, with the woman's other film when it is "
                             "beside the image (default), or the poster's: CNNI-BCC's verdicts and IDBLL's boxes")
    review.add_argument("--split", default="auto", choices=["auto", "test", "val", "train", "all"],
                        help="poster: the weights' recorded split to review (default auto: the test split, held "
                             "out from both models, when the folder holds it; else every image, as the Review "
                             "widget); screening: auto or test review the images it was not fitted on, all every "
                             "image")
    review.add_argument("--weights", metavar="FILE", help="screening weights (default: shipped)")
    review.add_argument("--threshold", type=probability, default=None,
                        help="box score threshold for the counts (default: the screening weights' own, 1 false "
                             f"positive per image on held-out women; for the poster's IDBLL {BOX_THRESHOLD}; FROC "
                             "uses every box)")
    review.add_argument("--classifier-weights", metavar="FILE", help="CNNI-BCC weights (default: shipped)")
    review.add_argument("--detector-weights", metavar="FILE", help="IDBLL weights (default: shipped)")
    review.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    review.add_argument("--plot", metavar="FILE.png", help="write the FROC and ROC curves here")
    review.add_argument("--json", action="store_true")
    return review
