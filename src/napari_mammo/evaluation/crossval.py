"""Cross-validation by woman of the screening model on the pretrained backbone.

Folds keep both films of a woman together and are stratified by her worst finding.
Everything that is fitted (the cell heads, the contralateral head, feature scaling) is
fitted on the training folds only; nothing is tuned on the held-out fold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_mammo.data.splits import woman_label
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.models.screening import (
    CellFeatures,
    FeatureSpec,
    ScreeningConfig,
    breast_embedding,
    cell_boxes,
    cell_labels,
    fit_cell_head,
    image_score,
)
from napari_mammo.records import CLASS_NAMES, Mammogram

VARIANTS = ("cells", "contralateral", "asymmetry", "fused")
"""Image scores compared: the most suspicious cell; the left-minus-right head on the breasts' mean
features; the cell score minus the other film's; and the standardised sum of those three."""


def woman_folds(records: Sequence[Mammogram], folds: int, seed: int) -> list[list[Mammogram]]:
    """`folds` parts of near-equal numbers of women, stratified by worst finding, both films of a woman together.

    Within each stratum the women are shuffled and dealt to the folds in turn, the deal
    going on where the previous stratum stopped, so no fold is left empty while women remain.
    """
    women: dict[str, list[Mammogram]] = defaultdict(list)
    for record in records:
        women[record.woman].append(record)
    rng = np.random.default_rng(seed)
    parts: list[list[Mammogram]] = [[] for _ in range(folds)]
    turn = 0
    for label in CLASS_NAMES:
        stratum = sorted(w for w in women if woman_label(women[w]) == label)
        for index in rng.permutation(len(stratum)):
            parts[turn % folds].extend(women[stratum[index]])
            turn += 1
    return [sorted(part, key=lambda r: r.ref) for part in parts]


def other_film(record: Mammogram, by_ref: dict[str, Mammogram]) -> Mammogram | None:
    """The woman's other film in MIAS numbering (odd with the next even number), when present."""
    number = int(record.ref[3:])
    partner = f"mdb{number + 1 if number % 2 else number - 1:03d}"
    return by_ref.get(partner)


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


def contralateral_inputs(records: Sequence[Mammogram], embeddings: dict[str, np.ndarray],
                          by_ref: dict[str, Mammogram]) -> np.ndarray:
    """Each film's embedding minus its partner's (zeros where the partner is missing)."""
    rows = []
    for record in records:
        partner = other_film(record, by_ref)
        own = embeddings[record.ref]
        rows.append(own - embeddings[partner.ref] if partner is not None else np.zeros_like(own))
    return np.array(rows)


@dataclass
class FoldResult:
    """The held-out images of one fold: their scores per variant and their boxes."""

    records: list[Mammogram]
    scores: dict[str, np.ndarray]
    malignancy: np.ndarray
    detections: list[list[Detection]]


def run_fold(train: Sequence[Mammogram], test: Sequence[Mammogram], cells: dict[str, CellFeatures],
             by_ref: dict[str, Mammogram], seed: int, config: ScreeningConfig) -> FoldResult:
    """Fit on `train`, score `test`: cell scores, image scores per variant, malignancy, boxes."""
    rng = np.random.default_rng(seed)
    x, abnormal, malignant = training_cells(train, cells, rng, config.negatives_per_image)
    head = fit_cell_head(x, abnormal, weight_decay=config.weight_decay, seed=seed)
    lesion_cells = abnormal > 0
    severity = fit_cell_head(x[lesion_cells], malignant[lesion_cells], weight_decay=config.weight_decay, seed=seed)
    embeddings = {ref: breast_embedding(found) for ref, found in cells.items()}
    train_truth = np.array([r.label != "normal" for r in train], float)
    contra = fit_cell_head(contralateral_inputs(train, embeddings, by_ref), train_truth,
                           weight_decay=config.contralateral_weight_decay, seed=seed)
    cell_scores, malignancy, detections = [], [], []
    for record in test:
        found = cells[record.ref]
        scores = head.scores(found.features)
        cell_scores.append(image_score(scores, found.breast, config.top_cells))
        top = np.argsort(np.where(found.breast, scores, -1).reshape(-1))[-5:]
        malignancy.append(float(severity.scores(found.features).reshape(-1)[top].mean()))
        boxes = cell_boxes(scores, found.breast, found.stride)
        detections.append([Detection(box, "lesion", score) for box, score in boxes])
    contra_scores = contra.scores(contralateral_inputs(test, embeddings, by_ref).T[:, :, None])[:, 0]
    cell_scores = np.array(cell_scores)

    def cell_score(ref: str) -> float:
        return image_score(head.scores(cells[ref].features), cells[ref].breast, config.top_cells)

    train_cells = np.array([cell_score(r.ref) for r in train])
    train_contra = contra.scores(contralateral_inputs(train, embeddings, by_ref).T[:, :, None])[:, 0]
    asymmetry = np.array([asymmetry_score(r, cell_scores[i], by_ref, cell_score) for i, r in enumerate(test)])
    train_asymmetry = np.array([asymmetry_score(r, train_cells[i], by_ref, cell_score) for i, r in enumerate(train)])
    standardise = {"cells": spread(train_cells), "contralateral": spread(train_contra),
                   "asymmetry": spread(train_asymmetry)}
    fused = fuse({"cells": cell_scores, "contralateral": contra_scores, "asymmetry": asymmetry}, standardise)
    return FoldResult(list(test), {"cells": cell_scores, "contralateral": contra_scores, "asymmetry": asymmetry,
                                   "fused": fused}, np.array(malignancy), detections)


def asymmetry_score(record: Mammogram, own: float, by_ref: dict[str, Mammogram], cell_score) -> float:
    """The film's cell score minus its partner's (0 without a partner): a lesion is one-sided."""
    partner = other_film(record, by_ref)
    return own - cell_score(partner.ref) if partner is not None else 0.0


def spread(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of scores on the training images, for standardising."""
    return float(np.mean(values)), float(np.std(values) + 1e-9)


def fuse(scores: dict[str, np.ndarray], standardise: dict[str, tuple[float, float]]):
    """The sum of the scores, each standardised by its spread on the training images."""
    return sum((scores[key] - mean) / sd for key, (mean, sd) in standardise.items())


def _bootstrap_auc(truth: np.ndarray, scores: np.ndarray, women: np.ndarray, rng: np.random.Generator,
                   rounds: int = 1000) -> tuple[float, float]:
    """A 95 % interval of the ROC AUC, resampling women (both films together)."""
    unique = np.unique(women)
    index = {w: np.flatnonzero(women == w) for w in unique}
    values = []
    for _ in range(rounds):
        chosen = np.concatenate([index[w] for w in rng.choice(unique, len(unique))])
        auc = roc_auc(truth[chosen], scores[chosen])
        if not np.isnan(auc):
            values.append(auc)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def _fold_metrics(result: FoldResult) -> dict:
    """Image AUC per variant, benign-vs-malignant AUC and lesion sensitivity of one fold."""
    truth = np.array([r.label != "normal" for r in result.records])
    abnormal = truth.astype(bool)
    is_malignant = np.array([r.label == "malignant" for r in result.records])
    curve = froc(list(zip(result.detections, result.records, strict=True)))
    return {**{f"auc_{v}": roc_auc(truth, result.scores[v]) for v in VARIANTS},
            "auc_benign_vs_malignant": roc_auc(is_malignant[abnormal], result.malignancy[abnormal]),
            **{f"sensitivity_at_{fp}_fp": sensitivity_at(curve, fp) for fp in (0.5, 1, 2)}}


def out_of_fold(records: Sequence[Mammogram], cells: dict[str, CellFeatures], folds: int, seed: int,
                config: ScreeningConfig, done: Callable[[int], None] | None = None) -> list[FoldResult]:
    """Each fold's held-out results, the models fitted on the other folds."""
    by_ref = {r.ref: r for r in records}
    parts = woman_folds(records, folds, seed)
    results = []
    for k, test in enumerate(parts):
        train = [r for i, part in enumerate(parts) if i != k for r in part]
        results.append(run_fold(train, test, cells, by_ref, seed * 100 + k, config))
        if done:
            done(k)
    return results


def cross_validate(records: Sequence[Mammogram], cells: dict[str, CellFeatures], folds: int = 5,
                   seeds: Sequence[int] = (0,), config: ScreeningConfig | None = None,
                   progress: Callable[[int, int], None] | None = None) -> dict:
    """Cross-validate by woman over each seed; per-fold figures, mean ± sd, pooled AUC with a 95 % interval."""
    config = config or ScreeningConfig()
    per_fold, pooled = [], []
    total, done = folds * len(seeds), 0
    for seed in seeds:
        def counted(_k: int) -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, total)

        results = out_of_fold(records, cells, folds, seed, config, counted)
        per_fold += [{"seed": seed, "fold": k, "images": len(result.records), **_fold_metrics(result)}
                     for k, result in enumerate(results)]
        pooled.append(_pooled(results, np.random.default_rng(seed)))
    keys = [key for key in per_fold[0] if key not in ("seed", "fold", "images")]
    summary = {key: {"mean": float(np.nanmean([f[key] for f in per_fold])),
                     "sd": float(np.nanstd([f[key] for f in per_fold], ddof=1))} for key in keys}
    return {"config": asdict(config), "images": len(records), "women": len({r.woman for r in records}),
            "folds": folds,
            "seeds": list(seeds), "summary": summary, "pooled": pooled, "per_fold": per_fold}


def _pooled(results: list[FoldResult], rng: np.random.Generator) -> dict:
    """The held-out predictions of all folds of one seed together: AUC with its interval, FROC points."""
    records = [r for result in results for r in result.records]
    truth = np.array([r.label != "normal" for r in records])
    women = np.array([r.woman for r in records])
    out = {}
    for variant in VARIANTS:
        scores = np.concatenate([result.scores[variant] for result in results])
        out[f"auc_{variant}"] = roc_auc(truth, scores)
        out[f"auc_{variant}_95ci"] = _bootstrap_auc(truth, scores, women, rng)
    curve = froc([(d, r) for result in results for d, r in zip(result.detections, result.records, strict=True)])
    out.update({f"sensitivity_at_{fp}_fp": sensitivity_at(curve, fp) for fp in (0.5, 1, 2)})
    return out


def format_crossval(report: dict) -> str:
    """The summary as a small table: mean ± sd over folds and the pooled AUC with its interval."""
    lines = [f"{report['images']} images, {report['women']} women, {report['folds']} folds by woman, "
             f"seeds {report['seeds']}", f"{'figure':32s} {'mean ± sd over folds':>22s}"]
    for key, value in report["summary"].items():
        lines.append(f"{key:32s} {value['mean']:>12.3f} ± {value['sd']:.3f}")
    for seed, pooled in zip(report["seeds"], report["pooled"], strict=True):
        lines.append(f"pooled, seed {seed}: " + ", ".join(
            f"{v} AUC {pooled[f'auc_{v}']:.3f} [{pooled[f'auc_{v}_95ci'][0]:.3f}, {pooled[f'auc_{v}_95ci'][1]:.3f}]"
            for v in VARIANTS) + f"; sensitivity at 1 FP/image {pooled['sensitivity_at_1_fp']:.3f}")
    return "\n".join(lines)


def load_cells(records: Sequence[Mammogram], progress: Callable[[int, int], None] | None = None,
               spec: FeatureSpec | None = None) -> dict[str, CellFeatures]:
    """Backbone features of every record's image at 0.2 mm, cached on disk by file hash."""
    spec = spec or FeatureSpec()
    from napari_mammo.data.preprocess import to_mias_scale
    from napari_mammo.io.images import read_image
    from napari_mammo.models.backbone import load_backbone
    from napari_mammo.models.screening import cell_features, file_key

    model = None
    cells = {}
    for index, record in enumerate(records):
        image = read_image(record.path)
        pixels, _ = to_mias_scale(image.pixels, image.spacing_mm)
        key = f"{file_key(record.path)}-{pixels.shape[0]}x{pixels.shape[1]}"
        if model is None:
            model = load_backbone()
        cells[record.ref] = cell_features(model, pixels, key, spec)
        if progress:
            progress(index + 1, len(records))
    return cells
