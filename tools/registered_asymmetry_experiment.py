"""Local asymmetry of the verdict map with the woman's two films registered, from saved fold maps.

    python tools/registered_asymmetry_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps \
        [--out runs/registered.json]

The shipped verdict compares a film's most suspicious cell with the other film's most
suspicious cell anywhere. A local comparison subtracts from each cell the other film's score
at the same place, so that tissue both breasts share cancels and a lesion that has no
counterpart stands out; a mirror alone does not put the same place under a cell (the breasts
sit at different heights and depths). Here each breast is put in its own frame before the
comparison: the chest wall (the image side the breast leans on) as column 0, the breast's
top and bottom rows as 0 and 1, and its depth (the farthest breast cell from the chest wall,
the nipple's) as 1; a cell of one film then reads the other film's map at the same frame
coordinates, max-filtered over K×K cells (tolerance).

Variants (`register` is the frame; `mirror` the plain left-right mirror, for comparison):
"local HOW K" alone (the film's top cell of its map minus the other film's map there), and
"shipped + W x local HOW K" (standardised on the fold's training films, added to the shipped
verdict). Prints each fold's shipped verdict and the paired table against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fusion_scaling_experiment import (  # tools/ is the script's folder
    fold_scores,
    score_saved_folds,
    shipped_verdict,
)
from scipy import ndimage
from verdict_sums_experiment import read_fold, standardised

from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.screening import image_score, other_film

SIZES = (1, 3, 5)
"""Tolerances: the other film's map is max-filtered over K×K cells."""
WEIGHTS = (0.5, 1.0)
"""How much of the standardised local asymmetry is added to the shipped verdict."""


def breast_frame(breast: np.ndarray) -> tuple[bool, float, float, float]:
    """A breast's frame on its cell grid: whether the chest wall is the left edge, the top and bottom breast rows,
    and the depth in cells from the chest wall to the farthest breast cell."""
    rows, cols = np.nonzero(breast)
    if rows.size == 0:
        return True, 0.0, float(breast.shape[0] - 1), float(breast.shape[1])
    left = cols.mean() < breast.shape[1] / 2
    depth = cols.max() + 1 if left else breast.shape[1] - cols.min()
    return bool(left), float(rows.min()), float(rows.max()), float(depth)


def registered_partner(shape: tuple[int, int], frame: tuple, partner: np.ndarray, partner_frame: tuple,
                       size: int) -> np.ndarray:
    """The other film's map, max-filtered over size×size cells, read at each cell's place in its own breast
    frame: the same height between top and bottom, the same share of the depth from the chest wall."""
    left, top, bottom, depth = frame
    p_left, p_top, p_bottom, p_depth = partner_frame
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    height = (rows - top + 0.5) / max(bottom - top + 1.0, 1.0)
    reach = ((cols if left else shape[1] - 1 - cols) + 0.5) / depth
    p_rows = p_top - 0.5 + height * (p_bottom - p_top + 1.0)
    p_reach = reach * p_depth - 0.5
    p_cols = p_reach if p_left else partner.shape[1] - 1 - p_reach
    filtered = ndimage.maximum_filter(partner, size=size, mode="nearest")
    r = np.clip(np.rint(p_rows), 0, partner.shape[0] - 1).astype(int)
    c = np.clip(np.rint(p_cols), 0, partner.shape[1] - 1).astype(int)
    return filtered[r, c]


def mirrored_partner(shape: tuple[int, int], partner: np.ndarray, size: int) -> np.ndarray:
    """The other film's map mirrored left-right onto this grid (MIAS films face each other), max-filtered."""
    filtered = ndimage.maximum_filter(partner[:, ::-1], size=size, mode="nearest")
    grid = np.zeros(shape, dtype=filtered.dtype)
    rows, cols = min(shape[0], filtered.shape[0]), min(shape[1], filtered.shape[1])
    grid[:rows, :cols] = filtered[:rows, :cols]
    return grid


def local_asymmetries(films: dict, refs: list[str], cells: dict, by_ref: dict) -> dict[str, np.ndarray]:
    """Each film's local asymmetries under the verdict map (0 without its other film), by variant."""
    out: dict[str, list[float]] = {}
    for ref in refs:
        partner = other_film(by_ref[ref], by_ref)
        scores, breast = films[ref], cells[ref].breast
        for size in SIZES:
            for how in ("register", "mirror"):
                if partner is None:
                    value = 0.0
                else:
                    other = films[partner.ref]
                    moved = (registered_partner(scores.shape, breast_frame(breast), other,
                                                breast_frame(cells[partner.ref].breast), size)
                             if how == "register" else mirrored_partner(scores.shape, other, size))
                    value = image_score(scores - moved, breast)
                out.setdefault(f"local {how} {size}", []).append(value)
    return {key: np.array(values) for key, values in out.items()}


def fold_row(path: Path, cells: dict, stage4: dict, by_ref: dict) -> dict:
    """One saved fold's AUC of the shipped verdict, of each local asymmetry alone and added to the verdict."""
    fold = read_fold(path)
    train_scores, test_scores, truth, train, test = fold_scores(path, cells, stage4, by_ref, fold)
    films = fold[0]["films"]
    shipped = shipped_verdict(train_scores, test_scores)
    row = {"fold": path.stem, "shipped": roc_auc(truth, shipped)}
    fitted, held = (local_asymmetries(films, refs, cells, by_ref) for refs in (train, test))
    for key in held:
        row[key] = roc_auc(truth, held[key])
    for key in held:
        for weight in WEIGHTS:
            row[f"shipped + {weight:g} x {key}"] = roc_auc(truth, shipped + weight * standardised(held[key],
                                                                                                  fitted[key]))
    return row


def main() -> None:
    """Score the local asymmetries in every saved fold and print the paired table."""
    score_saved_folds(__doc__.splitlines()[0], fold_row, "shipped")


if __name__ == "__main__":
    main()
