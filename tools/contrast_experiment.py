"""Frozen heads on the backbone's features of contrast-enhanced films (CLAHE), against the plain films, by fold.

    python tools/contrast_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--clip 0.01] [--kernel 64]
        [--out runs/contrast.json]

Dense breasts are the verdict's weak films (`tissue_experiment.py`): a lesion in bright tissue differs little
from it at the grey levels ImageNet features see. Here each film is also read after contrast-limited adaptive
histogram equalisation (scikit-image's `equalize_adapthist`, clip limit CLIP, tiles of KERNEL pixels at
0.2 mm); its blocks and stage-4 features are cached beside the plain ones (key suffix "-clahe…"), with the plain
film's breast cells. In each saved fold (its split and seed; `two_maps_experiment.py --save-maps`) the frozen
heads are fitted as shipped (blocks head, left-minus-right head, stage-4 head) on the plain and on the enhanced
features, and scored: "frozen" sums their four standardised scores, "shipped" adds the saved verdict map's
asymmetry (fitted on plain films) as the shipped verdict does; "both" sums the plain and enhanced frozen scores.
Prints mean ± sd and each variant's paired difference from the shipped verdict.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fusion_scaling_experiment import saved_folds_arguments  # tools/ is the script's folder
from verdict_sums_experiment import fold_seed, read_fold, score_folds, verdict

from napari_mammo.evaluation.crossval import load_feature_sets
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import FeatureSpec, ScreeningConfig, fit_heads, fuse, other_film

SPECS = (FeatureSpec("blocks"), FeatureSpec("stage4"))
"""The layers the shipped frozen heads read."""


def enhanced_features(records: list, plain: list[dict], clip: float, kernel: int) -> list[dict]:
    """Each film's blocks and stage-4 features after CLAHE (cached by file hash and setting), with the plain
    film's breast cells."""
    from skimage.exposure import equalize_adapthist

    from napari_mammo.data.preprocess import normalise, to_mias_scale
    from napari_mammo.io.images import read_image
    from napari_mammo.models.backbone import load_backbone
    from napari_mammo.models.screening import CellFeatures, cell_feature_set, file_key

    model = load_backbone("lite0")
    out: list[dict] = [{} for _ in SPECS]
    for index, record in enumerate(records):
        image = read_image(record.path)
        pixels, _ = to_mias_scale(image.pixels, image.spacing_mm)
        key = f"{file_key(record.path)}-{pixels.shape[0]}x{pixels.shape[1]}-clahe{clip:g}-{kernel}"
        enhanced = equalize_adapthist(normalise(pixels), kernel_size=kernel, clip_limit=clip).astype(np.float32)
        for found, source, features in zip(out, plain, cell_feature_set(model, enhanced, key, SPECS), strict=True):
            found[record.ref] = CellFeatures(features.features, source[record.ref].breast, features.stride)
        if index % 50 == 0:
            print(f"enhanced {index + 1}/{len(records)}", flush=True)
    return out


def frozen_verdict(train: list[str], test: list[str], blocks: dict, stage4: dict, by_ref: dict,
                   seed: int) -> np.ndarray:
    """The held-out films' sum of the shipped frozen heads' standardised scores, the heads fitted on `train`."""
    config = ScreeningConfig(tune_epochs=0)
    heads = fit_heads([by_ref[ref] for ref in train], blocks, by_ref, config, seed, fine=stage4)
    out = []
    for ref in test:
        partner = other_film(by_ref[ref], by_ref)
        other = (blocks[partner.ref], stage4[partner.ref]) if partner else (None, None)
        values, _ = heads.film_scores(blocks[ref], other[0], fine=(stage4[ref], other[1]))
        out.append(fuse(values, heads.standardise))
    return np.array(out)


def main() -> None:
    """Score the plain and enhanced frozen heads in every saved fold."""
    parser = saved_folds_arguments(__doc__.splitlines()[0])
    parser.add_argument("--clip", type=float, default=0.01, help="CLAHE's clip limit")
    parser.add_argument("--kernel", type=int, default=64, help="CLAHE's tile, in 0.2 mm pixels")
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    plain = load_feature_sets(records, SPECS)
    enhanced = enhanced_features(records, plain, args.clip, args.kernel)

    def score_fold(path: Path) -> dict:
        maps, scores, frozen, train, test = read_fold(path)
        truth = np.array([by_ref[ref].label != "normal" for ref in test])
        seed = fold_seed(path)
        verdict_map = (verdict("films", maps, scores, frozen, train, test, plain[0], by_ref)
                       - verdict("frozen", maps, scores, frozen, train, test, plain[0], by_ref))
        own, clahe = (frozen_verdict(train, test, *features, by_ref, seed) for features in (plain, enhanced))
        return {"fold": path.stem, "shipped": roc_auc(truth, own + verdict_map),
                "frozen": roc_auc(truth, own), "frozen CLAHE": roc_auc(truth, clahe),
                "frozen both": roc_auc(truth, own + clahe),
                "shipped, CLAHE frozen": roc_auc(truth, clahe + verdict_map),
                "shipped, both frozen": roc_auc(truth, own + clahe + verdict_map)}

    score_folds(args.maps, score_fold, "shipped", args.out, "shipped")


if __name__ == "__main__":
    main()
