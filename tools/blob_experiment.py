"""Is the verdict's most suspicious spot a round bright blob? A score for circumscribed masses, from saved fold maps.

    python tools/blob_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/blob.json]

Circumscribed masses are the verdict's weakest finding (their other film is mostly normal too,
but a mass in both breasts leaves no asymmetry). Each film is filtered once with a scale-normalised
Laplacian of Gaussian (minus sigma² × LoG, bright blobs positive; sigma 6, 10, 15 and 22 pixels at
0.2 mm, masses' radii 8 to 30 pixels; the maximum over scales, on the film halved for speed). In each
saved fold the blocks cell head is fitted as shipped; a film's blob score is the strongest blob
response within its most suspicious cell's 3 × 3 cells (96 pixels), so it asks whether what the
head found is round and bounded. "+ W blob" adds W times the blob score, standardised on the training
films, to the shipped verdict (its five scores, `fusion_scaling_experiment.py`); "+ W blob asymmetry"
adds the film's blob score minus its other film's. Prints mean ± sd and each variant's paired
difference from the shipped verdict; with `--by-finding`, each finding's AUC against the normal
films with and without "+ 1 blob".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from frozen_heads_experiment import fit_bag  # tools/ is the script's folder
from fusion_scaling_experiment import fold_scores, saved_folds_arguments, screening_inputs, shipped_verdict
from tissue_experiment import NEGATIVES
from verdict_sums_experiment import add_ranks, fold_seed, print_findings, score_folds, standardised

from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.screening import CellHead, other_film, smooth_scores

SIGMAS = (6.0, 10.0, 15.0, 22.0)
"""The blob filter's scales, in 0.2 mm pixels."""
HALVED = 2
"""The blob map is computed on the film shrunk this many times."""
WEIGHTS = (0.5, 1.0)


def blob_map(record) -> np.ndarray:
    """The film's strongest scale-normalised bright-blob response at each pixel of the halved film."""
    from scipy import ndimage
    from skimage.transform import rescale

    from napari_mammo.data.preprocess import normalise, to_mias_scale
    from napari_mammo.io.images import read_image

    image = read_image(record.path)
    pixels, _ = to_mias_scale(image.pixels, image.spacing_mm)
    grey = rescale(normalise(pixels), 1 / HALVED, anti_aliasing=True)
    responses = [-(s / HALVED) ** 2 * ndimage.gaussian_laplace(grey, s / HALVED) for s in SIGMAS]
    return np.max(responses, axis=0).astype(np.float32)


def blob_score(blobs: np.ndarray, scores: np.ndarray, breast: np.ndarray, stride: float) -> float:
    """The strongest blob response within the most suspicious cell's 3 × 3 cells."""
    smoothed = np.where(breast, smooth_scores(scores), -np.inf) if breast.any() else smooth_scores(scores)
    row, col = np.unravel_index(int(np.argmax(smoothed)), smoothed.shape)
    cell = stride / HALVED
    r0, c0 = int(max(row - 1, 0) * cell), int(max(col - 1, 0) * cell)
    window = blobs[r0:int((row + 2) * cell), c0:int((col + 2) * cell)]
    return float(window.max()) if window.size else 0.0


def film_blobs(head: CellHead, cells: dict, blobs: dict, refs: list[str], by_ref: dict
               ) -> tuple[np.ndarray, np.ndarray]:
    """Each film's blob score at its most suspicious cell, and that minus its other film's (0 without one)."""
    own = {}

    def score(ref: str) -> float:
        if ref not in own:
            found = cells[ref]
            own[ref] = blob_score(blobs[ref], head.scores(found.features), found.breast, found.stride)
        return own[ref]

    values, asymmetry = [], []
    for ref in refs:
        partner = other_film(by_ref[ref], by_ref)
        values.append(score(ref))
        asymmetry.append(score(ref) - score(partner.ref) if partner else 0.0)
    return np.array(values), np.array(asymmetry)


def main() -> None:
    """Score the blob variants in every saved fold."""
    parser = saved_folds_arguments(__doc__.splitlines()[0])
    parser.add_argument("--by-finding", action="store_true")
    args = parser.parse_args()
    records, by_ref, cells, stage4 = screening_inputs(args.data)
    blobs = {r.ref: blob_map(r) for r in records}
    ranks: dict = {}

    def score_fold(path: Path) -> dict:
        train_scores, test_scores, truth, train, test = fold_scores(path, cells, stage4, by_ref)
        shipped = shipped_verdict(train_scores, test_scores)
        head = fit_bag([by_ref[ref] for ref in train], cells, fold_seed(path), NEGATIVES)[0]
        (own_train, asym_train), (own_test, asym_test) = (film_blobs(head, cells, blobs, refs, by_ref)
                                                          for refs in (train, test))
        own, asym = standardised(own_test, own_train), standardised(asym_test, asym_train)
        row = {"fold": path.stem, "shipped": roc_auc(truth, shipped), "blob alone": roc_auc(truth, own),
               "blob asymmetry alone": roc_auc(truth, asym)}
        for weight in WEIGHTS:
            row[f"+ {weight:g} blob"] = roc_auc(truth, shipped + weight * own)
            row[f"+ {weight:g} blob asymmetry"] = roc_auc(truth, shipped + weight * asym)
        if args.by_finding:
            add_ranks(ranks, path.stem.split("-")[0], test, by_ref, {"shipped": shipped, "+ 1 blob": shipped + own})
        return row

    score_folds(args.maps, score_fold, "shipped", args.out, "shipped")
    if ranks:
        print_findings(ranks)


if __name__ == "__main__":
    main()
