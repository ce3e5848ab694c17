"""The fine-tuned cell map: the backbone's last two block stages, trained on mammograms, and a 1×1 cell classifier.

It reads the frozen backbone's stage-4 features (112 channels, stride 16 at 0.2 mm pixels)
and gives one lesion probability per 32-pixel cell, the grid of the screening heads.
Cross-validated by woman, its local maxima find lesions far better than the frozen
cells' (see docs/experiments.md), so the screener takes its boxes and heatmap from it. A
map's most suspicious cell minus the other film's (its asymmetry) joins the both-films
verdict: that of a second map fitted on the films alone (the *verdict map*,
`ScreeningConfig.verdict_map`), which ranks images better than the map fitted with mirror
images; without a verdict map, that of the boxes' map.

Fitting runs only the last two stages, on 256-pixel crops of the cached stage-4 features
(the frozen first five stages run once per film): half centred near a lesion, half
anywhere in the breast; cells are labelled lesion-aware like the screening heads' and
the loss is class-balanced over breast cells. BatchNorm keeps its ImageNet statistics.
Crops are not flipped: flipping features (not images) made the map worse in
cross-validation. Each film's mirror image (padded to whole cells, mirrored, run through
the backbone once) trains beside it instead (`ScreeningConfig.tune_mirrors`): that finds
more lesions (0.405 ± 0.113 against 0.346 ± 0.095 at 1 false positive per image, 15 folds),
and training it for 30 epochs instead of 15 more still (0.478 ± 0.103).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_mammo.engine.progress import Progress, StopFlag, progress_event
from napari_mammo.errors import MammoInputError
from napari_mammo.models.screening import CellFeatures, ScreeningConfig, cell_labels
from napari_mammo.records import Mammogram

FIRST_STAGE = 5
"""The backbone's block stages from this one on are fine-tuned (Lite0: stages 6 and 7, 192 and 320 channels)."""
PREFIX = "tuned."
"""Tensor-name prefix of the tuned cells in a screening weights file."""
VERDICT_PREFIX = "verdict_map."
"""Tensor-name prefix of the verdict's own tuned map (fitted on the films alone; `ScreeningConfig.verdict_map`)."""


def build_tuned_cells(backbone):
    """A trainable copy of the backbone's last block stages (ImageNet weights) with a fresh 1×1 cell classifier."""
    import copy

    import torch

    stages = copy.deepcopy(backbone.blocks[FIRST_STAGE:])
    channels = stages[-1][-1].conv_pwl.out_channels
    return torch.nn.Sequential(*stages, torch.nn.Conv2d(channels, 1, 1))


def tuned_logits(net, stage4):
    """(N, rows, cols) cell logits of (N, C, 2·rows, 2·cols) stage-4 features (a tensor)."""
    return net(stage4)[:, 0]


def tuned_scores(net, stage4: np.ndarray) -> np.ndarray:
    """Lesion probability of each cell of one image, from its (C, H, W) stage-4 features."""
    import torch

    net.eval()
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(stage4, np.float32))[None]
        return torch.sigmoid(tuned_logits(net, x))[0].numpy()


def tuned_maps(net, stage4: dict[str, CellFeatures]) -> dict[str, np.ndarray]:
    """The tuned cell map of every film whose stage-4 features are given (not of the mirror images)."""
    return {ref: tuned_scores(net, found.features) for ref, found in stage4.items() if not is_mirror(ref)}


def maps_both_ways(net, stage4: dict[str, CellFeatures], maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each film's tuned map (`tuned_maps`) averaged with its mirror image's reading (`both_ways`)."""
    missing = [ref for ref in maps if mirror_ref(ref) not in stage4]
    if missing:
        raise ValueError(f"test-time mirrors need the mirror images' features (load_screening_features); "
                         f"{len(missing)} missing, first {missing[0]}")
    return {ref: both_ways(found, net, stage4[mirror_ref(ref)].features) for ref, found in maps.items()}


def both_ways(scores: np.ndarray, net, mirror_stage4: np.ndarray) -> np.ndarray:
    """A film's tuned map averaged with the map read on its mirror image's stage-4 features, mirrored back:
    test-time mirrors (`ScreeningConfig.box_mirrors`)."""
    return (scores + tuned_scores(net, mirror_stage4)[:, ::-1]) / 2


MIRROR = "~mirror"
"""Suffix of a mirror image's reference in the feature dictionaries (`ScreeningConfig.tune_mirrors`)."""


def mirror_ref(ref: str) -> str:
    """The reference under which a film's left-right mirror image's features are kept."""
    return ref + MIRROR


def is_mirror(ref: str) -> bool:
    """Whether a feature dictionary's reference is a mirror image's."""
    return ref.endswith(MIRROR)


def mirror_pixels(pixels: np.ndarray, stride: int = 32) -> np.ndarray:
    """A 0.2 mm film padded on the right to whole 32-pixel cells, then mirrored left-right: its cell grid is
    the film's grid mirrored, cell for cell."""
    width = -(-pixels.shape[1] // stride) * stride
    # black padding: `normalise` takes uint8 as /255 and other films by their own range
    padded = np.full((pixels.shape[0], width), 0 if pixels.dtype == np.uint8 else pixels.min(), pixels.dtype)
    padded[:, :pixels.shape[1]] = pixels
    return np.ascontiguousarray(padded[:, ::-1])


def mirrored_record(record: Mammogram, cells: CellFeatures) -> Mammogram:
    """A film's record as its mirror image (`mirror_pixels`) sees it: lesion columns mirrored across the grid."""
    from dataclasses import replace

    width = cells.breast.shape[1] * cells.stride
    lesions = tuple(replace(les, col=width - les.col) if les.located else les for les in record.lesions)
    return replace(record, ref=mirror_ref(record.ref), lesions=lesions)


def tuned_tensors(net, prefix: str = PREFIX) -> dict:
    """The tuned cells as named tensors for a weights file."""
    return {prefix + key: value.detach().float().contiguous() for key, value in net.state_dict().items()}


def tuned_state(state: dict, prefix: str = PREFIX) -> dict | None:
    """The tuned cells' tensors of a weights file (`load_weights` refused non-finite ones); None when it has
    none (weights from before them)."""
    tensors = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    return tensors or None


def tuned_net(tensors: dict, backbone, path: Path, name: str = "tuned cells"):
    """The tuned cells (`name` in messages) built on the backbone's architecture with a weights file's tensors."""
    net = build_tuned_cells(backbone)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise MammoInputError(path, f"the {name} do not fit the backbone: {first}") from None
    return net.eval()


def crop_source(record: Mammogram, stage4: CellFeatures, cells: CellFeatures, crop: int):
    """A film's stage-4 features, cell labels and breast mask, zero-padded to at least one crop."""
    half = crop // 2
    rows, cols = max(cells.breast.shape[0], half), max(cells.breast.shape[1], half)
    features = np.zeros((stage4.features.shape[0], 2 * rows, 2 * cols), np.float32)
    features[:, :stage4.features.shape[1], :stage4.features.shape[2]] = stage4.features
    labels = np.zeros((rows, cols), np.float32)
    labels[:cells.breast.shape[0], :cells.breast.shape[1]] = cell_labels(record, cells.breast.shape, cells.stride)
    breast = np.zeros((rows, cols), np.float32)
    breast[:cells.breast.shape[0], :cells.breast.shape[1]] = cells.breast
    return features, labels, breast


def sample_crops(records: Sequence[Mammogram], sources: dict, count: int, crop: int, stride: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` crops `crop` stage-4 cells wide (every other one near a lesion), their labels and breast masks."""
    lesioned = [r for r in records if any(les.located for les in r.lesions)]
    half = crop // 2
    xs, labels, masks = [], [], []
    for i in range(count):
        if i % 2 == 0 and lesioned:
            record = lesioned[rng.integers(len(lesioned))]
            located = [les for les in record.lesions if les.located]
            lesion = located[rng.integers(len(located))]
            r0 = int(lesion.row // stride) - int(rng.integers(1, max(half - 1, 2)))
            c0 = int(lesion.col // stride) - int(rng.integers(1, max(half - 1, 2)))
        else:
            record = records[rng.integers(len(records))]
            breast = sources[record.ref][2]
            candidates = np.argwhere(breast > 0) if breast.any() else np.argwhere(breast == 0)
            r, c = candidates[rng.integers(len(candidates))]
            r0, c0 = int(r) - half // 2, int(c) - half // 2
        features, label, breast = sources[record.ref]
        r0 = int(np.clip(r0, 0, label.shape[0] - half))
        c0 = int(np.clip(c0, 0, label.shape[1] - half))
        xs.append(features[:, 2 * r0:2 * (r0 + half), 2 * c0:2 * (c0 + half)])
        labels.append(label[r0:r0 + half, c0:c0 + half])
        masks.append(breast[r0:r0 + half, c0:c0 + half])
    return np.stack(xs), np.stack(labels), np.stack(masks)


def balanced_loss(logits, target, breast):
    """Binary cross-entropy over breast cells, lesion and other cells weighted half each."""
    import torch

    positive = float((target * breast).sum() / breast.sum().clamp(min=1))
    weight = breast * torch.where(target > 0, 0.5 / max(positive, 1e-3), 0.5 / max(1 - positive, 1e-3))
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=weight)


def fine_tune_cells(records: Sequence[Mammogram], stage4: dict[str, CellFeatures], cells: dict[str, CellFeatures],
                    config: ScreeningConfig, seed: int = 0, progress: Progress | None = None,
                    stop: StopFlag | None = None):
    """Train the tuned cell map on `records` (their stage-4 and screening-grid features) and return it."""
    import torch

    from napari_mammo.models.backbone import load_backbone

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_tuned_cells(load_backbone(config.backbone)).eval()  # eval: BatchNorm keeps ImageNet's statistics
    head, stages = net[-1], net[:-1]
    optimiser = torch.optim.AdamW([{"params": stages.parameters(), "lr": config.tune_learning_rate},
                                   {"params": head.parameters(), "lr": 1e-3}], weight_decay=1e-4)
    if config.tune_mirrors:  # each film's mirror image trains beside it (load_screening_features loads them)
        missing = [r.ref for r in records if mirror_ref(r.ref) not in stage4]
        if missing:
            raise ValueError(f"tune_mirrors needs the mirror images' features (load_screening_features); "
                             f"{len(missing)} missing, first {missing[0]}")
        records = [*records, *(mirrored_record(r, cells[r.ref]) for r in records)]
    sources = {r.ref: crop_source(r, stage4[r.ref], cells[r.ref], config.tune_crop) for r in records}
    stride = next(iter(cells.values())).stride
    total = config.tune_epochs * config.tune_steps
    for step in range(total):
        if stop is not None and stop():
            break
        x, labels, masks = sample_crops(records, sources, config.tune_batch, config.tune_crop, stride, rng)
        loss = balanced_loss(tuned_logits(net, torch.from_numpy(x)), torch.from_numpy(labels),
                             torch.from_numpy(masks))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress:
            progress(progress_event("fine-tuning", step + 1, total, loss=float(loss.detach())))
    return net.eval()
