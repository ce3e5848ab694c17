"""Seeded, stratified splits that keep each woman's two films together."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from napari_mammo.records import CLASS_NAMES, Mammogram


def woman_label(records: Sequence[Mammogram]) -> str:
    """The worst image label among one woman's films (stratification key)."""
    return max((r.label for r in records), key=CLASS_NAMES.index)


def group_by_woman(records: Sequence[Mammogram]) -> dict[str, list[Mammogram]]:
    """Each woman's films (mdb001 + mdb002, …), in the order given."""
    women: dict[str, list[Mammogram]] = defaultdict(list)
    for record in records:
        women[record.woman].append(record)
    return women


def split_by_woman(records: Sequence[Mammogram], fractions: dict[str, float],
                   seed: int = 0) -> dict[str, list[Mammogram]]:
    """Split records into named parts of about the given fractions of women, stratified by label.

    Both films of a woman always land in the same part. The last part takes what is
    left, so every woman is assigned exactly once.
    """
    if not fractions or any(f < 0 for f in fractions.values()) or sum(fractions.values()) > 1 + 1e-9:
        raise ValueError(f"fractions must be non-negative and sum to at most 1, got {fractions}")
    women = group_by_woman(records)
    strata: dict[str, list[str]] = defaultdict(list)
    for woman in sorted(women):
        strata[woman_label(women[woman])].append(woman)
    rng = np.random.default_rng(seed)
    names = list(fractions)
    parts: dict[str, list[Mammogram]] = {name: [] for name in names}
    for label in CLASS_NAMES:
        members = strata.get(label, [])
        order = [members[i] for i in rng.permutation(len(members))]
        start = 0
        for i, name in enumerate(names):
            count = len(order) - start if i == len(names) - 1 else int(round(fractions[name] * len(order)))
            for woman in order[start : start + count]:
                parts[name].extend(women[woman])
            start += count
    return {name: sorted(part, key=lambda r: r.ref) for name, part in parts.items()}


def standard_split(records: Sequence[Mammogram], seed: int = 0, test: bool = True) -> dict[str, list[Mammogram]]:
    """The project's split: 20% of women for test, 15% for validation, the rest for training.

    Without `test` (cross-validation holds its own fold out) there is no test part:
    15% of the women validate and the rest train.
    """
    if not test:
        return {"test": [], **split_by_woman(records, {"val": 0.15, "train": 0.85}, seed=seed)}
    return split_by_woman(records, {"test": 0.2, "val": 0.15, "train": 0.65}, seed=seed)
