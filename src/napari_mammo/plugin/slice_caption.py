"""The canvas caption that names the mammogram (mdbNNN) each open MIAS stack shows on its current slice."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from napari_mammo.plugin.companions import image_layers, slice_refs
from napari_mammo.plugin.slices import shown_ref

if TYPE_CHECKING:
    import napari

_CAPTIONED: set[int] = set()
"""Viewers (by id) whose caption is already kept up to date, so that each widget can ask for it."""


def text_overlay(viewer: napari.Viewer):
    """The canvas' text overlay (napari 0.9 moved it to `viewer.canvas.overlays.text`)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.text if canvas is not None and hasattr(canvas, "overlays") else viewer.text_overlay


def caption_stacks(viewer: napari.Viewer) -> None:
    """Keep the canvas caption naming each named stack's shown slice, once per viewer however many widgets ask."""
    if id(viewer) in _CAPTIONED:
        return
    _CAPTIONED.add(id(viewer))
    weakref.finalize(viewer, _CAPTIONED.discard, id(viewer))

    def update(_=None) -> None:
        stacks = [layer for layer in image_layers(viewer) if layer.data.ndim == 3 and slice_refs(layer)]
        names = [f"{layer.name}: {shown_ref(layer, viewer)}" for layer in stacks if shown_ref(layer, viewer)]
        overlay = text_overlay(viewer)
        overlay.text = "\n".join(names)
        overlay.visible = bool(names)

    viewer.dims.events.current_step.connect(update)
    viewer.layers.events.inserted.connect(update)
    viewer.layers.events.removed.connect(update)
    update()
