"""The training loop both models share: device and torchrun set-up, progress with ETA, Stop, best weights,
and a checkpoint after every epoch so that `--resume` goes on where a stopped run ended."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_mammo.engine.progress import Progress, StopFlag, progress_event
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
    hold_out_test: bool = True
    """Keep 20% of the women out as a test split; cross-validation, which holds out its own fold, turns it off."""


@dataclass
class TrainResult:
    """What a training run produced."""

    path: Path | None
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    stopped: bool = False


@dataclass
class TrainingRun:
    """One training process: its device, its place in a torchrun job, where it reports."""

    device: str
    dist: Distributed
    report: Progress
    epochs: int = 0
    result: TrainResult = field(default_factory=lambda: TrainResult(None, -1, -math.inf))


def start_training(device: str, seed: int, progress: Progress | None) -> TrainingRun:
    """Pick the device, join torchrun's group if any, seed; only rank 0 reports."""
    import torch

    device = pick_device(device)
    dist = init_distributed(device)
    if device == "cuda" and dist.world > 1:
        torch.cuda.set_device(dist.local_rank)
    seed_everything(seed + dist.rank)
    report = progress if (progress and dist.main) else (lambda event: None)
    return TrainingRun(device, dist, report)


def distribute(model, run: TrainingRun):
    """The model wrapped in DistributedDataParallel under torchrun, else itself."""
    if run.dist.world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[run.dist.local_rank] if run.device == "cuda" else None)


def steps_per_epoch(items: int, batch: int, run: TrainingRun, cap: int | None) -> int:
    """Steps that show each rank about its share of the items once, at most `cap`."""
    steps = max(1, items // (batch * run.dist.world))
    return min(steps, cap) if cap else steps


def training_split(records, seed: int, test: bool = True) -> tuple[dict, list]:
    """The pair-aware split and the images to validate on (two training images when there is no val part)."""
    from napari_mammo.data.splits import standard_split

    parts = standard_split(records, seed=seed, test=test)
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


def keep_if_best(run: TrainingRun, entry: dict, score: float, save: Callable[[], Path]) -> None:
    """Add a validation entry; on rank 0 save the weights when the score is the best so far."""
    result = run.result
    result.history.append(entry)
    if run.dist.main and score > result.best_score:
        result.best_score, result.best_epoch = score, entry["epoch"]
        result.path = save()
    run.report(progress_event("validated", entry["epoch"], run.epochs, **entry, best_epoch=result.best_epoch))


def run_epochs(run: TrainingRun, epochs: int, steps: int, start_epoch: Callable[[int], None],
               step: Callable[[int], float], validate: Callable[[int, float], None], stop: StopFlag | None = None,
               checkpoint: Checkpoint | None = None) -> TrainResult:
    """Run the epochs with progress and ETA; Stop or Ctrl-C ends it keeping the best weights so far.

    With a checkpoint, a run resumed from it starts after its last finished epoch, and every
    finished epoch is saved into it; it is removed once the last epoch is done.
    """
    run.epochs = epochs
    first = checkpoint.restore(run.result) + 1 if checkpoint is not None and checkpoint.resume else 1
    started, done, total = time.monotonic(), 0, steps * (epochs - first + 1)
    try:
        for epoch in range(first, epochs + 1):
            start_epoch(epoch)
            losses = []
            for index in range(steps):
                if stop and stop():
                    raise KeyboardInterrupt
                losses.append(step(index))
                done += 1
                elapsed = time.monotonic() - started
                run.report(progress_event("training", index + 1, steps, epoch=epoch, epochs=epochs, loss=losses[-1],
                                          eta_s=elapsed / done * (total - done)))
            validate(epoch, sum(losses) / len(losses))
            if checkpoint is not None and run.dist.main:
                checkpoint.save(epoch, run.result)
        if checkpoint is not None and run.dist.main:
            checkpoint.path.unlink(missing_ok=True)
    except KeyboardInterrupt:
        run.result.stopped = True
        if run.result.path is None and run.dist.main:
            validate(len(run.result.history) + 1, float("nan"))
    finally:
        close_distributed()
    return run.result


def make_checkpoint(out: str | Path, run: TrainingRun, model, optimiser, scheduler, rng, config,
                    resume: bool) -> Checkpoint:
    """The checkpoint of a run writing `out`; its settings are the config's, the device aside."""
    from dataclasses import asdict

    settings = {key: value for key, value in asdict(config).items() if key != "device"}
    return Checkpoint(checkpoint_path(out), model, optimiser, scheduler, rng, settings, resume, run.dist.main)


def checkpoint_path(out: str | Path) -> Path:
    """Where the checkpoint of a run writing `out` lives: beside it, named after it."""
    out = Path(out)
    return out.with_name(f"{out.name}.checkpoint.pt")


@dataclass
class Checkpoint:
    """The state after an epoch (network, optimiser, schedule, random generator, history) for `--resume`."""

    path: Path
    model: Any
    optimiser: Any
    scheduler: Any
    rng: Any
    settings: dict
    resume: bool = False
    main: bool = True  # torchrun's rank 0: the only one whose random generator was saved

    def save(self, epoch: int, result: TrainResult) -> None:
        """Write the state after `epoch` atomically (rank 0 only)."""
        import io

        import torch

        from napari_mammo.io.atomic import atomic_write_bytes

        state = {"epoch": epoch, "settings": self.settings, "model": self.model.state_dict(),
                 "optimiser": self.optimiser.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "best_epoch": result.best_epoch, "best_score": result.best_score, "history": result.history,
                 "best_path": str(result.path) if result.path else None}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def restore(self, result: TrainResult) -> int:
        """Load the saved state into the objects and `result`; returns the last finished epoch."""
        import torch

        from napari_mammo.errors import MammoInputError

        if not self.path.is_file():
            raise MammoInputError(self.path, "no checkpoint to resume from (it is written after each epoch, "
                                             "and removed when training ends)")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a torn or foreign file: torch raises many kinds
            raise MammoInputError(self.path, f"not a readable checkpoint ({err})") from None
        changed = sorted(key for key in {*self.settings, *state["settings"]}
                         if self.settings.get(key) != state["settings"].get(key))
        if changed:
            raise MammoInputError(self.path, "was made with other settings (" + ", ".join(
                f"{key} {state['settings'].get(key)!r}" for key in changed) + "); resume with the same options")
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.main:
            self.rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
        result.best_epoch, result.best_score = state["best_epoch"], state["best_score"]
        result.history[:] = state["history"]
        result.path = Path(state["best_path"]) if state["best_path"] else None
        return int(state["epoch"])
