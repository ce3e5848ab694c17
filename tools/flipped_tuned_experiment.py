"""Cross-validate the tuned cell map with mirrored images: in training, at test time, and a finer box search.

    python tools/flipped_tuned_experiment.py --data "$NAPARI_MAMMO_MIAS" [--seeds 1] [--out runs/flips.json]

Mirroring the stage-4 *features* made the tuned map worse (docs/experiments.md); this
mirrors the *images* instead: each film's left-right mirror image (`tuned_cells.mirror_pixels`)
is run through the backbone once (its features cached beside the film's), and its lesions
mirrored with it (`ScreeningConfig.tune_mirrors`). In each fold of each seed the tuned map is fitted as the
shipped model fits it, once on the training films alone and once on them and their
mirror images; each is read on the held-out films as is, and averaged with its reading
of the mirror image (mirrored back, "test-time flip"). Every reading gives the lesion
sensitivity at 0.5, 1 and 2 false positives per image with the shipped box search, with
box centres moved to the score-weighted centre of the 3x3 cells around each maximum
("centroid"), and on the map upsampled twice ("up2"); and the verdict's AUC when its
asymmetry joins the fused score.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_mammo.evaluation.crossval import load_screening_features, mean_sd, woman_folds
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import (
    TUNED_ASYMMETRY,
    ScreeningConfig,
    add_tuned_asymmetry,
    box_detections,
    cell_boxes,
    fit_heads,
    fuse,
    other_film,
)
from napari_mammo.models.tuned_cells import fine_tune_cells, mirror_ref, tuned_maps, tuned_scores


def centroid_boxes(scores, breast, stride: float):
    """The boxes centred on the score-weighted centre of their 3x3 cells (the shipped search since session 9)."""
    return cell_boxes(scores, breast, stride, peak_centres=True)


def cell_centred_boxes(scores, breast, stride: float):
    """The boxes centred on their cells (the shipped search when this experiment ran)."""
    return cell_boxes(scores, breast, stride, peak_centres=False)


def up2_boxes(scores, breast, stride: float):
    """Boxes on the map upsampled twice (bilinear), the same 64-pixel suppression."""
    from scipy import ndimage

    up = ndimage.zoom(scores, 2, order=1, mode="nearest")
    return cell_boxes(up, np.repeat(np.repeat(breast, 2, 0), 2, 1), stride / 2, peak_centres=False)


SEARCHES = {"shipped": cell_centred_boxes, "centroid": centroid_boxes, "up2": up2_boxes}


def readings(net, refs, stage4) -> dict[str, dict]:
    """The map of each film as is ("plain") and averaged with its mirror image's, mirrored back ("tta")."""
    plain = tuned_maps(net, {ref: stage4[ref] for ref in refs})
    mirror = {ref: tuned_scores(net, stage4[mirror_ref(ref)].features)[:, ::-1] for ref in refs}
    return {"plain": plain, "tta": {ref: (plain[ref] + mirror[ref]) / 2 for ref in refs}}


def main() -> None:
    """Each fold of each seed: fit both ways, read both ways, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tune-epochs", type=int, default=ScreeningConfig.tune_epochs, help="fewer for a smoke run")
    args = parser.parse_args()
    config = ScreeningConfig(tune_epochs=args.tune_epochs, fine_asymmetry=False)  # the verdict as when this was run
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells, stage4 = load_screening_features(records, replace(config, tune_mirrors=True))  # films and mirrors
    rows = []
    for seed in range(args.seeds):
        parts = woman_folds(records, args.folds, seed)
        for k, test in enumerate(parts):
            started = time.monotonic()
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            heads = fit_heads(train, cells, by_ref, config, seed * 100 + k)
            truth = np.array([r.label != "normal" for r in test])
            row = {"seed": seed, "fold": k}
            for fitted, mirrors in (("originals", False), ("with mirrors", True)):
                net = fine_tune_cells(train, stage4, cells, replace(config, tune_mirrors=mirrors), seed * 100 + k)
                for read, maps in readings(net, list(by_ref), stage4).items():
                    name = f"{fitted}/{read}"
                    for search, boxes_of in SEARCHES.items():
                        detections = [box_detections(boxes_of(maps[r.ref], cells[r.ref].breast, 32.0)) for r in test]
                        curve = froc(list(zip(detections, test, strict=True)))
                        for fp in (0.5, 1, 2):
                            row[f"{name}/{search}/sens@{fp}"] = sensitivity_at(curve, fp)
                    add_tuned_asymmetry(heads, train, cells, maps, by_ref)
                    fused = []
                    for record in test:
                        partner = other_film(record, by_ref)
                        tuned = {TUNED_ASYMMETRY: (maps[record.ref], maps[partner.ref] if partner else None)}
                        values, _ = heads.film_scores(cells[record.ref], cells[partner.ref] if partner else None,
                                                      tuned)
                        fused.append(fuse(values, heads.standardise))
                    row[f"{name}/auc_fused"] = roc_auc(truth, np.array(fused))
            rows.append(row)
            print(f"seed {seed} fold {k} ({time.monotonic() - started:.0f} s): "
                  + ", ".join(f"{key} {value:.3f}" for key, value in row.items() if key not in ("seed", "fold")),
                  flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    keys = [key for key in rows[0] if key not in ("seed", "fold")]
    print("| reading | mean ± sd |\n|---|---|")
    for key in keys:
        s = mean_sd([r[key] for r in rows])
        print(f"| {key} | {s['mean']:.3f} ± {s['sd']:.3f} |")


if __name__ == "__main__":
    main()
