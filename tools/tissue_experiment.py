"""The shipped verdict by background tissue (fatty, glandular, dense), and verdicts that allow for dense breasts.

    python tools/tissue_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/tissue.json]

From the saved folds (`two_maps_experiment.py --save-maps`) it rebuilds the shipped verdict (its five scores
standardised and summed, as `fusion_scaling_experiment.py` scores it) and prints
each tissue's AUC (abnormal against normal films of that tissue, on ranks within the folds, per seed) and the
normal films' mean rank by tissue: if dense normal films rank high, the verdict partly reads density. Variants,
each paired against the shipped verdict: "- W x pQ cell" subtracts W times the film's typical cell score (the
Q-th percentile of its breast cells under the blocks' cell head, or the stage-4 head's for "fine cell",
standardised on the training films), so a film
is scored by how far its worst cell stands above its own tissue; "- density" subtracts the standardised mean
grey of the breast (0.2 mm pixels, the breast mask the features use), times W.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from frozen_heads_experiment import fit_bag  # tools/ is the script's folder
from fusion_scaling_experiment import fold_scores, saved_folds_arguments, screening_inputs, shipped_verdict
from verdict_sums_experiment import fold_seed, score_folds, standardised

from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.screening import CellHead, ScreeningConfig

NEGATIVES = ScreeningConfig().negatives_per_image
"""Normal cells a film for the cell heads, as the shipped heads are fitted."""
WEIGHTS = (0.5, 1.0, 1.5, 2.0)
"""How much of a standardised density figure the variants subtract."""

QUANTILES = (0.5, 0.75, 0.9, 0.97)
"""Which of a film's cell scores is its typical tissue's."""


def breast_grey(record, cells) -> float:
    """The mean grey (0 to 1) of the breast cells' pixels of a film at 0.2 mm."""
    from skimage.transform import resize

    from napari_mammo.data.preprocess import to_mias_scale
    from napari_mammo.io.images import read_image

    image = read_image(record.path)
    pixels, _ = to_mias_scale(image.pixels, image.spacing_mm)
    grey = pixels.astype(np.float32) / max(float(pixels.max()), 1.0)
    breast = resize(cells.breast.astype(np.float32), grey.shape, order=0) > 0.5
    return float(grey[breast].mean()) if breast.any() else float(grey.mean())


def typical_cells(head: CellHead, cells: dict, refs: list[str], quantile: float) -> np.ndarray:
    """Each film's `quantile` of its breast cells' scores under a cell head."""
    out = []
    for ref in refs:
        scores = head.scores(cells[ref].features)
        values = scores[cells[ref].breast] if cells[ref].breast.any() else scores.reshape(-1)
        out.append(float(np.quantile(values, quantile)))
    return np.array(out)


def fold_row(path: Path, stage4: dict, cells: dict, grey: dict, by_ref: dict, ranks: dict) -> dict:
    """One saved fold's AUC of the shipped verdict and of each density-aware variant; the shipped verdict's ranks
    of the held-out films go into `ranks` (seed -> tissue -> normal/abnormal -> ranks)."""
    from scipy.stats import rankdata

    train_scores, test_scores, truth, train, test = fold_scores(path, cells, stage4, by_ref)
    shipped = shipped_verdict(train_scores, test_scores)
    row = {"fold": path.stem, "shipped": roc_auc(truth, shipped)}
    for ref, rank in zip(test, rankdata(shipped) / len(test), strict=True):
        record = by_ref[ref]
        kind = "normal" if record.label == "normal" else "abnormal"
        ranks.setdefault(path.stem.split("-")[0], {}).setdefault(record.tissue, {}).setdefault(kind, []).append(rank)
    for name, features in (("cell", cells), ("fine cell", stage4)):
        head = fit_bag([by_ref[ref] for ref in train], features, fold_seed(path), NEGATIVES)[0]
        for quantile in QUANTILES:
            typical = standardised(typical_cells(head, features, test, quantile),
                                   typical_cells(head, features, train, quantile))
            for weight in WEIGHTS:
                row[f"shipped - {weight:g} x p{quantile * 100:g} {name}"] = roc_auc(truth, shipped - weight * typical)
    density = standardised(np.array([grey[ref] for ref in test]), np.array([grey[ref] for ref in train]))
    for weight in WEIGHTS:
        row[f"shipped - {weight:g} x density"] = roc_auc(truth, shipped - weight * density)
    return row


def print_tissues(ranks: dict) -> None:
    """Each seed's AUC within each tissue and the normal films' mean rank by tissue."""
    for seed, by_tissue in sorted(ranks.items()):
        parts = []
        for tissue, kinds in sorted(by_tissue.items()):
            normal, abnormal = kinds.get("normal", []), kinds.get("abnormal", [])
            truth = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]
            parts.append(f"{tissue}: AUC {roc_auc(truth, np.r_[normal, abnormal]):.3f} "
                         f"({len(abnormal)} abnormal, {len(normal)} normal; normal mean rank {np.mean(normal):.2f}, "
                         f"abnormal {np.mean(abnormal):.2f})")
        print(f"{seed}: " + "; ".join(parts))


def main() -> None:
    """Score the verdict by tissue and the density-aware variants in every saved fold."""
    args = saved_folds_arguments(__doc__.splitlines()[0]).parse_args()
    records, by_ref, cells, stage4 = screening_inputs(args.data)
    grey = {r.ref: breast_grey(r, cells[r.ref]) for r in records}
    ranks: dict = {}
    score_folds(args.maps, lambda path: fold_row(path, stage4, cells, grey, by_ref, ranks), "shipped", args.out,
                "shipped")
    print_tissues(ranks)


if __name__ == "__main__":
    main()
