"""Weights files known to this napari session: the shipped default and those trained here."""

from __future__ import annotations

import weakref
from pathlib import Path

from psygnal import Signal

SHIPPED = "shipped default"


class WeightsRegistry:
    """Per-model lists of weights files; widgets listen to `changed` to refresh their choices."""

    changed = Signal(str)

    def __init__(self) -> None:
        self._files: dict[str, list[Path]] = {}

    def add(self, model: str, path: str | Path) -> None:
        """Remember a weights file for a model (most recent first)."""
        path = Path(path).resolve()
        files = self._files.setdefault(model, [])
        if path in files:
            files.remove(path)
        files.insert(0, path)
        self.changed.emit(model)

    def choices(self, model: str) -> list[str]:
        """The shipped default, then the known files."""
        return [SHIPPED, *(str(p) for p in self._files.get(model, []))]


REGISTRY = WeightsRegistry()


def follow_registry(container, boxes: list) -> None:
    """Refresh the weights combo `boxes` of `container` whenever weights are trained, until they are gone.

    The registry holds only weak references to the boxes: a global strong one would keep
    closed widgets alive until the interpreter exits, after Qt, and crash it there.
    """
    refs = [weakref.ref(box) for box in boxes]

    def refresh(_model: str) -> None:
        alive = [ref() for ref in refs]
        try:
            if any(box is None for box in alive):
                raise RuntimeError("a weights box is gone")
            for box in alive:
                box.reset_choices()
        except RuntimeError:  # the widget (or its Qt side) is gone
            REGISTRY.changed.disconnect(refresh, missing_ok=True)

    REGISTRY.changed.connect(refresh)
    container.native.destroyed.connect(lambda *_: REGISTRY.changed.disconnect(refresh, missing_ok=True))
