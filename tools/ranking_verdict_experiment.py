"""Cross-validate a verdict map fine-tuned further on whole films to rank a woman's abnormal film above her other one.

    python tools/ranking_verdict_experiment.py --data "$NAPARI_MAMMO_MIAS" [--seed 0] [--epochs 10]
        [--learning-rate 1e-5] [--out runs/ranking-verdict.json]

The shipped verdict sums the frozen heads' three scores and the verdict map's asymmetry
(its most suspicious cell minus the other film's). That map is trained on cells (lesion or
not), not on what the verdict reads. Here, in each fold of one seed, the verdict map is
fitted as shipped (`fine_tune_cells`, films alone, 15 epochs) and then fine-tuned for
`--epochs` more on whole films of the training women who have exactly one abnormal film:
a pairwise logistic (RankNet) loss on the two films' image scores (the largest 3×3 mean of
breast-cell logits), so the abnormal film's top cell should rise above its partner's. Both
maps' asymmetries go into the verdict the same way; it prints each fold's AUC of the
verdict of session 10 ("verdict": three frozen scores and the map's asymmetry), of the
shipped verdict ("verdict5": with the stage-4 head's asymmetry too) and of the map's
asymmetry alone, both maps, with the paired differences.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

from napari_mammo.evaluation.crossval import load_screening_features, mean_sd, woman_folds
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.io.mias import read_folder
from napari_mammo.models.screening import (
    FINE_ASYMMETRY,
    VERDICT_ASYMMETRY,
    ScreeningConfig,
    add_tuned_asymmetry,
    fit_heads,
    fuse,
    other_film,
)
from napari_mammo.models.tuned_cells import fine_tune_cells, tuned_logits, tuned_maps


def one_sided_pairs(train: list, by_ref: dict) -> list[tuple[str, str]]:
    """(abnormal film, other film) of the training women with exactly one abnormal film."""
    pairs = []
    for record in train:
        partner = other_film(record, by_ref)
        if record.label != "normal" and partner is not None and partner.label == "normal":
            pairs.append((record.ref, partner.ref))
    return pairs


def film_score(logits, breast):
    """A film's image score on cell logits (rows, cols): the largest 3×3 mean over its breast cells."""
    import torch

    smoothed = torch.nn.functional.avg_pool2d(logits[None, None], 3, stride=1, padding=1,
                                              count_include_pad=False)[0, 0]
    return torch.where(breast, smoothed, torch.full_like(smoothed, -1e4)).amax()


def rank_tune(net, pairs: list[tuple[str, str]], stage4: dict, cells: dict, epochs: int, learning_rate: float,
              seed: int):
    """Fine-tune a tuned map on whole films with a pairwise logistic loss on the pairs' image scores."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net.eval()  # BatchNorm keeps its statistics, as in `fine_tune_cells`
    head, stages = net[-1], net[:-1]
    optimiser = torch.optim.AdamW([{"params": stages.parameters(), "lr": learning_rate},
                                   {"params": head.parameters(), "lr": 10 * learning_rate}], weight_decay=1e-4)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for index in rng.permutation(len(pairs)):
            scores = []
            for ref in pairs[index]:
                x = torch.from_numpy(np.ascontiguousarray(stage4[ref].features, np.float32))[None]
                logits = tuned_logits(net, x)[0]
                breast = torch.from_numpy(cells[ref].breast[:logits.shape[0], :logits.shape[1]])
                scores.append(film_score(logits, breast))
            loss = torch.nn.functional.softplus(scores[1] - scores[0])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        losses.append(total / max(len(pairs), 1))
    return net.eval(), losses


def fold_aucs(heads, net, train, test, stage4, cells, by_ref) -> dict[str, float]:
    """The held-out verdicts' AUCs with `net` as the verdict map (without and with the fine head's asymmetry), and
    its asymmetry's alone."""
    heads = copy.deepcopy(heads)
    films = {ref: found for ref, found in stage4.items() if ref in by_ref}
    maps = tuned_maps(net, films)
    add_tuned_asymmetry(heads, train, cells, maps, by_ref, VERDICT_ASYMMETRY)
    four = {key: spread for key, spread in heads.standardise.items() if key != FINE_ASYMMETRY}
    truth, fused, fused5, asymmetry = [], [], [], []
    for record in test:
        partner = other_film(record, by_ref)
        tuned = {VERDICT_ASYMMETRY: (maps[record.ref], maps[partner.ref] if partner else None)}
        fine = (stage4[record.ref], stage4[partner.ref] if partner else None)
        values, _ = heads.film_scores(cells[record.ref], cells[partner.ref] if partner else None, tuned, fine)
        truth.append(record.label != "normal")
        fused.append(fuse(values, four))
        fused5.append(fuse(values, heads.standardise))
        asymmetry.append(values[VERDICT_ASYMMETRY])
    truth = np.array(truth)
    return {"verdict": roc_auc(truth, np.array(fused)), "verdict5": roc_auc(truth, np.array(fused5)),
            "asymmetry": roc_auc(truth, np.array(asymmetry))}


def main() -> None:
    """Each fold: the shipped verdict map and the same map rank-tuned; print the AUCs and their differences."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    records = read_folder(args.data)
    by_ref = {r.ref: r for r in records}
    config = ScreeningConfig()
    cells, stage4 = load_screening_features(records, config)
    rows = []
    for k, test in enumerate(woman_folds(records, args.folds, args.seed)):
        train = [r for r in records if r not in test]
        fold_seed = args.seed * 100 + k  # as `out_of_fold` seeds its folds
        heads = fit_heads(train, cells, by_ref, config, fold_seed, fine=stage4)
        shipped = fine_tune_cells(train, stage4, cells, config.verdict_fit, fold_seed)
        pairs = one_sided_pairs(train, by_ref)
        ranked, losses = rank_tune(copy.deepcopy(shipped), pairs, stage4, cells, args.epochs, args.learning_rate,
                                   fold_seed)
        row = {"fold": k, "pairs": len(pairs), "losses": losses}
        for name, net in (("shipped", shipped), ("ranked", ranked)):
            row.update({f"{name}/{key}": value
                        for key, value in fold_aucs(heads, net, train, test, stage4, cells, by_ref).items()})
        rows.append(row)
        print(f"seed {args.seed} fold {k}: {len(pairs)} pairs, loss {losses[0]:.3f} -> {losses[-1]:.3f}; verdict "
              f"{row['shipped/verdict']:.3f} -> {row['ranked/verdict']:.3f}, with the fine asymmetry "
              f"{row['shipped/verdict5']:.3f} -> {row['ranked/verdict5']:.3f}, asymmetry "
              f"{row['shipped/asymmetry']:.3f} -> {row['ranked/asymmetry']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    for key in ("verdict", "verdict5", "asymmetry"):
        before, after = mean_sd([r[f"shipped/{key}"] for r in rows]), mean_sd([r[f"ranked/{key}"] for r in rows])
        diff = np.array([r[f"ranked/{key}"] - r[f"shipped/{key}"] for r in rows])
        print(f"{key}: shipped map {before['mean']:.3f} ± {before['sd']:.3f}, rank-tuned {after['mean']:.3f} ± "
              f"{after['sd']:.3f}, difference {diff.mean():+.3f} ± {diff.std(ddof=1):.3f} "
              f"({(diff > 1e-9).sum()} better / {(abs(diff) <= 1e-9).sum()} equal / {(diff < -1e-9).sum()} worse)")


if __name__ == "__main__":
    main()
