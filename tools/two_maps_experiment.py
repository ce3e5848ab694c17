"""Cross-validate two tuned cell maps together: one fitted on the films alone, one with their mirror images.

    python tools/two_maps_experiment.py --data "$NAPARI_MAMMO_MIAS" [--seeds 1] [--out runs/two-maps.json]
        [--first-seed 0] [--fits "films,mirrors,mirrors',mirrors x2,films x2,mirrors x4"] [--save-maps DIR]

The map fitted with mirror images finds more lesions, the map fitted on the films alone
gives the verdict a better asymmetry (docs/experiments.md, session 6). In each fold of
each seed this fits, on the training women, the films-alone map ("films"), the mirrors map
("mirrors"), a second mirrors map from another random seed ("mirrors'"), the same for the
films-alone map ("films'"), a mirrors map and a films-alone map trained twice as long
("mirrors x2", "films x2"), and a mirrors map trained four times as long ("mirrors x4").
It scores the held-out films' boxes (lesion sensitivity at 0.5, 1 and 2 false positives
per image, the shipped box search) and the verdict's AUC (the shipped fused score plus a
map's asymmetry) for each map, for the averages of two maps ("films+mirrors",
"mirrors+mirrors'"), and for both asymmetries summed as two standardised scores ("films &
mirrors", "films & mirrors x2", ...).

With `--save-maps DIR` it keeps, per fold, every fitted map of every film, each map's
reading of the held-out films' mirror images (mirrored back), and the frozen heads' scores
of every film (`DIR/seed{S}-fold{K}.npz`), so other ways of summing them can
be scored later without fitting again (`tools/verdict_sums_experiment.py`).
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
    film_asymmetry,
    fit_heads,
    fuse,
    other_film,
    spread,
)
from napari_mammo.models.tuned_cells import fine_tune_cells, mirror_ref, tuned_maps, tuned_scores

BASE_EPOCHS = 15
"""A plain map's epochs (session 7's recipe); the shipped boxes' map is "mirrors x2"."""
FITS = {"films": (False, 1, 0), "mirrors": (True, 1, 0), "mirrors'": (True, 1, 50), "mirrors x2": (True, 2, 0),
        "films x2": (False, 2, 0), "mirrors x4": (True, 4, 0), "films'": (False, 1, 50)}
"""The maps it can fit: with mirror images or not, times the shipped epochs, and the offset of the random seed."""


def asymmetries(maps, records, cells, by_ref, top: int = 1) -> np.ndarray:
    """Each film's tuned asymmetry under `maps`, its image score the mean of its `top` cells (0 without its other
    film)."""
    out = []
    for record in records:
        partner = other_film(record, by_ref)
        out.append(film_asymmetry(maps[record.ref], cells[record.ref], maps[partner.ref] if partner else None,
                                  cells[partner.ref] if partner else None, top))
    return np.array(out)


def save_fold(path: Path, maps: dict, mirrored: dict, heads, frozen: dict, train, test, cells, by_ref) -> None:
    """A fold's fitted maps of every film (and of the held-out films' mirror images), the frozen heads' scores of
    every film and their spreads, its split."""
    arrays = {f"map/{name}/{ref}": found[ref].astype(np.float16) for name, found in maps.items() for ref in found}
    arrays.update({f"mirror/{name}/{ref}": found[ref].astype(np.float16)
                   for name, found in mirrored.items() for ref in found})
    for ref, record in by_ref.items():
        partner = other_film(record, by_ref)
        values, _ = heads.film_scores(cells[ref], cells[partner.ref] if partner else None)
        arrays.update({f"score/{key}/{ref}": np.float64(value) for key, value in values.items()})
    arrays["frozen"] = np.array(json.dumps(frozen))
    arrays["train"] = np.array([r.ref for r in train])
    arrays["test"] = np.array([r.ref for r in test])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def main() -> None:
    """Each fold of each seed: fit the four maps, score boxes and verdicts, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0, help="the first fold seed (seeds first .. first+N-1)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tune-epochs", type=int, default=BASE_EPOCHS,
                        help="the epochs of a plain map, which 'x2' doubles (15, as when the fits were named; fewer "
                             "for a smoke run)")
    parser.add_argument("--fits", default=",".join(FITS), help="which maps to fit, comma-separated (default: all)")
    parser.add_argument("--save-maps", type=Path, help="a folder for each fold's maps and frozen scores")
    args = parser.parse_args()
    chosen = args.fits.split(",")
    unknown = set(chosen) - set(FITS)
    if unknown:
        parser.error(f"unknown fits {sorted(unknown)}; choose from {list(FITS)}")
    config = ScreeningConfig(tune_epochs=args.tune_epochs, fine_asymmetry=False)  # the verdict as when this was run
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells, stage4 = load_screening_features(records, replace(config, tune_mirrors=True))
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        parts = woman_folds(records, args.folds, seed)
        for k, test in enumerate(parts):
            started = time.monotonic()
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            heads = fit_heads(train, cells, by_ref, config, seed * 100 + k)
            frozen = dict(heads.standardise)
            truth = np.array([r.label != "normal" for r in test])
            maps, mirrored = {}, {}
            for name in chosen:
                mirrors, times, offset = FITS[name]
                net = fine_tune_cells(train, stage4, cells, replace(config, tune_mirrors=mirrors,
                                                                    tune_epochs=config.tune_epochs * times),
                                      seed * 100 + k + offset)
                maps[name] = tuned_maps(net, {ref: stage4[ref] for ref in by_ref})
                if args.save_maps:  # read on the mirror image, mirrored back: test-time mirrors for the boxes
                    mirrored[name] = {r.ref: tuned_scores(net, stage4[mirror_ref(r.ref)].features)[:, ::-1]
                                      for r in test}
            for first, second in (("films", "mirrors"), ("mirrors", "mirrors'")):
                if first in maps and second in maps:
                    maps[f"{first}+{second}"] = {ref: (maps[first][ref] + maps[second][ref]) / 2 for ref in by_ref}
            row = {"seed": seed, "fold": k}
            base = {}
            for record in test:
                partner = other_film(record, by_ref)
                values, _ = heads.film_scores(cells[record.ref], cells[partner.ref] if partner else None)
                base[record.ref] = fuse(values, frozen)
            row["frozen/auc"] = roc_auc(truth, np.array([base[r.ref] for r in test]))
            for name, found in maps.items():
                detections = [box_detections(cell_boxes(found[r.ref], cells[r.ref].breast, 32.0)) for r in test]
                curve = froc(list(zip(detections, test, strict=True)))
                for fp in (0.5, 1, 2):
                    row[f"{name}/sens@{fp}"] = sensitivity_at(curve, fp)
                heads.standardise = dict(frozen)
                add_tuned_asymmetry(heads, train, cells, found, by_ref)
                mean, sd = heads.standardise[TUNED_ASYMMETRY]
                held = asymmetries(found, test, cells, by_ref)
                row[f"{name}/auc"] = roc_auc(truth, np.array([base[r.ref] for r in test]) + (held - mean) / sd)
            for boxes in ("mirrors", "mirrors x2", "mirrors x4"):
                if "films" in maps and boxes in maps:
                    both = np.array([base[r.ref] for r in test])
                    for name in ("films", boxes):
                        mean, sd = spread(asymmetries(maps[name], train, cells, by_ref))
                        both = both + (asymmetries(maps[name], test, cells, by_ref) - mean) / sd
                    row[f"films & {boxes}/auc"] = roc_auc(truth, both)
            rows.append(row)
            if args.save_maps:
                save_fold(args.save_maps / f"seed{seed}-fold{k}.npz", maps, mirrored, heads, frozen, train, test, cells,
                          by_ref)
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
