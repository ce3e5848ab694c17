"""Cross-validation by woman of the screening model on the pretrained backbone.

Folds keep both films of a woman together and are stratified by her worst finding.
Everything that is fitted (the cell heads, the contralateral head, feature scaling) is
fitted on the training folds only; nothing is tuned on the held-out fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from napari_mammo.data.splits import group_by_woman, woman_label
from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.models.screening import (
    TUNED_ASYMMETRY,
    VERDICT_ASYMMETRY,
    CellFeatures,
    FeatureSpec,
    ScreeningConfig,
    ScreeningHeads,
    add_tuned_asymmetry,
    box_detections,
    cell_boxes,
    fit_heads,
    fuse,
    other_film,
)
from napari_mammo.records import CLASS_NAMES, Mammogram


def woman_folds(records: Sequence[Mammogram], folds: int, seed: int) -> list[list[Mammogram]]:
    """`folds` parts of near-equal numbers of women, stratified by worst finding, both films of a woman together.

    Within each stratum the women are shuffled and dealt to the folds in turn, the deal
    going on where the previous stratum stopped, so no fold is left empty while women remain.
    """
    women = group_by_woman(records)
    if not 2 <= folds <= len(women):
        raise ValueError(f"{len(women)} women cannot be dealt into {folds} folds by woman (2 to {len(women)})")
    rng = np.random.default_rng(seed)
    parts: list[list[Mammogram]] = [[] for _ in range(folds)]
    turn = 0
    for label in CLASS_NAMES:
        stratum = sorted(w for w in women if woman_label(women[w]) == label)
        for index in rng.permutation(len(stratum)):
            parts[turn % folds].extend(women[stratum[index]])
            turn += 1
    return [sorted(part, key=lambda r: r.ref) for part in parts]


@dataclass
class FoldResult:
    """The held-out images of one fold: their scores per variant and their boxes.

    The variants: the most suspicious cell ("cells"); the left-minus-right head on the breasts'
    mean features ("contralateral"); the cell score minus the other film's ("asymmetry"); with a
    tuned cell map, its score minus the other film's ("tuned_asymmetry"), and with a verdict map
    that map's ("verdict_map_asymmetry"); with the fine cell head on stage-4 features, its
    asymmetry ("fine_asymmetry"); the standardised sum the verdict uses ("fused"); with
    two maps, the sum with both maps' asymmetries ("fused_both_maps").
    """

    records: list[Mammogram]
    scores: dict[str, np.ndarray]
    malignancy: np.ndarray
    detections: list[list[Detection]]


def run_fold(train: Sequence[Mammogram], test: Sequence[Mammogram], cells: dict[str, CellFeatures],
             by_ref: dict[str, Mammogram], seed: int, config: ScreeningConfig,
             stage4: dict[str, CellFeatures] | None = None) -> FoldResult:
    """Fit on `train`, score `test`: cell scores, image scores per variant, malignancy, boxes.

    With `stage4` features (and `config.tune_epochs`), the tuned cell map is fine-tuned on
    `train` too: the boxes are its local maxima and its asymmetry joins the fused score;
    else the boxes are the cell head's. With `config.two_maps` a second map, fitted on the
    films alone, gives the fused score its asymmetry instead (or beside it, with
    `config.verdict_both_maps`), and the variant "fused_both_maps" sums both maps' asymmetries.
    With `config.fine_asymmetry` the fine cell head is fitted on the `stage4` cells and its
    asymmetry joins the fused score.
    """
    heads = fit_heads(train, cells, by_ref, config, seed, stage4)
    maps, summed, both_maps = tuned_fold_maps(train, cells, stage4, by_ref, config, seed, heads)
    per_film, malignancy, detections = [], [], []
    for record in test:
        found = cells[record.ref]
        partner = other_film(record, by_ref)
        tuned = {key: (found_maps[record.ref], found_maps[partner.ref] if partner is not None else None)
                 for key, found_maps in summed.items()}
        fine = (stage4[record.ref], stage4[partner.ref] if partner is not None else None) if stage4 else None
        values, scores = heads.film_scores(found, cells[partner.ref] if partner is not None else None, tuned, fine)
        values["fused"] = fuse(values, heads.standardise)
        if both_maps is not None:
            values["fused_both_maps"] = fuse(values, both_maps)
        per_film.append(values)
        malignancy.append(heads.malignancy(found, scores))
        boxes = cell_boxes(scores if maps is None else maps[record.ref], found.breast, found.stride)
        detections.append(box_detections(boxes))
    return FoldResult(list(test), {v: np.array([values[v] for values in per_film]) for v in per_film[0]},
                      np.array(malignancy), detections)


def tuned_fold_maps(train: Sequence[Mammogram], cells: dict[str, CellFeatures],
                    stage4: dict[str, CellFeatures] | None, by_ref: dict[str, Mammogram], config: ScreeningConfig,
                    seed: int, heads: ScreeningHeads) -> tuple[dict | None, dict[str, dict], dict | None]:
    """A fold's tuned maps, fitted on `train` and summed into `heads`: the boxes' map (None without one; with
    `config.box_mirrors` read on each film and its mirror image), the maps whose asymmetries are scored (score
    name -> map of every film), and with two maps the spreads that sum both asymmetries (else None)."""
    from napari_mammo.models.tuned_cells import fine_tune_cells, maps_both_ways, tuned_maps

    if stage4 is None or config.tuned is None:
        return None, {}, None
    net = fine_tune_cells(train, stage4, cells, config, seed)
    maps = tuned_maps(net, stage4)
    summed = {TUNED_ASYMMETRY: maps}  # the film's own reading, as the screener's asymmetries are
    if config.box_mirrors:
        maps = maps_both_ways(net, stage4, maps)
    if config.two_maps:
        films = fine_tune_cells(train, stage4, cells, config.verdict_fit, seed)
        summed[VERDICT_ASYMMETRY] = tuned_maps(films, stage4)
    for key, found in summed.items():
        add_tuned_asymmetry(heads, train, cells, found, by_ref, key)
    both_maps = None
    if config.two_maps:
        both_maps = dict(heads.standardise)
        if not config.verdict_both_maps:
            del heads.standardise[TUNED_ASYMMETRY]  # the verdict sums the films-alone map's asymmetry alone
    return maps, summed, both_maps


def bootstrap_auc(truth: np.ndarray, scores: np.ndarray, women: np.ndarray, rng: np.random.Generator,
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
    return {**{f"auc_{v}": roc_auc(truth, scores) for v, scores in result.scores.items()},
            "auc_benign_vs_malignant": roc_auc(is_malignant[abnormal], result.malignancy[abnormal]),
            **{f"sensitivity_at_{fp}_fp": sensitivity_at(curve, fp) for fp in (0.5, 1, 2)}}


def out_of_fold(records: Sequence[Mammogram], cells: dict[str, CellFeatures], folds: int, seed: int,
                config: ScreeningConfig, done: Callable[[int], None] | None = None,
                stage4: dict[str, CellFeatures] | None = None) -> list[FoldResult]:
    """Each fold's held-out results, the models fitted on the other folds."""
    by_ref = {r.ref: r for r in records}
    parts = woman_folds(records, folds, seed)
    results = []
    for k, test in enumerate(parts):
        train = [r for i, part in enumerate(parts) if i != k for r in part]
        results.append(run_fold(train, test, cells, by_ref, seed * 100 + k, config, stage4))
        if done:
            done(k)
    return results


def fold_results(records: Sequence[Mammogram], cells: dict[str, CellFeatures], folds: int, seeds: Sequence[int],
                 config: ScreeningConfig, progress: Progress | None = None,
                 stage4: dict[str, CellFeatures] | None = None) -> list[list[FoldResult]]:
    """Each seed's held-out fold results (`out_of_fold`), reporting progress fold by fold."""
    total, done = folds * len(seeds), 0

    def counted(_k: int) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(progress_event("folds", done, total))

    return [out_of_fold(records, cells, folds, seed, config, counted, stage4) for seed in seeds]


def summarise(records: Sequence[Mammogram], by_seed: list[list[FoldResult]], seeds: Sequence[int],
              config: ScreeningConfig) -> dict:
    """Per-fold figures, mean ± sd over all folds, and each seed's pooled AUC with a 95 % interval."""
    per_fold = [{"seed": seed, "fold": k, "images": len(result.records), **_fold_metrics(result)}
                for seed, results in zip(seeds, by_seed, strict=True) for k, result in enumerate(results)]
    pooled = [_pooled(results, np.random.default_rng(seed)) for seed, results in zip(seeds, by_seed, strict=True)]
    keys = [key for key in per_fold[0] if key not in ("seed", "fold", "images")]
    summary = {key: mean_sd([f[key] for f in per_fold]) for key in keys}
    return {"config": asdict(config), "images": len(records), "women": len({r.woman for r in records}),
            "folds": len(by_seed[0]),
            "seeds": list(seeds), "summary": summary, "pooled": pooled, "per_fold": per_fold}


def mean_sd(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample standard deviation over the folds where a figure exists (NaN where none or one does)."""
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], float)
    return {"mean": float(finite.mean()) if len(finite) else float("nan"),
            "sd": float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")}


def cross_validate(records: Sequence[Mammogram], cells: dict[str, CellFeatures], folds: int = 5,
                   seeds: Sequence[int] = (0,), config: ScreeningConfig | None = None,
                   progress: Progress | None = None, stage4: dict[str, CellFeatures] | None = None) -> dict:
    """Cross-validate by woman over each seed; per-fold figures, mean ± sd, pooled AUC with a 95 % interval
    (the boxes from the tuned cell map when `stage4` features are given, see `run_fold`)."""
    config = config or ScreeningConfig()
    return summarise(records, fold_results(records, cells, folds, seeds, config, progress, stage4), seeds, config)


def _pooled(results: list[FoldResult], rng: np.random.Generator) -> dict:
    """The held-out predictions of all folds of one seed together: AUC with its interval, FROC points."""
    records = [r for result in results for r in result.records]
    truth = np.array([r.label != "normal" for r in records])
    women = np.array([r.woman for r in records])
    out = {}
    for variant in results[0].scores:
        scores = np.concatenate([result.scores[variant] for result in results])
        out[f"auc_{variant}"] = roc_auc(truth, scores)
        out[f"auc_{variant}_95ci"] = bootstrap_auc(truth, scores, women, rng)
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
        variants = [key[4:] for key in pooled if key.startswith("auc_") and not key.endswith("_95ci")]
        sensitivity = (f"; sensitivity at 1 FP/image {pooled['sensitivity_at_1_fp']:.3f}"
                       if "sensitivity_at_1_fp" in pooled else "")
        lines.append(f"pooled, seed {seed}: " + ", ".join(
            f"{v} AUC {pooled[f'auc_{v}']:.3f} [{pooled[f'auc_{v}_95ci'][0]:.3f}, {pooled[f'auc_{v}_95ci'][1]:.3f}]"
            for v in variants) + sensitivity)
    return "\n".join(lines)


def load_cells(records: Sequence[Mammogram], progress: Progress | None = None,
               spec: FeatureSpec | None = None) -> dict[str, CellFeatures]:
    """Backbone features of every record's image at 0.2 mm, cached on disk by file hash."""
    return load_feature_sets(records, (spec or FeatureSpec(),), progress)[0]


def load_feature_sets(records: Sequence[Mammogram], specs: Sequence[FeatureSpec],
                      progress: Progress | None = None, mirrors: bool = False) -> list[dict[str, CellFeatures]]:
    """Several layers' features of every record's image (one backbone pass per image), cached by file hash; with
    `mirrors`, also of each image's mirror image (`tuned_cells.mirror_pixels`), under `mirror_ref(ref)`."""
    from napari_mammo.data.preprocess import to_mias_scale
    from napari_mammo.io.images import read_image
    from napari_mammo.models.backbone import load_backbone
    from napari_mammo.models.screening import cell_feature_set, file_key
    from napari_mammo.models.tuned_cells import mirror_pixels, mirror_ref

    model = None
    sets: list[dict[str, CellFeatures]] = [{} for _ in specs]
    for index, record in enumerate(records):
        image = read_image(record.path)
        pixels, _ = to_mias_scale(image.pixels, image.spacing_mm)
        key = f"{file_key(record.path)}-{pixels.shape[0]}x{pixels.shape[1]}"
        if model is None:
            model = load_backbone(specs[0].backbone)
        for found, features in zip(sets, cell_feature_set(model, pixels, key, specs), strict=True):
            found[record.ref] = features
        if mirrors:
            mirrored = mirror_pixels(pixels, int(round(specs[0].stride)))
            for found, features in zip(sets, cell_feature_set(model, mirrored, f"{key}-mirror", specs), strict=True):
                found[mirror_ref(record.ref)] = features
        if progress:
            progress(progress_event("backbone features", index + 1, len(records)))
    return sets


def load_screening_features(records: Sequence[Mammogram], config: ScreeningConfig, progress: Progress | None = None
                            ) -> tuple[dict[str, CellFeatures], dict[str, CellFeatures] | None]:
    """The features a screening model reads: its cells' layer, and stage 4 when it fine-tunes the tuned cell map
    (with `config.tune_mirrors` or `config.box_mirrors`, of the mirror images too) or fits the fine cell head."""
    tuned = config.tuned
    stage4 = tuned or config.fine
    sets = load_feature_sets(records, (config.features, stage4) if stage4 else (config.features,), progress,
                             mirrors=bool(tuned) and (config.tune_mirrors or config.box_mirrors))
    return sets[0], sets[1] if stage4 else None
