"""Screening on the pretrained backbone: a suspicion score per 32-pixel cell, an image score, and boxes.

Each cell of the backbone's feature map (stride 32 at 0.2 mm pixels) is scored by a
logistic head trained lesion-aware: cells whose centre lies in a lesion circle are
abnormal, the other breast cells of the training images normal. The image score is its
most suspicious cell (after a 3×3 mean, so one noisy cell does not decide); boxes are the
local maxima of the cell scores, each centred on the score-weighted centre of its 3×3 cells.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_mammo.data.patches import breast_mask
from napari_mammo.data.preprocess import normalise
from napari_mammo.models.backbone import LAYERS, architecture_of
from napari_mammo.records import Mammogram, partner_of

BOX_HALF = 48
"""Half the side of a reported box, in 0.2 mm pixels (lesion radii in mini-MIAS: median about 45)."""


@dataclass
class CellFeatures:
    """The backbone's features of one image: (C, rows, cols) float16, which cells are breast, and
    the cells' edge in the image's (0.2 mm) pixels."""

    features: np.ndarray
    breast: np.ndarray
    stride: float


@dataclass(frozen=True)
class FeatureSpec:
    """Which backbone features: the layer read (see `backbone.LAYERS`), the image's zoom before it, and the
    backbone (Lite0, Lite1 or Lite2)."""

    layer: str = "blocks"
    zoom: float = 1.0
    backbone: str = "lite0"

    @property
    def stride(self) -> float:
        """A cell's edge in the input image's pixels."""
        return LAYERS[self.layer][1] / self.zoom

    @property
    def tag(self) -> str:
        """A name for the cache."""
        return f"{self.layer}-x{self.zoom:g}"


@dataclass(frozen=True)
class ScreeningConfig:
    """Everything a screening model is fitted with; cross-validation compares these."""

    layer: str = "blocks"
    zoom: float = 1.0
    weight_decay: float = 1.0
    contralateral_weight_decay: float = 1.0
    negatives_per_image: int = 150
    top_cells: int = 1
    backbone: str = "lite0"
    tune_epochs: int = 30
    """Epochs of fine-tuning the boxes' tuned cell map (0: none; boxes come from the cell head)."""
    tune_steps: int = 30
    tune_batch: int = 16
    tune_crop: int = 16
    """Crop width in stage-4 features (16 = 256 pixels at 0.2 mm)."""
    tune_learning_rate: float = 1e-4
    tune_mirrors: bool = True
    """Fit the tuned cell map on each film's left-right mirror image too (its own backbone features)."""
    verdict_map: bool = True
    """With mirror images, fit a second tuned map on the films alone, whose asymmetry the verdict sums instead of
    the mirrored map's (the mirrored map finds more lesions, the films-alone map ranks images better)."""
    verdict_tune_epochs: int = 15
    """Epochs of fine-tuning the verdict map (`verdict_map`); the boxes' map takes `tune_epochs`."""
    verdict_both_maps: bool = False
    """With two maps, the verdict sums both maps' asymmetries instead of the verdict map's alone (cross-validation
    reports that sum as "fused_both_maps" either way)."""
    box_mirrors: bool = True
    """Test-time mirrors: the boxes and heatmap come from the boxes' map read on the film and on its mirror image
    (mirrored back), averaged. Asymmetries keep the film's own reading, so the other film is read once."""
    fine_asymmetry: bool = True
    """The both-films verdict also sums the asymmetry of a second frozen cell head, fitted like the first on the
    finer stage-4 features (16-pixel cells)."""

    def __post_init__(self) -> None:
        """Refuse a verdict map of no epochs before any feature is computed."""
        if self.verdict_map and self.verdict_tune_epochs <= 0:
            raise ValueError(f"the verdict map needs at least one epoch, got verdict_tune_epochs "
                             f"{self.verdict_tune_epochs} (without it: verdict_map False, --no-verdict-map)")

    @property
    def features(self) -> FeatureSpec:
        """The backbone features it reads."""
        return FeatureSpec(self.layer, self.zoom, self.backbone)

    @property
    def stage4(self) -> FeatureSpec:
        """The stage-4 features (at the cells' zoom and backbone) that the tuned maps and the fine head read."""
        return FeatureSpec("stage4", self.zoom, self.backbone)

    @property
    def tuned(self) -> FeatureSpec | None:
        """The features the tuned cell map reads (stage 4), or None when it is not fitted."""
        if self.tune_epochs <= 0:
            return None
        if LAYERS[self.layer][1] != 32:
            raise ValueError(f"the tuned cell map has the 32-pixel grid; layer {self.layer!r} has another: "
                             "fit this layer without it (tune_epochs 0; on the command line --tune-epochs 0)")
        return self.stage4

    @property
    def fine(self) -> FeatureSpec | None:
        """The features the fine cell head reads (stage 4), or None without `fine_asymmetry`."""
        return self.stage4 if self.fine_asymmetry else None

    @property
    def two_maps(self) -> bool:
        """Whether it fits the verdict's own tuned map beside the boxes' (see `verdict_map`)."""
        return self.tuned is not None and self.tune_mirrors and self.verdict_map

    @property
    def verdict_fit(self) -> ScreeningConfig:
        """How the verdict map is fitted: on the films alone, for `verdict_tune_epochs`."""
        return replace(self, tune_mirrors=False, tune_epochs=self.verdict_tune_epochs)


def cache_folder(backbone: str = "lite0") -> Path:
    """Where a backbone's features are cached: $NAPARI_MAMMO_CACHE, else the user's cache folder."""
    root = os.environ.get("NAPARI_MAMMO_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"),
                                                         "napari-mammo")
    return Path(root, "features", architecture_of(backbone))


def film_features(model, pixels: np.ndarray, spec: FeatureSpec, extra: Sequence[FeatureSpec] = ()
                  ) -> tuple[CellFeatures, dict[str, np.ndarray], np.ndarray]:
    """A 0.2 mm film's cells of `spec` (features and breast cells, as `cell_feature_set` gives them), from the
    same pass the bare features of the layers of `extra` (whose breast cells are made when needed, `cell_breast`),
    and its breast mask."""
    maps = backbone_maps(model, pixels, (spec, *extra))
    features, mask = maps[spec.layer], breast_mask(pixels)
    return CellFeatures(features, cell_breast(mask, features.shape[1:], spec.stride), spec.stride), maps, mask


def cell_feature_set(model, pixels: np.ndarray, cache_key: str | None,
                     specs: Sequence[FeatureSpec]) -> list[CellFeatures]:
    """Features of several layers of a 0.2 mm image (one backbone and zoom), those not cached from one pass."""
    from napari_mammo.io.atomic import atomic_write_bytes

    if len({(spec.backbone, spec.zoom) for spec in specs}) != 1:
        raise ValueError("one feature set is read with one backbone at one zoom")
    found: dict[FeatureSpec, CellFeatures] = {}
    paths = {spec: cache_folder(spec.backbone) / spec.tag / f"{cache_key}.npz" if cache_key else None
             for spec in specs}
    for spec, path in paths.items():
        if path is not None and path.is_file():
            with np.load(path) as stored:
                found[spec] = CellFeatures(stored["features"], stored["breast"], spec.stride)
    missing = [spec for spec in specs if spec not in found]
    if missing:
        mask = breast_mask(pixels)  # once for every layer: it costs a third of the backbone's pass
        maps = backbone_maps(model, pixels, missing)
        for spec in missing:
            features = maps[spec.layer]
            found[spec] = CellFeatures(features, cell_breast(mask, features.shape[1:], spec.stride), spec.stride)
            if paths[spec] is not None:
                import io

                buffer = io.BytesIO()
                np.savez(buffer, features=features, breast=found[spec].breast)
                paths[spec].parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(paths[spec], buffer.getvalue())
    return [found[spec] for spec in specs]


def backbone_maps(model, pixels: np.ndarray, specs: Sequence[FeatureSpec]) -> dict[str, np.ndarray]:
    """The layers of `specs` (one zoom) of a 0.2 mm image from one backbone pass, as float16 as they are cached."""
    from napari_mammo.models.backbone import feature_maps

    grey = normalise(pixels)
    if specs[0].zoom != 1:
        from skimage.transform import rescale

        zoom = specs[0].zoom
        grey = rescale(grey, zoom, order=1, anti_aliasing=zoom < 1, preserve_range=True)
    maps = feature_maps(model, grey, tuple(spec.layer for spec in specs))
    return {layer: values.astype(np.float16) for layer, values in maps.items()}


def file_key(path: str | Path) -> str:
    """A cache key for an image file: the SHA-256 of its bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cell_breast(mask: np.ndarray, grid: tuple[int, int], stride: float) -> np.ndarray:
    """Which cells of the grid hold at least a quarter of breast tissue (`mask`: the image's `breast_mask`)."""
    from skimage.transform import resize

    mask = np.asarray(mask, np.float32)
    padded = np.zeros((int(np.ceil(grid[0] * stride)), int(np.ceil(grid[1] * stride))), np.float32)
    rows, cols = min(mask.shape[0], padded.shape[0]), min(mask.shape[1], padded.shape[1])
    padded[:rows, :cols] = mask[:rows, :cols]
    return resize(padded, grid, order=1, anti_aliasing=True) >= 0.25


def cell_centres(grid: tuple[int, int], stride: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each cell's centre, in image pixels."""
    rows, cols = np.mgrid[: grid[0], : grid[1]]
    return (rows + 0.5) * stride, (cols + 0.5) * stride


def cell_labels(record: Mammogram, grid: tuple[int, int], stride: float, margin: float | None = None) -> np.ndarray:
    """1 for cells whose centre is within a lesion circle (plus `margin`, default half a cell), else 0."""
    margin = stride / 2 if margin is None else margin
    centre_r, centre_c = cell_centres(grid, stride)
    labels = np.zeros(grid, np.uint8)
    for lesion in record.lesions:
        if lesion.located:
            inside = (centre_r - lesion.row) ** 2 + (centre_c - lesion.col) ** 2 <= (lesion.radius + margin) ** 2
            labels[inside] = 1
    return labels


@dataclass
class CellHead:
    """A logistic head over standardised cell features."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Abnormality probability of each cell of a (C, rows, cols) feature map."""
        flat = features.reshape(features.shape[0], -1).T.astype(np.float32)
        logits = ((flat - self.mean) / self.std) @ self.weight + self.bias
        from scipy.special import expit  # the logistic function without overflow

        return expit(logits).reshape(features.shape[1:])


def fit_cell_head(features: np.ndarray, labels: np.ndarray, weight_decay: float = 1e-2, steps: int = 300,
                  seed: int = 0) -> CellHead:
    """Fit a class-balanced logistic head on (N, C) features and 0/1 labels (full-batch L-BFGS)."""
    import torch

    torch.manual_seed(seed)
    x = features.astype(np.float32)
    mean, std = x.mean(0), x.std(0) + 1e-6
    data = torch.from_numpy((x - mean) / std)
    target = torch.from_numpy(labels.astype(np.float32))
    positive = float(target.mean().clamp(1e-6, 1 - 1e-6))
    weights = torch.where(target > 0, 0.5 / positive, 0.5 / (1 - positive))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(data @ w + b, target, weight=weights)
        loss = loss + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return CellHead(mean, std, w.detach().numpy(), float(b.detach()))


def smooth_scores(scores: np.ndarray) -> np.ndarray:
    """A 3×3 mean of the cell scores (edges by nearest cell)."""
    from scipy import ndimage

    return ndimage.uniform_filter(scores, size=3, mode="nearest")


def image_score(scores: np.ndarray, breast: np.ndarray, top: int = 1) -> float:
    """The image's abnormality score: the mean of its `top` most suspicious breast cells after smoothing."""
    smoothed = smooth_scores(scores)
    values = smoothed[breast] if breast.any() else smoothed.reshape(-1)
    return float(np.sort(values)[-top:].mean())


def peak_centre(weights: np.ndarray, row: int, col: int, stride: float) -> tuple[float, float]:
    """The centre, in image pixels, of cell (row, col)'s 3×3 cells weighted by `weights` (the cell's own centre
    when they sum to 0): a lesion between two cells gets its box between them."""
    r0, c0 = max(row - 1, 0), max(col - 1, 0)
    window = weights[r0:row + 2, c0:col + 2]
    total = float(window.sum())
    if total <= 0:
        return (row + 0.5) * stride, (col + 0.5) * stride
    rows, cols = np.mgrid[r0:r0 + window.shape[0], c0:c0 + window.shape[1]]
    return (float((window * rows).sum()) / total + 0.5) * stride, (float((window * cols).sum()) / total + 0.5) * stride


def cell_boxes(scores: np.ndarray, breast: np.ndarray, stride: float, limit: int = 20, suppress_px: float = 64.0,
               peak_centres: bool = True) -> list[tuple[tuple[float, float, float, float], float]]:
    """Boxes (row_min, col_min, row_max, col_max) in 0.2 mm pixels around the cells' local maxima, best first.

    The cells are ranked by their 3×3 mean (ties by their own score). A cell within
    `suppress_px` pixels (in rows and columns) of a kept one is dropped: non-maximum
    suppression on the grid. A kept cell's box is centred on the centre of its 3×3 cells
    weighted by their means (`peak_centre`), or with `peak_centres` False on the cell's centre.
    """
    suppress = max(1, int(round(suppress_px / stride)))
    inside = np.where(breast, smooth_scores(scores), 0.0)
    smoothed = np.where(breast, inside, -1.0)
    order = np.lexsort((np.ravel(scores), np.ravel(smoothed)))[::-1]
    kept: list[tuple[int, int]] = []
    boxes = []
    for flat in order:
        r, c = np.unravel_index(int(flat), smoothed.shape)
        if smoothed[r, c] < 0 or len(kept) >= limit:
            break
        if any(abs(r - kr) <= suppress and abs(c - kc) <= suppress for kr, kc in kept):
            continue
        kept.append((int(r), int(c)))
        centre_r, centre_c = (peak_centre(inside, int(r), int(c), stride) if peak_centres
                              else ((r + 0.5) * stride, (c + 0.5) * stride))
        boxes.append(((centre_r - BOX_HALF, centre_c - BOX_HALF, centre_r + BOX_HALF, centre_c + BOX_HALF),
                      float(smoothed[r, c])))
    return boxes


def box_detections(boxes: Sequence[tuple[tuple[float, float, float, float], float]], min_score: float = 0.0):
    """`cell_boxes`-style (box, score) pairs scoring at least `min_score`, as lesion Detections (IDBLL's format)."""
    from napari_mammo.models.idbll.predict import Detection

    return [Detection(box, "lesion", score) for box, score in boxes if score >= min_score]


def breast_embedding(cells: CellFeatures) -> np.ndarray:
    """One vector per image: the mean of its breast cells' features."""
    flat = cells.features.reshape(cells.features.shape[0], -1).astype(np.float32)
    chosen = cells.breast.reshape(-1)
    return flat[:, chosen].mean(1) if chosen.any() else flat.mean(1)


def other_film(record: Mammogram, by_ref: dict[str, Mammogram]) -> Mammogram | None:
    """The woman's other film in MIAS numbering (odd with the next even number), when present."""
    partner = partner_of(record.ref)
    return by_ref.get(partner) if partner else None


def training_cells(records: Sequence[Mammogram], cells: dict[str, CellFeatures], rng: np.random.Generator,
                   negatives_per_image: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, abnormal labels and malignant labels of the training cells (normal cells subsampled)."""
    xs, abnormal, malignant = [], [], []
    for record in records:
        if record.label != "normal" and not any(lesion.located for lesion in record.lesions):
            continue  # an unlocated finding: its cells cannot be labelled
        found = cells[record.ref]
        labels = cell_labels(record, found.breast.shape, found.stride)
        flat = found.features.reshape(found.features.shape[0], -1).T
        positive = np.flatnonzero(labels.reshape(-1))
        negative = np.flatnonzero(found.breast.reshape(-1) & (labels.reshape(-1) == 0))
        negative = rng.choice(negative, min(len(negative), negatives_per_image), replace=False)
        chosen = np.r_[positive, negative]
        xs.append(flat[chosen])
        abnormal.append(np.r_[np.ones(len(positive)), np.zeros(len(negative))])
        malignant.append(np.full(len(chosen), record.label == "malignant"))
    return np.concatenate(xs), np.concatenate(abnormal), np.concatenate(malignant)


def embedding_difference(found: CellFeatures, partner: CellFeatures | None) -> np.ndarray:
    """A film's mean breast features minus its partner's (zeros without a partner)."""
    own = breast_embedding(found)
    return own - breast_embedding(partner) if partner is not None else np.zeros_like(own)


def spread(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of scores on the training images, for standardising."""
    return float(np.mean(values)), float(np.std(values) + 1e-9)


def fuse(scores: dict, standardise: dict[str, tuple[float, float]]):
    """The sum of the scores, each standardised by its spread on the training images."""
    return sum((scores[key] - mean) / sd for key, (mean, sd) in standardise.items())


FUSED = ("cells", "contralateral", "asymmetry")
"""The scores the both-films verdict sums, each standardised."""
TUNED_ASYMMETRY = "tuned_asymmetry"
"""The tuned cell map's asymmetry: summed into the both-films verdict too when the model has a tuned map (and
no verdict map)."""
VERDICT_ASYMMETRY = "verdict_map_asymmetry"
"""The verdict map's asymmetry (`ScreeningConfig.verdict_map`): summed into the both-films verdict instead."""
TUNED_SCORES = (TUNED_ASYMMETRY, VERDICT_ASYMMETRY)
"""The tuned maps' scores a verdict may sum, each from its own map."""
FINE_ASYMMETRY = "fine_asymmetry"
"""The fine cell head's asymmetry (`ScreeningConfig.fine_asymmetry`): summed into the both-films verdict too."""


def film_asymmetry(scores: np.ndarray, found: CellFeatures, partner_scores: np.ndarray | None,
                   partner: CellFeatures | None, top: int = 1) -> float:
    """A film's image score from its cell scores minus its other film's (0 without the other film)."""
    if partner is None or partner_scores is None:
        return 0.0
    return image_score(scores, found.breast, top) - image_score(partner_scores, partner.breast, top)


@dataclass
class ScreeningHeads:
    """The fitted heads of a screening model, and the spreads its fused score is standardised by."""

    cells: CellHead
    severity: CellHead
    contralateral: CellHead
    standardise: dict[str, tuple[float, float]]
    top_cells: int = 1
    fine: CellHead | None = None
    """The cell head on stage-4 features whose asymmetry the verdict sums (`FINE_ASYMMETRY`), when fitted."""

    def film_scores(self, found: CellFeatures, partner: CellFeatures | None,
                    tuned: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None,
                    fine: tuple[CellFeatures, CellFeatures | None] | None = None
                    ) -> tuple[dict[str, float], np.ndarray]:
        """A film's cell, left-minus-right and asymmetry scores (the last two 0-based without a partner), the
        tuned maps' asymmetries (`tuned`: score name -> this film's map and its partner's), the fine head's
        asymmetry (`fine`: this film's stage-4 cells and its partner's), and its map of cell scores."""
        scores = self.cells.scores(found.features)
        cell = image_score(scores, found.breast, self.top_cells)
        difference = embedding_difference(found, partner)
        contra = float(self.contralateral.scores(difference[:, None, None])[0, 0])
        partner_scores = self.cells.scores(partner.features) if partner is not None else None
        values = {"cells": cell, "contralateral": contra,
                  "asymmetry": film_asymmetry(scores, found, partner_scores, partner, self.top_cells)}
        for key, (own, other) in (tuned or {}).items():
            values[key] = film_asymmetry(own, found, other, partner, self.top_cells)
        if self.fine is not None and fine is not None:
            own_cells, other_cells = fine
            other_scores = self.fine.scores(other_cells.features) if other_cells is not None else None
            values[FINE_ASYMMETRY] = film_asymmetry(self.fine.scores(own_cells.features), own_cells, other_scores,
                                                    other_cells, self.top_cells)
        return values, scores

    def malignancy(self, found: CellFeatures, scores: np.ndarray, severity: np.ndarray | None = None) -> float:
        """p(malignant) of a film: the severity head's mean over its five most suspicious breast cells."""
        severity = self.severity.scores(found.features) if severity is None else severity
        top = np.argsort(np.where(found.breast, scores, -1).reshape(-1))[-5:]
        return float(severity.reshape(-1)[top].mean())


def fit_heads(records: Sequence[Mammogram], cells: dict[str, CellFeatures], by_ref: dict[str, Mammogram],
              config: ScreeningConfig, seed: int = 0, fine: dict[str, CellFeatures] | None = None) -> ScreeningHeads:
    """Fit the cell, severity and left-minus-right heads on `records` (and with `config.fine_asymmetry` the fine
    cell head on their stage-4 cells, `fine`), and the spreads of their scores."""
    if config.fine_asymmetry and fine is None:
        raise ValueError("the fine cell head is fitted on stage-4 features; load them (load_screening_features) "
                         "or set fine_asymmetry False")
    rng = np.random.default_rng(seed)
    x, abnormal, malignant = training_cells(records, cells, rng, config.negatives_per_image)
    lesion = abnormal > 0

    def partner_cells(record: Mammogram) -> CellFeatures | None:
        partner = other_film(record, by_ref)
        return cells[partner.ref] if partner is not None else None

    differences = np.array([embedding_difference(cells[r.ref], partner_cells(r)) for r in records])
    truth = np.array([r.label != "normal" for r in records], float)
    heads = ScreeningHeads(
        cells=fit_cell_head(x, abnormal, weight_decay=config.weight_decay, seed=seed),
        severity=fit_cell_head(x[lesion], malignant[lesion], weight_decay=config.weight_decay, seed=seed),
        contralateral=fit_cell_head(differences, truth, weight_decay=config.contralateral_weight_decay, seed=seed),
        standardise={}, top_cells=config.top_cells)
    if config.fine_asymmetry:
        x_fine, lesion_fine, _ = training_cells(records, fine, np.random.default_rng(seed), config.negatives_per_image)
        heads.fine = fit_cell_head(x_fine, lesion_fine, weight_decay=config.weight_decay, seed=seed)

    def fine_pair(record: Mammogram) -> tuple[CellFeatures, CellFeatures | None] | None:
        partner = other_film(record, by_ref)
        return (fine[record.ref], fine[partner.ref] if partner is not None else None) if fine else None

    per_film = [heads.film_scores(cells[r.ref], partner_cells(r), fine=fine_pair(r))[0] for r in records]
    keys = (*FUSED, FINE_ASYMMETRY) if heads.fine is not None else FUSED
    heads.standardise = {key: spread(np.array([values[key] for values in per_film])) for key in keys}
    return heads


def add_tuned_asymmetry(heads: ScreeningHeads, records: Sequence[Mammogram], cells: dict[str, CellFeatures],
                        maps: dict[str, np.ndarray], by_ref: dict[str, Mammogram], key: str = TUNED_ASYMMETRY) -> None:
    """Sum a tuned map's asymmetry (as score `key`) into the heads' verdict, standardised by its spread on
    `records`."""
    values = []
    for record in records:
        partner = other_film(record, by_ref)
        values.append(film_asymmetry(maps[record.ref], cells[record.ref], maps[partner.ref] if partner else None,
                                     cells[partner.ref] if partner else None, heads.top_cells))
    heads.standardise[key] = spread(np.array(values))
