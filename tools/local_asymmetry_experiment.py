"""Cross-validate local asymmetry: each cell's score against the mirrored neighbourhood of the other film.

    python tools/local_asymmetry_experiment.py --data "$NAPARI_MAMMO_MIAS" --seeds 3

The shipped heads are fitted on the training folds exactly as `napari-mammo crossval`
does; on each held-out film the cell-score map of the woman's other film is mirrored
left-right (MIAS films face each other) and max-filtered over K×K cells (tolerance for
the breasts' different placement); `local K` = the film's most suspicious cell after
subtracting that map. Prints one Markdown row per score: image AUC and, for the maps
used as detectors, lesion sensitivity at 1 FP/image, mean ± sd over folds and seeds.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from napari_mammo.evaluation.crossval import load_cells, woman_folds
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.models.screening import ScreeningConfig, cell_boxes, fit_heads, fuse, image_score, other_film, spread

SIZES = (1, 3, 5, 7)
WEIGHTS = (0.5, 1.0)


def mirrored_partner(scores: np.ndarray, partner: np.ndarray, size: int) -> np.ndarray:
    """The partner's cell scores mirrored left-right onto this film's grid and max-filtered over size×size."""
    mirrored = partner[:, ::-1]
    grid = np.zeros_like(scores)
    rows, cols = min(grid.shape[0], mirrored.shape[0]), min(grid.shape[1], mirrored.shape[1])
    grid[:rows, :cols] = mirrored[:rows, :cols]
    return ndimage.maximum_filter(grid, size=size, mode="nearest")


def film_values(heads, found, partner) -> tuple[dict, dict]:
    """Image scores of one film (the shipped ones and the local ones) and its detection maps."""
    values, scores = heads.film_scores(found, partner)
    maps = {"cells": scores}
    if partner is not None:
        other = heads.cells.scores(partner.features)
        for size in SIZES:
            values[f"local {size}"] = image_score(scores - mirrored_partner(scores, other, size), found.breast)
        for weight in WEIGHTS:
            maps[f"cells - {weight} x partner 5"] = scores - weight * mirrored_partner(scores, other, 5)
    else:
        values.update({f"local {size}": 0.0 for size in SIZES})
        maps.update({f"cells - {weight} x partner 5": scores for weight in WEIGHTS})
    return values, maps


def main() -> None:
    """Run the folds of each seed and print the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    records = read_folder(args.data)
    config = ScreeningConfig(tune_epochs=0, fine_asymmetry=False)  # the frozen heads only, as when this was run
    cells = load_cells(records, spec=config.features)
    by_ref = {r.ref: r for r in records}
    aucs: dict[str, list[float]] = {}
    sens: dict[str, list[float]] = {}

    def partner_of(record):
        other = other_film(record, by_ref)
        return cells[other.ref] if other is not None else None

    for seed in range(args.seeds):
        parts = woman_folds(records, args.folds, seed)
        for k, test in enumerate(parts):
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            heads = fit_heads(train, cells, by_ref, config, seed * 100 + k)
            train_values = [film_values(heads, cells[r.ref], partner_of(r))[0] for r in train]
            local_spread = {f"local {s}": spread(np.array([v[f"local {s}"] for v in train_values])) for s in SIZES}
            rows, dets = [], {}
            for record in test:
                values, maps = film_values(heads, cells[record.ref], partner_of(record))
                values["fused"] = fuse(values, heads.standardise)
                for size in SIZES:
                    values[f"fused + local {size}"] = values["fused"] + fuse(
                        {f"local {size}": values[f"local {size}"]}, {f"local {size}": local_spread[f"local {size}"]})
                rows.append(values)
                for name, grid in maps.items():
                    boxes = cell_boxes(grid, cells[record.ref].breast, cells[record.ref].stride)
                    dets.setdefault(name, []).append([Detection(b, "lesion", s) for b, s in boxes])
            truth = np.array([r.label != "normal" for r in test])
            for name in rows[0]:
                aucs.setdefault(name, []).append(roc_auc(truth, np.array([v[name] for v in rows])))
            for name, per_image in dets.items():
                sens.setdefault(name, []).append(sensitivity_at(froc(list(zip(per_image, test, strict=True))), 1))
            print(f"seed {seed} fold {k}: fused {aucs['fused'][-1]:.3f}, fused + local 5 "
                  f"{aucs['fused + local 5'][-1]:.3f}", flush=True)
    print("| score | image AUC | sensitivity at 1 FP/image |\n|---|---|---|")
    for name, values in aucs.items():
        print(f"| {name} | {np.nanmean(values):.3f} ± {np.nanstd(values, ddof=1):.3f} | |")
    for name, values in sens.items():
        print(f"| boxes from {name} | | {np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} |")


if __name__ == "__main__":
    main()
