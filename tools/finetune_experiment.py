"""Cross-validate fine-tuning the backbone's last two block stages as a cell classifier, on 256-pixel crops.

    python tools/finetune_experiment.py --data "$NAPARI_MAMMO_MIAS" --folds 5 --seed 0 --epochs 15 [--scores s.json]

In each fold by woman (the folds of `napari-mammo crossval`), EfficientNet-Lite0's stages
6 and 7 (`blocks[5:]`) and a 1x1 convolution on the 320-channel block output are trained
to label 32-pixel cells lesion / not lesion (the same lesion-aware labels as the shipped
cell head), on 256x256 crops at 0.2 mm: half centred near a lesion, half anywhere in the
breast, flipped at random; BatchNorm keeps its ImageNet statistics; the rest of the
network stays frozen. The held-out women's whole films are then scored: cells (the
film's most suspicious cell), asymmetry (minus the other film's) and lesion sensitivity
at 1 FP/image of the cell boxes, printed per fold with the frozen shipped model's figures
on the same fold for comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_mammo.data.patches import breast_mask
from napari_mammo.data.preprocess import normalise, to_mias_scale
from napari_mammo.evaluation.crossval import ScreeningConfig, load_cells, run_fold, woman_folds
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.images import read_image
from napari_mammo.io.mias import read_folder
from napari_mammo.models.backbone import backbone_input, load_backbone
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.models.screening import cell_boxes, cell_breast, cell_labels, image_score, other_film

CROP, STRIDE = 256, 32


def prepare(records) -> dict:
    """Each film at 0.2 mm as [0, 1] grey, with its cell labels and breast cells (32-pixel grid)."""
    films = {}
    for record in records:
        image = read_image(record.path)
        pixels, _ = to_mias_scale(image.pixels, image.spacing_mm)
        grey = normalise(pixels)
        rows, cols = -(-grey.shape[0] // STRIDE), -(-grey.shape[1] // STRIDE)
        padded = np.zeros((rows * STRIDE, cols * STRIDE), np.float32)
        padded[: grey.shape[0], : grey.shape[1]] = grey
        films[record.ref] = (padded, cell_labels(record, (rows, cols), STRIDE).astype(np.float32),
                             cell_breast(breast_mask(pixels), (rows, cols), STRIDE))
    return films


def sample_crops(records, films, count: int, rng: np.random.Generator):
    """`count` crops (half near a lesion), their cell labels and breast masks, flipped at random."""
    lesioned = [r for r in records if any(les.located for les in r.lesions)]
    images, labels, masks = [], [], []
    cells = CROP // STRIDE
    for i in range(count):
        if i % 2 == 0 and lesioned:
            record = lesioned[rng.integers(len(lesioned))]
            lesion = [les for les in record.lesions if les.located][rng.integers(
                sum(les.located for les in record.lesions))]
            grey, label, breast = films[record.ref]
            centre = (int(lesion.row // STRIDE), int(lesion.col // STRIDE))
            r0 = centre[0] - int(rng.integers(1, cells - 1))
            c0 = centre[1] - int(rng.integers(1, cells - 1))
        else:
            record = records[rng.integers(len(records))]
            grey, label, breast = films[record.ref]
            candidates = np.argwhere(breast)
            r, c = candidates[rng.integers(len(candidates))]
            r0, c0 = int(r) - cells // 2, int(c) - cells // 2
        r0 = int(np.clip(r0, 0, label.shape[0] - cells))
        c0 = int(np.clip(c0, 0, label.shape[1] - cells))
        crop = grey[r0 * STRIDE:(r0 + cells) * STRIDE, c0 * STRIDE:(c0 + cells) * STRIDE]
        lab = label[r0:r0 + cells, c0:c0 + cells]
        mask = breast[r0:r0 + cells, c0:c0 + cells].astype(np.float32)
        if rng.random() < 0.5:
            crop, lab, mask = crop[:, ::-1], lab[:, ::-1], mask[:, ::-1]
        if rng.random() < 0.5:
            crop, lab, mask = crop[::-1], lab[::-1], mask[::-1]
        images.append(np.ascontiguousarray(crop))
        labels.append(np.ascontiguousarray(lab))
        masks.append(np.ascontiguousarray(mask))
    return np.stack(images), np.stack(labels), np.stack(masks)


class CellNet:
    """Lite0 up to its last block stage, the last two stages trainable, and a 1x1 cell classifier."""

    def __init__(self) -> None:
        import torch

        self.backbone = load_backbone()
        self.head = torch.nn.Conv2d(320, 1, 1)
        for p in self.backbone.parameters():
            p.requires_grad = False
        self.trainable = [p for stage in self.backbone.blocks[5:] for p in stage.parameters()]
        for p in self.trainable:
            p.requires_grad = True

    def __call__(self, x):
        import torch

        model = self.backbone
        with torch.no_grad():
            x = model.bn1(model.conv_stem(x))
            for stage in model.blocks[:5]:
                x = stage(x)
        for stage in model.blocks[5:]:
            x = stage(x)
        return self.head(x)[:, 0]

    def film_scores(self, grey: np.ndarray) -> np.ndarray:
        """Cell probabilities of a whole film."""
        import torch

        with torch.inference_mode():
            return torch.sigmoid(self(backbone_input(grey))).numpy()[0]


def train_fold(train, films, epochs: int, steps: int, batch: int, seed: int) -> CellNet:
    """Fine-tune a CellNet on crops of the training films."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = CellNet()
    net.backbone.eval()  # BatchNorm keeps ImageNet's statistics
    optimiser = torch.optim.AdamW([{"params": net.trainable, "lr": 1e-4},
                                   {"params": net.head.parameters(), "lr": 1e-3}], weight_decay=1e-4)
    for epoch in range(epochs):
        losses = []
        for _ in range(steps):
            images, labels, masks = sample_crops(train, films, batch, rng)
            x = torch.cat([backbone_input(image) for image in images])
            target, weight = torch.from_numpy(labels), torch.from_numpy(masks)
            positive = float((target * weight).sum() / weight.sum().clamp(min=1))
            weight = weight * torch.where(target > 0, 0.5 / max(positive, 1e-3), 0.5 / max(1 - positive, 1e-3))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), target, weight=weight)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
        print(f"  epoch {epoch + 1}: loss {np.mean(losses):.4f}", flush=True)
    return net


def main() -> None:
    """Each fold: fine-tune, score the held-out films, print both models' figures."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scores", type=Path, help="write every held-out film's scores here (JSON), to fuse later")
    args = parser.parse_args()
    torch.set_num_threads(2)
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    films = prepare(records)
    cells = load_cells(records)
    parts = woman_folds(records, args.folds, args.seed)
    rows, kept = [], []
    for k, test in enumerate(parts):
        started = time.monotonic()
        train = [r for i, part in enumerate(parts) if i != k for r in part]
        net = train_fold(train, films, args.epochs, args.steps, args.batch, args.seed * 100 + k)
        maps = {r.ref: net.film_scores(films[r.ref][0]) for r in test}
        truth = np.array([r.label != "normal" for r in test])
        own = np.array([image_score(maps[r.ref], films[r.ref][2]) for r in test])
        other = [other_film(r, by_ref) for r in test]
        asym = np.array([o - image_score(maps[p.ref], films[p.ref][2]) if p is not None and p.ref in maps else 0.0
                         for o, p in zip(own, other, strict=True)])
        detections = [[Detection(b, "lesion", s) for b, s in cell_boxes(maps[r.ref], films[r.ref][2], STRIDE)]
                      for r in test]
        tuned = (roc_auc(truth, own), roc_auc(truth, asym),
                 sensitivity_at(froc(list(zip(detections, test, strict=True))), 1))
        frozen = run_fold(train, test, cells, by_ref, args.seed * 100 + k,
                          ScreeningConfig(tune_epochs=0, fine_asymmetry=False))
        shipped = (roc_auc(truth, frozen.scores["cells"]), roc_auc(truth, frozen.scores["asymmetry"]),
                   sensitivity_at(froc(list(zip(frozen.detections, test, strict=True))), 1))
        rows.append((tuned, shipped))
        kept.extend({"fold": k, "ref": r.ref, "truth": r.label, "tuned_cells": float(o), "tuned_asymmetry": float(a),
                     **{f"frozen_{v}": float(frozen.scores[v][i]) for v in frozen.scores}}
                    for i, (r, o, a) in enumerate(zip(test, own, asym, strict=True)))
        if args.scores:
            args.scores.write_text(json.dumps(kept, indent=1))
        print(f"fold {k} ({time.monotonic() - started:.0f} s): fine-tuned cells {tuned[0]:.3f}, asymmetry "
              f"{tuned[1]:.3f}, sensitivity@1FP {tuned[2]:.3f} | frozen cells {shipped[0]:.3f}, asymmetry "
              f"{shipped[1]:.3f}, sensitivity@1FP {shipped[2]:.3f}", flush=True)
    tuned, shipped = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    print("| model | AUC cells | AUC asymmetry | sensitivity at 1 FP/image |\n|---|---|---|---|")
    for name, values in (("fine-tuned stages 6-7", tuned), ("frozen (shipped heads)", shipped)):
        means, sds = np.nanmean(values, 0), np.nanstd(values, 0, ddof=1)
        print(f"| {name} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(means, sds, strict=True)) + " |")


if __name__ == "__main__":
    main()
