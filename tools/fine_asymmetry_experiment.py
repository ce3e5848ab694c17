"""Score frozen cell heads on other backbone layers, their asymmetries summed into the verdict, from saved fold maps.

    python tools/fine_asymmetry_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/fine.json]

The saved folds (`two_maps_experiment.py --save-maps`) hold the verdict map's readings of
every film and the frozen heads' scores, so the verdict of session 9 ("films") is scored
without fitting a map. In each fold a cell head like the shipped one (lesion-aware cells,
150 normal cells a film, L2 penalty DECAY) is fitted on the training films' features of
another layer: `stage4` (112 channels) or `stage3` (80 channels, both 16-pixel cells),
`stage2` (40 channels, 8-pixel cells), `stage5` (192 channels) or `head` (1280 channels,
both 32-pixel cells); a layer not cached yet is read from the films first. Its image
score, asymmetry (this film's top cells minus the other film's) and
left-minus-right head are scored alone; "+ LAYER asymmetry" adds the asymmetry,
standardised on the training films, to the verdict; "all3" adds all three of its scores;
"2x" adds it twice; "for the blocks'" takes it instead of the blocks head's asymmetry;
"@K" reads the top K cells; "stage4 and LAYER" adds both layers' asymmetries (stage 4
first in `--layers`). Prints mean ± sd over the folds and each variant's paired
difference from the verdict with the folds it wins, ties and loses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from verdict_sums_experiment import print_paired, read_fold, verdict  # tools/ is the script's folder

from napari_mammo.evaluation.crossval import load_cells
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import FeatureSpec, ScreeningConfig, film_asymmetry, fit_heads, other_film


def head_scores(heads, features: dict, refs: list[str], by_ref: dict, top: int) -> dict[str, np.ndarray]:
    """The films' cell score, left-minus-right score and asymmetry (top `top` cells) under a layer's heads."""
    out: dict[str, list[float]] = {"cells": [], "contralateral": [], "asymmetry": []}
    for ref in refs:
        partner = other_film(by_ref[ref], by_ref)
        other = features[partner.ref] if partner else None
        values, own = heads.film_scores(features[ref], other)
        partner_scores = heads.cells.scores(other.features) if other is not None else None
        out["cells"].append(values["cells"])
        out["contralateral"].append(values["contralateral"])
        out["asymmetry"].append(film_asymmetry(own, features[ref], partner_scores, other, top))
    return {key: np.array(value) for key, value in out.items()}


def standardised(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Held-out scores standardised by their spread on the training films."""
    return (test - train.mean()) / (train.std() + 1e-9)


def fold_row(path: Path, layers: dict, cells: dict, by_ref: dict, decays: list[float], tops: list[int],
             ranks: dict | None = None) -> dict:
    """One saved fold's AUC of every variant; with `ranks`, also each held-out film's rank within the fold under
    the verdict and under the verdict with the stage-4 asymmetry (finding -> verdict -> seed -> ranks)."""
    maps, scores, frozen, train, test = read_fold(path)
    truth = np.array([by_ref[ref].label != "normal" for ref in test])
    base = verdict("films", maps, scores, frozen, train, test, cells, by_ref)
    mean, sd = frozen["asymmetry"]
    without_blocks = base - (np.array([scores["asymmetry"][ref] for ref in test]) - mean) / sd
    seed = int(path.stem.split("-")[0].removeprefix("seed")) * 100 + int(path.stem.split("-")[1].removeprefix("fold"))
    row = {"fold": path.stem, "films": roc_auc(truth, base)}
    fine = None  # the stage-4 head's standardised asymmetry (L2 1, top cell), which other layers' join
    for layer, features in layers.items():
        for decay in decays if layer == "stage4" else [1.0]:
            config = ScreeningConfig(layer=layer, weight_decay=decay, tune_epochs=0, fine_asymmetry=False)
            heads = fit_heads([by_ref[ref] for ref in train], features, by_ref, config, seed)
            for top in tops if layer == "stage4" else [1]:
                name = f"{layer} L2 {decay:g}" + (f" @{top}" if top > 1 else "")
                fitted, held = (head_scores(heads, features, refs, by_ref, top) for refs in (train, test))
                z = {key: standardised(held[key], fitted[key]) for key in held}
                if top == 1:
                    row.update({f"{name} {key} alone": roc_auc(truth, z[key]) for key in z})
                    row[f"films + {name} all3"] = roc_auc(truth, base + sum(z.values()))
                row[f"films + {name} asymmetry"] = roc_auc(truth, base + z["asymmetry"])
                if layer == "stage4" and decay == 1.0 and top == 1:
                    fine = z["asymmetry"]
                    if ranks is not None:
                        add_ranks(ranks, path.stem.split("-")[0], test, by_ref,
                                  {"films": base, "films + stage4 asymmetry": base + fine})
                elif layer != "stage4" and fine is not None:
                    row[f"films + stage4 and {name} asymmetries"] = roc_auc(truth, base + fine + z["asymmetry"])
                if decay == 1.0 and layer == "stage4":
                    row[f"films + 2x {name} asymmetry"] = roc_auc(truth, base + 2 * z["asymmetry"])
                    row[f"films, {name} asymmetry for the blocks'"] = roc_auc(truth,
                                                                              without_blocks + z["asymmetry"])
    return row


def add_ranks(ranks: dict, seed: str, test: list[str], by_ref: dict, verdicts: dict[str, np.ndarray]) -> None:
    """Each held-out film's rank within its fold (0 to 1) under each verdict, by its finding (its first lesion's)."""
    from scipy.stats import rankdata

    for name, values in verdicts.items():
        for ref, rank in zip(test, rankdata(values) / len(test), strict=True):
            record = by_ref[ref]
            finding = "normal" if record.label == "normal" else record.lesions[0].abnormality
            ranks.setdefault(finding, {}).setdefault(name, {}).setdefault(seed, []).append(rank)


def print_findings(ranks: dict) -> None:
    """Each verdict's AUC of each finding against the normal films, on ranks within the folds, pooled by seed."""
    normal = ranks.pop("normal")
    for name in normal:
        for seed, normal_ranks in sorted(normal[name].items()):
            aucs = []
            for finding, by_name in sorted(ranks.items()):
                found = by_name[name][seed]
                truth = np.r_[np.zeros(len(normal_ranks)), np.ones(len(found))]
                aucs.append(f"{finding} {roc_auc(truth, np.r_[normal_ranks, found]):.3f} ({len(found)})")
            print(f"{name}, {seed}, AUC of each finding against the normal films: " + ", ".join(aucs))


def main() -> None:
    """Score every variant in every saved fold and print the table with paired differences."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--layers", default="stage4,head")
    parser.add_argument("--decays", default="0.3,1,3", help="the stage-4 head's L2 penalties")
    parser.add_argument("--tops", default="1,4,9", help="the stage-4 asymmetry's top cells")
    parser.add_argument("--by-finding", action="store_true",
                        help="also each finding's AUC against the normal films, with and without the stage-4 asymmetry")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells = load_cells(records)
    layers = {layer: load_cells(records, spec=FeatureSpec(layer)) for layer in args.layers.split(",")}
    decays, tops = [float(v) for v in args.decays.split(",")], [int(v) for v in args.tops.split(",")]
    rows, ranks = [], {} if args.by_finding else None
    for path in sorted(args.maps.glob("seed*-fold*.npz")):
        rows.append(fold_row(path, layers, cells, by_ref, decays, tops, ranks))
        print(f"{path.stem}: films {rows[-1]['films']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    if ranks:
        print_findings(ranks)
    print_paired(rows, "films", "films")

if __name__ == "__main__":
    main()
