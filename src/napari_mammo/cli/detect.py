"""`napari-mammo detect`: lesion boxes for each image, from the screening model's tuned cell map or IDBLL."""

from __future__ import annotations

import argparse
import json

from napari_mammo.cli.common import chosen_model, each_image, json_safe, model_name, probability
from napari_mammo.engine.runtime import DEVICES
from napari_mammo.models.idbll.predict import BOX_THRESHOLD

MODELS = ("screening", "idbll")
"""The models that give boxes; the first is the default."""


def run(args: argparse.Namespace) -> int:
    """Detect lesions with the screening model or IDBLL; JSON list on stdout with --json."""
    if chosen_model(args.model, args.weights, MODELS) == "idbll":
        from napari_mammo.models.idbll.predict import LesionDetector

        detector = LesionDetector.load(args.weights, device=args.device)
        threshold = BOX_THRESHOLD if args.score_threshold is None else args.score_threshold

        def detections_of(path: str) -> list:
            return detector.detect_file(path, score_threshold=threshold)
    else:
        from napari_mammo.models.screener import Screener

        screener = Screener.load(args.weights)
        threshold = screener.box_threshold if args.score_threshold is None else args.score_threshold

        def detections_of(path: str) -> list:
            # the boxes come from this film alone; the other film would only change the verdict
            return screener.screen_file(path).detections(threshold)

    def detect(path: str) -> dict:
        return {"path": path, "detections": [d.to_json() for d in detections_of(path)]}

    results, failed = each_image(args.images, detect, args.jsonl)
    if args.json and not args.jsonl:  # with --jsonl each result was printed as it came
        print(json.dumps(json_safe(results), indent=2, allow_nan=False))
    elif not args.jsonl:
        for entry in results:
            print(f"{entry['path']}: {len(entry['detections'])} detection(s) with score >= {threshold:.3f}")
            for det in entry["detections"][:10]:
                r0, c0, r1, c1 = det["box"]
                print(f"  {det['label']} {det['score']:.3f}  rows {r0:.0f}-{r1:.0f}, cols {c0:.0f}-{c1:.0f}")
            if len(entry["detections"]) > 10:
                print(f"  … {len(entry['detections']) - 10} more (use --json for all)")
    return 2 if failed else 0


def add_parser(sub) -> argparse.ArgumentParser:
    """The `detect` command's arguments."""
    detect = sub.add_parser("detect", help="find lesions with the screening model or the IDBLL detector",
                            description="Boxes in each image's pixel coordinates (row 0 at the top), sorted by "
                                        "score, every one above the threshold.")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of images")
    detect.add_argument("--model", choices=[*MODELS, "detector"], type=model_name,
                        help="the screening model's boxes (local maxima of its tuned cell map, 96x96 pixels at 0.2 "
                             "mm; it finds the most lesions in cross-validation), or the poster's IDBLL (default: "
                             "the model of --weights, else screening)")
    detect.add_argument("--weights", metavar="FILE", help="a .safetensors file of that model (default: shipped)")
    detect.add_argument("--score-threshold", type=probability, default=None, metavar="T",
                        help="keep detections scoring at least T, between 0 and 1 (default, as in the widget: for "
                             "the screening model the score that gave 1 false positive per image on held-out "
                             f"women, recorded in its weights; for IDBLL {BOX_THRESHOLD}; 0.01 for a FROC curve)")
    detect.add_argument("--device", default="auto", choices=DEVICES, help="IDBLL: where torch runs (default: auto)")
    detect.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    detect.add_argument("--jsonl", action="store_true",
                        help="print one JSON object per line as each image is done (kept if interrupted)")
    return detect
