"""IDBLL: torchvision's SSD with a small 1-channel backbone sized for mammogram lesions.

Input: a 512×512 grey image (a 1024×1024 mini-MIAS mammogram halved, 0.4 mm pixels).
Feature maps at strides 8, 16, 32 and 64 (64², 32², 16², 8² cells) carry square default
boxes (lesions are circles) whose scales were chosen from the mini-MIAS lesion sizes:
diameters run from 0.6% to 38% of the image edge (10th percentile 3.6%, median 7.4%,
90th 17%), so the scales 0.03, 0.06, 0.12, 0.24 (and 0.45 for the last map's extra box)
double from map to map and cover them all.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

INPUT_SIZE = 512
SCALES = [0.03, 0.06, 0.12, 0.24, 0.45]
DETECTOR_CLASSES = ("background", "lesion")


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    """3×3 conv, batch norm, ReLU, then a second 3×3 conv with batch norm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class MammoBackbone(nn.Module):
    """A small CNN returning feature maps at strides 8, 16, 32 and 64."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96, 128, 128)) -> None:
        super().__init__()
        self.stem = nn.Sequential(_block(1, widths[0], 2), _block(widths[0], widths[1], 2))  # stride 4
        self.stages = nn.ModuleList([_block(widths[i], widths[i + 1], 2) for i in range(1, len(widths) - 1)])
        self.out_channels = list(widths[2:])

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        """Feature maps, finest first."""
        h = self.stem(x)
        out = OrderedDict()
        for i, stage in enumerate(self.stages):
            h = stage(h)
            out[str(i)] = h
        return out


def build_idbll(score_thresh: float = 0.01, detections_per_img: int = 100):
    """The SSD detector (torchvision's SSD, DefaultBoxGenerator, SSDHead) for one lesion class."""
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD, SSDHead

    backbone = MammoBackbone()
    anchors = DefaultBoxGenerator([[1]] * len(backbone.out_channels), scales=SCALES, steps=[8, 16, 32, 64])
    head = SSDHead(backbone.out_channels, anchors.num_anchors_per_location(), len(DETECTOR_CLASSES))
    return SSD(backbone, anchors, (INPUT_SIZE, INPUT_SIZE), len(DETECTOR_CLASSES), image_mean=[0.5],
               image_std=[0.25], head=head, score_thresh=score_thresh, nms_thresh=0.3,
               detections_per_img=detections_per_img, topk_candidates=400)
