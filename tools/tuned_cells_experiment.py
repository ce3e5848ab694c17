"""Cross-validate fine-tuning Lite0's last two block stages on cached stage-4 features, and fusing the result.

    python tools/tuned_cells_experiment.py --data "$NAPARI_MAMMO_MIAS" --seeds 3 [--epochs 15] [--crop 16]
        [--scores runs/tuned.json]

The same network as tools/finetune_experiment.py (stages 6 and 7, `blocks[5:]`, from their
ImageNet weights, and a 1x1 convolution to one cell score), but trained on crops of the
stage-4 feature maps that `napari-mammo crossval screening --layer stage4` caches (112
channels, stride 16), so the frozen first five stages are run once per film instead of
once per crop: a fold takes about a minute instead of six. Crops are `--crop` stage-4
cells wide (16 = 256 pixels at 0.2 mm), half near a lesion, flipped at random. The
held-out films are scored whole. Beside the tuned cells' own figures, their image score
(the film's most suspicious cell), or their asymmetry (that minus the other film's), each
standardised on the training films, is added to the shipped fused score.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from verdict_sums_experiment import standardised  # tools/ is the script's folder

from napari_mammo.evaluation.crossval import ScreeningConfig, load_cells, mean_sd, run_fold, woman_folds
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.models.screening import FeatureSpec, cell_boxes, cell_labels, image_score, other_film

STRIDE = 32


class TunedCells:
    """Lite0's stages 6-7 (trainable, BatchNorm frozen) and a 1x1 convolution, on stage-4 features."""

    def __init__(self) -> None:
        import torch

        from napari_mammo.models.backbone import load_backbone

        self.stages = torch.nn.Sequential(*load_backbone().blocks[5:]).eval()
        self.head = torch.nn.Conv2d(320, 1, 1)

    def logits(self, x):
        """(N, rows, cols) cell logits of (N, 112, 2 rows, 2 cols) stage-4 features."""
        return self.head(self.stages(x))[:, 0]

    def film_scores(self, features: np.ndarray) -> np.ndarray:
        """Cell probabilities of one film's stage-4 features."""
        import torch

        with torch.inference_mode():
            return torch.sigmoid(self.logits(torch.from_numpy(features.astype(np.float32))[None])).numpy()[0]


def prepare(records, stage4, blocks) -> dict:
    """Each film's stage-4 features (float32), cell labels and breast cells on the stride-32 grid."""
    films = {}
    for record in records:
        grid = blocks[record.ref].breast.shape
        films[record.ref] = (stage4[record.ref].features.astype(np.float32),
                             cell_labels(record, grid, STRIDE).astype(np.float32),
                             blocks[record.ref].breast.astype(np.float32))
    return films


def sample_crops(records, films, count: int, crop: int, rng: np.random.Generator, flips: bool = True):
    """`count` stage-4 crops `crop` cells wide (half near a lesion), their stride-32 labels and breast masks."""
    lesioned = [r for r in records if any(les.located for les in r.lesions)]
    half = crop // 2
    xs, labels, masks = [], [], []
    for i in range(count):
        if i % 2 == 0 and lesioned:
            record = lesioned[rng.integers(len(lesioned))]
            located = [les for les in record.lesions if les.located]
            lesion = located[rng.integers(len(located))]
            features, label, breast = films[record.ref]
            r0 = int(lesion.row // STRIDE) - int(rng.integers(1, half - 1))
            c0 = int(lesion.col // STRIDE) - int(rng.integers(1, half - 1))
        else:
            record = records[rng.integers(len(records))]
            features, label, breast = films[record.ref]
            candidates = np.argwhere(breast > 0)
            r, c = candidates[rng.integers(len(candidates))]
            r0, c0 = int(r) - half // 2, int(c) - half // 2
        r0 = int(np.clip(r0, 0, max(label.shape[0] - half, 0)))
        c0 = int(np.clip(c0, 0, max(label.shape[1] - half, 0)))
        x = features[:, 2 * r0:2 * (r0 + half), 2 * c0:2 * (c0 + half)]
        lab, mask = label[r0:r0 + half, c0:c0 + half], breast[r0:r0 + half, c0:c0 + half]
        if x.shape[1:] != (crop, crop) or lab.shape != (half, half):
            continue  # a film smaller than a crop
        if flips and rng.random() < 0.5:
            x, lab, mask = x[:, :, ::-1], lab[:, ::-1], mask[:, ::-1]
        if flips and rng.random() < 0.5:
            x, lab, mask = x[:, ::-1], lab[::-1], mask[::-1]
        xs.append(np.ascontiguousarray(x))
        labels.append(np.ascontiguousarray(lab))
        masks.append(np.ascontiguousarray(mask))
    return np.stack(xs), np.stack(labels), np.stack(masks)


def train_fold(train, films, args, seed: int) -> TunedCells:
    """Fine-tune on crops of the training films."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = TunedCells()
    optimiser = torch.optim.AdamW([{"params": net.stages.parameters(), "lr": args.lr},
                                   {"params": net.head.parameters(), "lr": 1e-3}], weight_decay=args.weight_decay)
    for _ in range(args.epochs):
        for _ in range(args.steps):
            x, labels, masks = sample_crops(train, films, args.batch, args.crop, rng, not args.no_flips)
            target, weight = torch.from_numpy(labels), torch.from_numpy(masks)
            positive = float((target * weight).sum() / weight.sum().clamp(min=1))
            weight = weight * torch.where(target > 0, 0.5 / max(positive, 1e-3), 0.5 / max(1 - positive, 1e-3))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net.logits(torch.from_numpy(x)), target,
                                                                        weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return net


def main() -> None:
    """Each fold of each seed: fine-tune, score the held-out films beside the frozen heads, print the table."""

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=16, help="crop width in stage-4 cells (16 px each)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--no-flips", action="store_true", help="do not flip the feature crops")
    parser.add_argument("--scores", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    stage4 = load_cells(records, spec=FeatureSpec("stage4"))
    blocks = load_cells(records)
    films = prepare(records, stage4, blocks)
    rows, kept = [], []
    for seed in range(args.seeds):
        parts = woman_folds(records, args.folds, seed)
        for k, test in enumerate(parts):
            started = time.monotonic()
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            net = train_fold(train, films, args, seed * 100 + k)
            maps = {r.ref: net.film_scores(films[r.ref][0]) for r in records}
            own = {r.ref: image_score(maps[r.ref], blocks[r.ref].breast) for r in records}
            asym = {r.ref: own[r.ref] - own[p.ref] if (p := other_film(r, by_ref)) is not None else 0.0
                    for r in records}
            truth = np.array([r.label != "normal" for r in test])
            tuned = np.array([own[r.ref] for r in test])
            detections = [[Detection(b, "lesion", s) for b, s in cell_boxes(maps[r.ref], blocks[r.ref].breast, STRIDE)]
                          for r in test]
            frozen = run_fold(train, test, blocks, by_ref, seed * 100 + k,
                              ScreeningConfig(tune_epochs=0, fine_asymmetry=False))
            train_tuned = np.array([own[r.ref] for r in train])
            fused2 = frozen.scores["fused"] + standardised(tuned, train_tuned)
            train_asym = np.array([asym[r.ref] for r in train])
            fused3 = frozen.scores["fused"] + standardised(np.array([asym[r.ref] for r in test]), train_asym)
            row = {"cells": roc_auc(truth, tuned), "asymmetry": roc_auc(truth, np.array([asym[r.ref] for r in test])),
                   "sensitivity": sensitivity_at(froc(list(zip(detections, test, strict=True))), 1),
                   "frozen fused": roc_auc(truth, frozen.scores["fused"]),
                   "fused + tuned cells": roc_auc(truth, fused2),
                   "fused + tuned asymmetry": roc_auc(truth, fused3),
                   "frozen sensitivity": sensitivity_at(froc(list(zip(frozen.detections, test, strict=True))), 1)}
            rows.append(row)
            kept.extend({"seed": seed, "fold": k, "ref": r.ref, "truth": r.label, "tuned_cells": float(tuned[i]),
                         "tuned_asymmetry": asym[r.ref], "tuned_train_mean": float(train_tuned.mean()),
                         "tuned_train_sd": float(train_tuned.std()),
                         **{f"frozen_{v}": float(frozen.scores[v][i]) for v in frozen.scores}}
                        for i, r in enumerate(test))
            if args.scores:
                args.scores.write_text(json.dumps(kept, indent=1))
            print(f"seed {seed} fold {k} ({time.monotonic() - started:.0f} s): "
                  + ", ".join(f"{name} {value:.3f}" for name, value in row.items()), flush=True)
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    print("| " + " | ".join(f"{(s := mean_sd([r[n] for r in rows]))['mean']:.3f} ± {s['sd']:.3f}"
                            for n in rows[0]) + " |")


if __name__ == "__main__":
    main()
