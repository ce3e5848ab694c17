"""Score ways of summing tuned maps into the verdict, from the maps `two_maps_experiment.py --save-maps` kept.

    python tools/verdict_sums_experiment.py --data "$NAPARI_MAMMO_MIAS" --maps runs/maps [--out runs/sums.json]
        [--baseline films]

Each fold's file holds every fitted map of every film and the frozen heads' scores, so no
map is fitted here. A variant is the frozen heads' fused score plus the standardised
asymmetries of one or more maps ("films & mirrors x2"), each standardised by its spread on
the fold's training films, as the shipped verdict is; "@3" reads each map's image score as
its top 3 cells instead of the top one; "films x2 + mirrors x2" (a plus) is the asymmetry of
the two maps averaged; "films & films own" sums a map's own image score (its most suspicious
cell, no other film needed) instead of its asymmetry. It also scores each map's boxes and
the averaged maps' boxes (lesion sensitivity at 1 false positive per image), and the boxes
of `--boxes` rescored by the film's verdict ("mirrors x2 ^ films w": a box's logit plus w
times the held-out film's verdict under "films"), so that boxes in films the verdict calls
normal rank lower (boxes at cell centres throughout; `box_search_experiment.py` compares box
searches and test-time mirrors). It prints mean ± sd over the folds, and each variant's
paired difference from `--baseline` with the folds it wins, ties and loses; with
`--by-finding`, the baseline's AUC of each kind of finding (its first lesion's) against the normal
films, per seed, on its ranks within each held-out fold.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from flipped_tuned_experiment import cell_centred_boxes  # tools/ is the script's folder
from two_maps_experiment import asymmetries

from napari_mammo.evaluation.crossval import load_cells, mean_sd
from napari_mammo.evaluation.detector import froc, sensitivity_at
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import FUSED, box_detections, image_score, spread

TTA = "tta"
"""Suffix of a map read on the film and on its mirror image (mirrored back), averaged: test-time mirrors."""


def read_fold(path: Path) -> tuple[dict, dict, dict, list[str], list[str]]:
    """A saved fold: maps (name -> ref -> map), frozen scores (name -> ref -> value), their spreads, its split."""
    maps: dict[str, dict[str, np.ndarray]] = {}
    scores: dict[str, dict[str, float]] = {}
    with np.load(path) as stored:
        for key in stored.files:
            kind, _, rest = key.partition("/")
            name, _, ref = rest.rpartition("/")
            if kind == "score":
                scores.setdefault(name, {})[ref] = float(stored[key])
            elif kind in ("map", "mirror"):  # a mirror image's reading: "NAME tta", the held-out films only
                maps.setdefault(name if kind == "map" else f"{name} {TTA}", {})[ref] = stored[key].astype(np.float32)
        frozen = json.loads(str(stored["frozen"]))
        train, test = list(stored["train"]), list(stored["test"])
    for name in [n for n in maps if n.endswith(TTA)]:  # the film's reading and its mirror image's, averaged
        plain = maps[name.removesuffix(f" {TTA}")]
        maps[name] = {ref: (plain[ref] + mirror) / 2 for ref, mirror in maps[name].items()}
    return maps, scores, frozen, train, test


def fold_seed(path: Path) -> int:
    """The seed a saved fold's heads were fitted with (`seed{S}-fold{K}`: S × 100 + K, as `out_of_fold` seeds)."""
    seed, fold = path.stem.split("-")
    return int(seed.removeprefix("seed")) * 100 + int(fold.removeprefix("fold"))


def standardised(test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Held-out scores standardised by their spread on the training films (`spread`), as the verdict's are."""
    mean, sd = spread(train)
    return (test - mean) / sd


def map_of(maps: dict, name: str) -> dict[str, np.ndarray]:
    """A saved map by name, or the average of maps named with ' + '."""
    parts = name.split(" + ")
    return {ref: sum(maps[part][ref] for part in parts) / len(parts) for ref in maps[parts[0]]}


def verdict(variant: str, maps: dict, scores: dict, frozen: dict, train: list[str], test: list[str],
            cells: dict, by_ref: dict) -> np.ndarray:
    """The held-out films' verdict scores under a variant ("frozen", or maps joined by ' & ', '@K' for top K)."""
    total = sum((np.array([scores[key][ref] for ref in test]) - mean) / sd
                for key, (mean, sd) in frozen.items() if key in FUSED)
    if variant == "frozen":
        return total
    name, _, top = variant.partition("@")
    train_records, test_records = [by_ref[ref] for ref in train], [by_ref[ref] for ref in test]
    for part in name.split(" & "):
        reading = own_scores if part.endswith(OWN) else asymmetries
        found = map_of(maps, part.removesuffix(OWN))
        mean, sd = spread(reading(found, train_records, cells, by_ref, int(top or 1)))
        total = total + (reading(found, test_records, cells, by_ref, int(top or 1)) - mean) / sd
    return total


OWN = " own"
"""Suffix of a map summed by its own image score (its most suspicious cells), not by its asymmetry."""


def own_scores(maps: dict, records: list, cells: dict, by_ref: dict, top: int = 1) -> np.ndarray:
    """Each film's image score on a map (the mean of its `top` cells after a 3×3 mean), needing no other film."""
    return np.array([image_score(maps[r.ref], cells[r.ref].breast, top) for r in records])


def rescored_sensitivity(found: dict, film_verdict: dict[str, float], weight: float, test: list[str],
                         cells: dict, by_ref: dict) -> float:
    """Lesion sensitivity at 1 FP/image of a map's boxes (at cell centres, the search when this was measured) whose
    logits are raised by `weight` × the film's verdict."""
    from scipy.special import expit, logit

    detections = []
    for ref in test:
        boxes = [(box, float(expit(logit(np.clip(score, 1e-6, 1 - 1e-6)) + weight * film_verdict[ref])))
                 for box, score in cell_centred_boxes(found[ref], cells[ref].breast, cells[ref].stride)]
        detections.append(box_detections(boxes))
    return sensitivity_at(froc(list(zip(detections, [by_ref[r] for r in test], strict=True))), 1)


def variants(names: list[str], baseline: str) -> list[str]:
    """The verdicts scored: each map, every pair of maps summed, all maps, top-3 readings, the averaged maps, and
    the baseline plus each map's own image score."""
    out = ["frozen", *names]
    out += [f"{a} & {b}" for i, a in enumerate(names) for b in names[i + 1:]]
    if len(names) > 2:
        out.append(" & ".join(names))
    out += [f"{v}@3" for v in out[1:]]
    out += [f"{a} + {b}" for i, a in enumerate(names) for b in names[i + 1:]]
    return out + [f"{baseline} & {name}{OWN}" for name in names]


def print_paired(rows: list[dict], baseline: str, label: str) -> None:
    """A Markdown table of each figure's mean ± sd over the folds and its paired difference from `baseline`, with
    the folds it wins, ties and loses (`label` names the baseline in the header)."""
    print(f"| verdict ({len(rows)} folds) | AUC mean ± sd | minus {label} | folds better / equal / worse |")
    print("|---|---|---|---|")
    for key in [k for k in rows[0] if k != "fold"]:
        s, diff = mean_sd([r[key] for r in rows]), np.array([r[key] - r[baseline] for r in rows])
        d = mean_sd(list(diff))
        print(f"| {key} | {s['mean']:.3f} ± {s['sd']:.3f} | {d['mean']:+.3f} ± {d['sd']:.3f} | "
              f"{(diff > 1e-9).sum()} / {(abs(diff) <= 1e-9).sum()} / {(diff < -1e-9).sum()} |")


def add_ranks(ranks: dict, seed: str, test: list[str], by_ref: dict, verdicts: dict[str, np.ndarray]) -> None:
    """Each held-out film's rank within its fold (0 to 1) under each verdict, by its finding (its first lesion's)."""
    from scipy.stats import rankdata

    for name, values in verdicts.items():
        for ref, rank in zip(test, rankdata(values) / len(test), strict=True):
            record = by_ref[ref]
            finding = "normal" if record.label == "normal" else record.lesions[0].abnormality
            ranks.setdefault(finding, {}).setdefault(name, {}).setdefault(seed, []).append(rank)


def print_findings(ranks: dict) -> None:
    """Each verdict's AUC of each finding against the normal films, on ranks within the folds, pooled by seed."""
    normal = ranks.pop("normal")
    for name in normal:
        for seed, normal_ranks in sorted(normal[name].items()):
            aucs = []
            for finding, by_name in sorted(ranks.items()):
                found = by_name[name][seed]
                truth = np.r_[np.zeros(len(normal_ranks)), np.ones(len(found))]
                aucs.append(f"{finding} {roc_auc(truth, np.r_[normal_ranks, found]):.3f} ({len(found)})")
            print(f"{name}, {seed}, AUC of each finding against the normal films: " + ", ".join(aucs))


def score_folds(maps: Path, score_fold, baseline: str, out: Path | None, label: str) -> list[dict]:
    """`score_fold(path)` on every saved fold (a row of AUCs), each printed with its `baseline` as it comes and
    written to `out`, then the paired table against `baseline` (`print_paired`)."""
    rows = []
    for path in sorted(maps.glob("seed*-fold*.npz")):
        rows.append(score_fold(path))
        print(f"{path.stem}: {baseline} {rows[-1][baseline]:.3f}", flush=True)
        if out:
            out.write_text(json.dumps(rows, indent=1))
    print_paired(rows, baseline, label)
    return rows


def main() -> None:
    """Score every variant in every saved fold and print the table with paired differences."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--baseline", default="films", help="the variant the others are paired against")
    parser.add_argument("--boxes", default="mirrors x2", help="the boxes' map rescored by the verdict")
    parser.add_argument("--by-finding", action="store_true",
                        help="also the baseline's AUC of each finding against the normal films, per seed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    cells = load_cells(records)
    rows, findings = [], {}
    for path in sorted(args.maps.glob("seed*-fold*.npz")):
        maps, scores, frozen, train, test = read_fold(path)
        truth = np.array([by_ref[ref].label != "normal" for ref in test])
        if args.by_finding:
            add_ranks(findings, path.stem.split("-")[0], test, by_ref,
                      {args.baseline: verdict(args.baseline, maps, scores, frozen, train, test, cells, by_ref)})
        row: dict = {"fold": path.stem}
        names = [name for name in maps if not name.endswith(TTA)]
        for variant in variants(names, args.baseline):
            row[f"auc/{variant}"] = roc_auc(truth, verdict(variant, maps, scores, frozen, train, test, cells, by_ref))
        for name in [*names, *(f"{a} + {b}" for i, a in enumerate(names) for b in names[i + 1:])]:
            found = map_of(maps, name)
            row[f"sens@1/{name}"] = rescored_sensitivity(found, dict.fromkeys(test, 0.0), 0.0, test, cells, by_ref)
        if args.boxes in maps:
            for name in dict.fromkeys((args.baseline, f"{args.baseline} & {args.boxes}")):
                film_verdict = dict(zip(test, verdict(name, maps, scores, frozen, train, test, cells, by_ref),
                                        strict=True))
                for weight in (0.25, 0.5, 1.0):
                    row[f"sens@1/{args.boxes} ^ {name} {weight:g}"] = rescored_sensitivity(
                        maps[args.boxes], film_verdict, weight, test, cells, by_ref)
        rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    if findings:
        print_findings(findings)
    baseline = f"auc/{args.baseline}"
    print(f"{len(rows)} folds: {', '.join(r['fold'] for r in rows)}")
    print(f"| reading | mean ± sd | minus {args.baseline}: mean ± sd | folds better / equal / worse |")
    print("|---|---|---|---|")
    for key in rows[0]:
        if key == "fold":
            continue
        s = mean_sd([r[key] for r in rows])
        if key.startswith("auc/") and baseline in rows[0]:
            diff = np.array([r[key] - r[baseline] for r in rows])
            d = mean_sd(list(diff))
            paired = (f" | {d['mean']:+.3f} ± {d['sd']:.3f} | "
                      f"{(diff > 1e-9).sum()} / {(abs(diff) <= 1e-9).sum()} / {(diff < -1e-9).sum()}")
        else:
            paired = " | | "
        print(f"| {key} | {s['mean']:.3f} ± {s['sd']:.3f}{paired} |")


if __name__ == "__main__":
    main()
