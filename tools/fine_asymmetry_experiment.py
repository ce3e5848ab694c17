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
first in `--layers`). A layer named `LAYERxZOOM` (`stage4x2`) is read on the image zoomed
ZOOM times (8-pixel cells for stage 4 at zoom 2), `LAYERxZOOMpK` the same averaged over K × K cells
(`stage4x2p2`: 16-pixel cells read at 0.1 mm). Prints mean ± sd over the folds and each variant's paired
difference from the verdict with the folds it wins, ties and loses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from verdict_sums_experiment import (  # tools/ is the script's folder
    add_ranks,
    fold_seed,
    print_findings,
    print_paired,
    read_fold,
    standardised,
    verdict,
)

from napari_mammo.evaluation.crossval import load_cells
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import (
    CellFeatures,
    FeatureSpec,
    ScreeningConfig,
    film_asymmetry,
    fit_heads,
    other_film,
)


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


def layer_spec(name: str) -> FeatureSpec:
    """The features a `--layers` name reads: LAYER, or LAYERxZOOM for the image zoomed ZOOM times (LAYERxZOOMpK
    reads the same features, then pools them)."""
    layer, _, zoom = name.partition("x")
    return FeatureSpec(layer, float(zoom.partition("p")[0] or 1))


def pooled(cells: CellFeatures, size: int) -> CellFeatures:
    """Features averaged over `size` × `size` cells (a coarser grid; a cell is breast when most of it is)."""
    _, rows, cols = cells.features.shape
    rows, cols = rows // size, cols // size

    def blocks(values: np.ndarray) -> np.ndarray:
        cut = values[..., : rows * size, : cols * size].astype(np.float32)
        return cut.reshape(*values.shape[:-2], rows, size, cols, size).mean(axis=(-3, -1))

    return CellFeatures(blocks(cells.features).astype(np.float16), blocks(cells.breast) >= 0.5, cells.stride * size)


def layer_cells(records: list, name: str) -> dict[str, CellFeatures]:
    """Every film's features of a `--layers` name, pooled when it ends in pK."""
    features = load_cells(records, spec=layer_spec(name))
    size = int(name.partition("p")[2] or 1)
    return {ref: pooled(cells, size) for ref, cells in features.items()} if size > 1 else features


def fold_row(path: Path, layers: dict, cells: dict, by_ref: dict, decays: list[float], tops: list[int],
             ranks: dict | None = None) -> dict:
    """One saved fold's AUC of every variant; with `ranks`, also each held-out film's rank within the fold under
    the verdict and under the verdict with the stage-4 asymmetry (finding -> verdict -> seed -> ranks)."""
    maps, scores, frozen, train, test = read_fold(path)
    truth = np.array([by_ref[ref].label != "normal" for ref in test])
    base = verdict("films", maps, scores, frozen, train, test, cells, by_ref)
    mean, sd = frozen["asymmetry"]
    without_blocks = base - (np.array([scores["asymmetry"][ref] for ref in test]) - mean) / sd
    seed = fold_seed(path)
    row = {"fold": path.stem, "films": roc_auc(truth, base)}
    fine = None  # the stage-4 head's standardised asymmetry (L2 1, top cell), which other layers' join
    for layer, features in layers.items():
        for decay in decays if layer == "stage4" else [1.0]:
            spec = layer_spec(layer)
            config = ScreeningConfig(layer=spec.layer, zoom=spec.zoom, weight_decay=decay, tune_epochs=0,
                                     fine_asymmetry=False)
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
    layers = {layer: layer_cells(records, layer) for layer in args.layers.split(",")}
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
