"""Cross-validate an SSD on the pretrained backbone (the issue's "IDBLL on a pretrained base").

    python tools/ssd_backbone_experiment.py --data "$NAPARI_MAMMO_MIAS" [--seeds 1] [--steps 600]
        [--fold K] [--out runs/ssd-backbone.json]

torchvision's SSD (its anchor matching, hard-negative mining, box coding and NMS) on
EfficientNet-Lite0, as SSDLite puts an SSD on a MobileNet. To fit five folds on two CPU
cores it starts from the cached stage-4 features (the frozen first five block stages, as
the tuned cell map does) and fine-tunes the last two stages with ImageNet weights, plus
two new stride-2 stages and SSD heads. Feature maps: stage 4 (stride 16 pixels at 0.2 mm),
stage 7 (32), and the new stages (64, 128), with square default boxes of 3 %, 6 %, 12 %,
24 % and 45 % of a 1024-pixel film (IDBLL's scales, from the mini-MIAS lesion sizes). The
SSD's "image" is stage-4 features, so box coordinates are in stage-4 cells (16 pixels): it
trains on 32 × 32-cell crops (512 pixels; half around a lesion, half anywhere in the
breast) and detects on whole films (64 × 64 cells) with default boxes of the same pixel
sizes. Each film's mirror image trains beside it, as for the tuned map; BatchNorm keeps
ImageNet's statistics.

It reports lesion sensitivity at 0.5, 1 and 2 false positives per image on the held-out
films of each fold, with the same FROC and hit rule as `crossval screening`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_mammo.evaluation.crossval import load_screening_features, mean_sd, woman_folds
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.io.mias import read_folder
from napari_mammo.models.backbone import load_backbone
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.models.screening import ScreeningConfig
from napari_mammo.models.tuned_cells import FIRST_STAGE, mirror_ref, mirrored_record

CELL = 16
"""Pixels (0.2 mm) per stage-4 cell: the SSD's coordinate unit."""
GRID = 64
"""The SSD's input at inference: 64 × 64 stage-4 cells (a 1024² film); smaller films are zero-padded."""
CROP = 32
"""Training crops: 32 × 32 stage-4 cells (512 pixels), a quarter of a film, so a fold fits in minutes."""
SCALES = [0.03, 0.06, 0.12, 0.24, 0.45]
"""Default box sizes as fractions of a 1024-pixel film (on a crop they are scaled to the same pixels)."""


def extra_stage(cin: int, cout: int) -> nn.Sequential:
    """A new stride-2 stage (1×1 squeeze, 3×3 stride-2 conv), as SSD's extra layers."""
    return nn.Sequential(nn.Conv2d(cin, cout // 2, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout // 2, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True))


class FeatureBackbone(nn.Module):
    """Stage-4 features in; maps at strides 16, 32, 64 and 128 pixels out."""

    def __init__(self, backbone) -> None:
        super().__init__()
        import copy

        self.stages = copy.deepcopy(backbone.blocks[FIRST_STAGE:])
        channels = self.stages[-1][-1].conv_pwl.out_channels
        self.extras = nn.ModuleList([extra_stage(channels, 256), extra_stage(256, 256)])
        self.out_channels = [112, channels, 256, 256]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """The four feature maps, finest first."""
        out = OrderedDict(s4=x)
        h = self.stages(x)
        out["s7"] = h
        for i, stage in enumerate(self.extras):
            h = stage(h)
            out[f"e{i}"] = h
        return out


def build_ssd(backbone, size: int = CROP):
    """torchvision's SSD on the feature backbone, for one lesion class, on `size` × `size` stage-4 cells."""
    from torchvision.models.detection.ssd import SSD, SSDHead

    body = FeatureBackbone(backbone)
    anchors = anchor_boxes(size)
    head = SSDHead(body.out_channels, anchors.num_anchors_per_location(), 2)
    return SSD(body, anchors, (size, size), 2, image_mean=[0.0] * 112, image_std=[1.0] * 112, head=head,
               score_thresh=0.01, nms_thresh=0.3, detections_per_img=20, topk_candidates=400)


def anchor_boxes(size: int):
    """Default boxes of the same sizes in pixels whatever the input's size in cells."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

    return DefaultBoxGenerator([[1]] * 4, scales=[s * GRID / size for s in SCALES], steps=[1, 2, 4, 8])


def for_films(model):
    """The crop-trained SSD set up for whole films (64 × 64 cells): same weights, anchors of the same pixels."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    model.anchor_generator = anchor_boxes(GRID)
    model.transform = GeneralizedRCNNTransform(GRID, GRID, [0.0] * 112, [1.0] * 112, size_divisible=1,
                                               fixed_size=(GRID, GRID))
    return model.eval()


def film_input(stage4: np.ndarray) -> torch.Tensor:
    """A film's stage-4 features zero-padded (or cut) to the SSD's grid."""
    x = np.zeros((stage4.shape[0], GRID, GRID), np.float32)
    rows, cols = min(stage4.shape[1], GRID), min(stage4.shape[2], GRID)
    x[:, :rows, :cols] = stage4[:, :rows, :cols]
    return torch.from_numpy(x)


def film_target(record) -> dict:
    """The film's located lesions as SSD boxes (x0, y0, x1, y1) in stage-4 cells."""
    boxes = [[(les.col - les.radius) / CELL, (les.row - les.radius) / CELL,
              (les.col + les.radius) / CELL, (les.row + les.radius) / CELL]
             for les in record.lesions if les.located]
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4).clamp(0, GRID)
    return {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


def crop(x: torch.Tensor, target: dict, r0: int, c0: int) -> tuple[torch.Tensor, dict]:
    """A CROP × CROP window of a film's input and the boxes whose centre lies in it, clipped to it."""
    boxes = target["boxes"] - torch.tensor([c0, r0, c0, r0], dtype=torch.float32)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = ((centre >= 0) & (centre < CROP)).all(dim=1)
    boxes = boxes[inside].clamp(0, CROP)
    return x[:, r0:r0 + CROP, c0:c0 + CROP], {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


def sample_window(target: dict, breast: np.ndarray, near_lesion: bool, rng: np.random.Generator) -> tuple[int, int]:
    """A crop's corner: around one of the film's lesions, or around a random breast cell."""
    if near_lesion:
        box = target["boxes"][rng.integers(len(target["boxes"]))]
        r, c = float(box[1] + box[3]) / 2, float(box[0] + box[2]) / 2
        r0, c0 = r - rng.integers(4, CROP - 4), c - rng.integers(4, CROP - 4)
    else:
        rows, cols = np.nonzero(breast) if breast.any() else np.nonzero(np.ones_like(breast))
        i = rng.integers(len(rows))
        r0, c0 = 2 * rows[i] - CROP // 2, 2 * cols[i] - CROP // 2  # breast cells are 32 pixels: 2 stage-4 cells
    return int(np.clip(r0, 0, GRID - CROP)), int(np.clip(c0, 0, GRID - CROP))


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep the backbone stages' BatchNorm in eval mode (ImageNet statistics, as the tuned map)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def fit(train, cells, stage4, steps: int, batch: int, seed: int):
    """Fit the SSD on the training films and their mirror images."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_ssd(load_backbone("lite0"))
    films = [*train, *(mirrored_record(r, cells[r.ref]) for r in train)]
    features = {r.ref: film_input(stage4[r.ref].features) for r in films}
    targets = {r.ref: film_target(r) for r in films}
    lesioned = [r for r in films if len(targets[r.ref]["boxes"])]
    stages = list(model.backbone.stages.parameters())
    staged = {id(p) for p in stages}
    others = [p for p in model.parameters() if id(p) not in staged]
    optimiser = torch.optim.AdamW([{"params": stages, "lr": 1e-4}, {"params": others, "lr": 1e-3}],
                                  weight_decay=1e-4)
    model.train()
    freeze_batchnorm(model)
    for step in range(steps):
        xs, ts = [], []
        for i in range(batch):
            film = lesioned[rng.integers(len(lesioned))] if i % 2 == 0 else films[rng.integers(len(films))]
            corner = sample_window(targets[film.ref], cells[film.ref].breast, i % 2 == 0, rng)
            x, t = crop(features[film.ref], targets[film.ref], *corner)
            xs.append(x)
            ts.append(t)
        losses = model(xs, ts)
        loss = losses["bbox_regression"] + losses["classification"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % 100 == 0:
            print(f"  step {step}: loss {float(loss.detach()):.3f}", flush=True)
    return for_films(model)


def detect(model, records, stage4) -> list[list[Detection]]:
    """Each held-out film's boxes as Detections (rows and columns in pixels)."""
    out = []
    with torch.inference_mode():
        for record in records:
            found = model([film_input(stage4[record.ref].features)])[0]
            out.append([Detection((float(b[1]) * CELL, float(b[0]) * CELL, float(b[3]) * CELL,
                                   float(b[2]) * CELL), "lesion", float(s))
                        for b, s in zip(found["boxes"], found["scores"], strict=True)])
    return out


def main() -> None:
    """Each fold of each seed: fit the SSD, score the held-out films' boxes, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--fold", type=int, help="only this fold of each seed")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    cells, stage4 = load_screening_features(records, ScreeningConfig(tune_mirrors=True))
    assert all(mirror_ref(r.ref) in stage4 for r in records)
    rows = []
    for seed in range(args.seeds):
        for k, test in enumerate(parts := woman_folds(records, args.folds, seed)):
            if args.fold is not None and k != args.fold:
                continue
            started = time.monotonic()
            train = [r for i, part in enumerate(parts) if i != k for r in part]
            model = fit(train, cells, stage4, args.steps, args.batch, seed * 100 + k)
            curve = froc(list(zip(detect(model, test, stage4), test, strict=True)))
            row = {"seed": seed, "fold": k, **{f"sens@{fp}": sensitivity_at(curve, fp) for fp in (0.5, 1, 2)}}
            rows.append(row)
            print(f"seed {seed} fold {k} ({time.monotonic() - started:.0f} s): "
                  + ", ".join(f"{key} {row[key]:.3f}" for key in ("sens@0.5", "sens@1", "sens@2")), flush=True)
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
    for key in ("sens@0.5", "sens@1", "sens@2"):
        s = mean_sd([r[key] for r in rows])
        print(f"| {key} | {s['mean']:.3f} ± {s['sd']:.3f} |")


if __name__ == "__main__":
    main()
