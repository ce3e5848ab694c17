"""One progress event for every long job (reading, training, evaluating, cross-validating, benchmarking),
the Stop flag, and running a progress generator to its end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressEvent = dict[str, Any]
"""{"phase": what is being done, "step": how many done, "steps": of how many, ...}: training adds
"epoch", "epochs", "loss", "eta_s"; validation adds its scores; a benchmark its measurement."""

Progress = Callable[[ProgressEvent], None]

StopFlag = Callable[[], bool]


def progress_event(phase: str, step: int, steps: int, **extra: Any) -> ProgressEvent:
    """A progress event: `step` of `steps` done in `phase`, with any further fields."""
    return {"phase": phase, "step": step, "steps": steps, **extra}


def run_to_end(generator, progress: Progress | None = None, stop: StopFlag | None = None):
    """Run a progress generator to its end, reporting each event; returns its return value."""
    while True:
        try:
            event = next(generator)
        except StopIteration as done:
            return done.value
        if progress:
            progress(event)
        if stop and stop():
            generator.close()
            raise InterruptedError("cancelled")
