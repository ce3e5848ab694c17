"""The training loop both models share: device and torchrun set-up, progress with ETA, Stop, best weights."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from napari_mammo.engine.progress import Progress, StopFlag
from napari_mammo.engine.runtime import Distributed, close_distributed, init_distributed, pick_device, seed_everything


@dataclass
class TrainConfig:
    """Settings every training run has; saved in the weights' metadata."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    max_steps_per_epoch: int | None = None
    split_seed: int = 0


@dataclass
class TrainResult:
    """What a training run produced."""

    path: Path | None
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    stopped: bool = False


@dataclass
class Run:
    """One training process: its device, its place in a torchrun job, where it reports."""

    device: str
    dist: Distributed
    report: Progress
    result: TrainResult = field(default_factory=lambda: TrainResult(None, -1, -math.inf))


def begin(device: str, seed: int, progress: Progress | None) -> Run:
    """Pick the device, join torchrun's group if any, seed; only rank 0 reports."""
    import torch

    device = pick_device(device)
    dist = init_distributed(device)
    if device == "cuda" and dist.world > 1:
        torch.cuda.set_device(dist.local_rank)
    seed_everything(seed + dist.rank)
    report = progress if (progress and dist.main) else (lambda event: None)
    return Run(device, dist, report)


def wrap(model, run: Run):
    """The model wrapped in DistributedDataParallel under torchrun, else itself."""
    if run.dist.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[run.dist.local_rank] if run.device == "cuda" else None)


def steps_per_epoch(items: int, batch: int, run: Run, cap: int | None) -> int:
    """Steps that show each rank about its share of the items once, at most `cap`."""
    steps = max(1, items // (batch * run.dist.world))
    return min(steps, cap) if cap else steps


def training_split(records, seed: int) -> tuple[dict, list]:
    """The pair-aware split and the images to validate on (two training images when there is no val part)."""
    from napari_mammo.data.splits import standard_split

    parts = standard_split(records, seed=seed)
    if not parts["train"]:
        raise ValueError("no training images after the split; the data set needs more women")
    return parts, parts["val"] or parts["train"][:2]


def optimise(loss, optimiser, scheduler) -> float:
    """One optimiser and scheduler step on a loss; returns the loss as a number.

    A loss that is NaN or infinite stops training (ValueError) before it reaches the weights:
    the best weights kept so far stay as they are.
    """
    value = float(loss.detach())
    if not math.isfinite(value):
        raise ValueError(f"the training loss became {value}; nothing more is written "
                         "(lower the learning rate, or check the data)")
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    scheduler.step()
    return value


def record(run: Run, entry: dict, score: float, save: Callable[[], Path]) -> None:
    """Add a validation entry; on rank 0 save the weights when the score is the best so far."""
    result = run.result
    result.history.append(entry)
    if run.dist.main and score > result.best_score:
        result.best_score, result.best_epoch = score, entry["epoch"]
        result.path = save()
    run.report({"phase": "validated", **entry, "best_epoch": result.best_epoch})


def loop(run: Run, epochs: int, steps: int, start_epoch: Callable[[int], None], step: Callable[[int], float],
         validate: Callable[[int, float], None], stop: StopFlag | None = None) -> TrainResult:
    """Run the epochs with progress and ETA; Stop or Ctrl-C ends it keeping the best weights so far."""
    started, done, total = time.monotonic(), 0, steps * epochs
    try:
        for epoch in range(1, epochs + 1):
            start_epoch(epoch)
            losses = []
            for index in range(steps):
                if stop and stop():
                    raise KeyboardInterrupt
                losses.append(step(index))
                done += 1
                elapsed = time.monotonic() - started
                run.report({"phase": "training", "epoch": epoch, "epochs": epochs, "step": index + 1,
                            "steps": steps, "loss": losses[-1], "eta_s": elapsed / done * (total - done)})
            validate(epoch, sum(losses) / len(losses))
    except KeyboardInterrupt:
        run.result.stopped = True
        if run.result.path is None and run.dist.main:
            validate(len(run.result.history) + 1, float("nan"))
    finally:
        close_distributed()
    return run.result
