"""Cross-validate richer cell features for the screening model: local contrast and a finer stage.

    python tools/cell_context_experiment.py --data "$NAPARI_MAMMO_MIAS" --seeds 3 context:5 stage4

Each variant transforms the cached `blocks` cell features before the unchanged
cross-validation (`napari_mammo.evaluation.crossval.cross_validate`):
`context:K` appends each cell's difference from the mean of the K×K cells around it (a
lesion stands out from its surroundings); `stage4` appends the stride-16 stage-4 features
averaged over each 2×2 block; `plain` is the shipped features. Prints one Markdown row
per variant, as tools/screening_experiments.py does.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from napari_mammo.evaluation.crossval import cross_validate, load_cells
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import CellFeatures, FeatureSpec, ScreeningConfig


def with_context(found: CellFeatures, size: int) -> CellFeatures:
    """The features and their difference from the size×size neighbourhood mean."""
    features = found.features.astype(np.float32)
    around = ndimage.uniform_filter(features, size=(1, size, size), mode="nearest")
    return CellFeatures(np.concatenate([features, features - around]).astype(np.float16), found.breast, found.stride)


def with_stage4(found: CellFeatures, fine: CellFeatures) -> CellFeatures:
    """The features and the stage-4 features averaged over the 2×2 fine cells of each cell."""
    rows, cols = found.features.shape[1:]
    f = fine.features[:, : rows * 2, : cols * 2].astype(np.float32)
    f = np.pad(f, ((0, 0), (0, rows * 2 - f.shape[1]), (0, cols * 2 - f.shape[2])))
    pooled = f.reshape(f.shape[0], rows, 2, cols, 2).mean((2, 4))
    return CellFeatures(np.concatenate([found.features.astype(np.float32), pooled]).astype(np.float16),
                        found.breast, found.stride)


def main() -> None:
    """Run each variant and print its row."""
    from screening_experiments import row  # tools/ is on the path when run as a script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    records = read_folder(args.data)
    config = ScreeningConfig(tune_epochs=0, fine_asymmetry=False)  # the frozen heads only, as when this was run
    base = load_cells(records, spec=config.features)
    for variant in args.variants:
        if variant == "plain":
            cells = base
        elif variant.startswith("context:"):
            cells = {ref: with_context(found, int(variant.split(":")[1])) for ref, found in base.items()}
        elif variant == "stage4":
            fine = load_cells(records, spec=FeatureSpec("stage4", 1.0))
            cells = {ref: with_stage4(found, fine[ref]) for ref, found in base.items()}
        else:
            raise SystemExit(f"unknown variant {variant!r}")
        report = cross_validate(records, cells, args.folds, range(args.seeds), config)
        print(row(variant, report), flush=True)


if __name__ == "__main__":
    main()
