"""Cross-validate screening variants by woman and print one Markdown table row per variant.

    python tools/screening_experiments.py --data "$NAPARI_MAMMO_MIAS" --seeds 3 \
        head:1:1.0:1 head:1:10:1 blocks:1:1.0:1 ...

Each variant is LAYER:ZOOM:WEIGHT_DECAY:TOP_CELLS (the contralateral head keeps its
default). Rows go to stdout and, with --out, the full reports to a JSON file per variant.
Backbone features are cached (NAPARI_MAMMO_CACHE), so a variant whose features are
cached takes about half a minute per seed on two cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_mammo.cli.common import json_safe
from napari_mammo.evaluation.crossval import cross_validate, load_cells
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import ScreeningConfig


def parse(variant: str) -> ScreeningConfig:
    """LAYER:ZOOM:WEIGHT_DECAY:TOP_CELLS as a config."""
    layer, zoom, decay, top = variant.split(":")
    return ScreeningConfig(layer=layer, zoom=float(zoom), weight_decay=float(decay), top_cells=int(top),
                           tune_epochs=0, fine_asymmetry=False)  # the frozen heads and their boxes, as then


def row(variant: str, report: dict) -> str:
    """One Markdown row: the variant and mean ± sd over all folds of all seeds."""
    s = report["summary"]

    def cell(key: str) -> str:
        return f"{s[key]['mean']:.3f} ± {s[key]['sd']:.3f}"

    keys = ("auc_cells", "auc_contralateral", "auc_asymmetry", "auc_fused", "auc_benign_vs_malignant",
            "sensitivity_at_1_fp")
    return f"| `{variant}` | " + " | ".join(cell(k) for k in keys) + " |"


def main() -> None:
    """Run each variant and print its row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="folder for the JSON reports")
    args = parser.parse_args()
    records = read_folder(args.data)
    print("| variant (layer:zoom:weight decay:top cells) | AUC cells | AUC left−right | AUC asymmetry | AUC fused "
          "| AUC benign vs malignant | sensitivity at 1 FP/image |")
    print("|---|---|---|---|---|---|---|")
    for variant in args.variants:
        config = parse(variant)
        cells = load_cells(records, spec=config.features)
        report = cross_validate(records, cells, args.folds, range(args.seeds), config)
        print(row(variant, report), flush=True)
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{variant.replace(':', '_')}.json").write_text(json.dumps(json_safe(report), indent=1))


if __name__ == "__main__":
    main()
