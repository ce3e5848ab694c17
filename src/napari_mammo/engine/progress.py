"""Progress events, the Stop flag, and running a progress generator to its end."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[dict], None]


StopFlag = Callable[[], bool]


def drive(generator, progress: Progress | None = None, stop: StopFlag | None = None):
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
