"""`napari-mammo classify`: image verdicts and patch classes, with the screening model or CNNI-BCC."""

from __future__ import annotations

import argparse
import json

from napari_mammo.cli.common import chosen_model, each_image, json_safe
from napari_mammo.engine.runtime import DEVICES

MODELS = ("screening", "cnni-bcc")
"""The models that classify; the first is the default."""


def run(args: argparse.Namespace) -> int:
    """Classify images with the screening model or CNNI-BCC; a table, or JSON with --json / --jsonl."""
    if chosen_model(args.model, args.weights, MODELS) == "cnni-bcc":
        from napari_mammo.models.cnni_bcc.predict import PatchClassifier

        classifier = PatchClassifier.load(args.weights, device=args.device)
        results, failed = each_image(
            args.images, lambda path: classifier.classify_file(path, selection=args.patches).to_json(path),
            args.jsonl)
    else:
        from napari_mammo.models.screener import Screener, partner_file

        screener = Screener.load(args.weights)

        def screen(path: str) -> dict:
            other = partner_file(path) if args.other == "auto" else args.other
            return screener.screen_file(path, None if other == "none" else other).to_json(path)

        results, failed = each_image(args.images, screen, args.jsonl)
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


def add_parser(sub) -> argparse.ArgumentParser:
    """The `classify` command's arguments."""
    classify = sub.add_parser("classify", help="classify mammograms (the screening model, or CNNI-BCC)",
                              description="Give each image a verdict (normal, benign, malignant) with its "
                                          "probabilities and 128x128 patch classes; the screening model also "
                                          "compares the woman's other film when it is found.")
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of images")
    classify.add_argument("--model", choices=list(MODELS),
                          help="the screening model on the pretrained backbone, or the poster's CNNI-BCC (default: "
                               "the model of --weights, else screening)")
    classify.add_argument("--weights", metavar="FILE", help="a .safetensors file of that model (default: shipped)")
    classify.add_argument("--other", default="auto", metavar="FILE|auto|none",
                          help="screening: the woman's other film (same view); 'auto' (default) takes the one "
                               "beside the image (MIAS mdb001 <-> mdb002; DICOM: same PatientID and ViewPosition, "
                               "other ImageLaterality), 'none' screens the film alone")
    classify.add_argument("--device", default="auto", choices=DEVICES, help="where torch runs (default: auto)")
    classify.add_argument("--patches", default="breast", choices=["breast", "all", "middle"],
                          help="which patches to classify (default: those in the breast)")
    classify.add_argument("--json", action="store_true", help="print a JSON list, one object per image")
    classify.add_argument("--jsonl", action="store_true",
                          help="print one JSON object per line as each image is done (kept if interrupted)")
    return classify
