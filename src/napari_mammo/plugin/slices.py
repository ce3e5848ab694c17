"""What the widgets run on: the image layer chosen, and which of its 2-D slices (the shown one, or all)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import numpy as np

from napari_mammo.plugin.companions import image_layers, slice_refs

if TYPE_CHECKING:
    import napari

SHOWN, EVERY = "shown slice", "every slice"
SUB_STEPS = 1000
"""Progress steps per slice when several slices run, so the bar moves inside each slice."""


def shown_index(layer, viewer: napari.Viewer) -> tuple[int, ...]:
    """The leading (slice) index of an image layer at the viewer's current position; () for 2-D."""
    if layer.rgb:
        raise ValueError(f"layer {layer.name!r} is an RGB image; mammograms are greyscale")
    if layer.data.ndim == 2:
        return ()
    point = layer.world_to_data(viewer.dims.point[-layer.ndim :])
    index = tuple(int(round(i)) for i in point[: layer.data.ndim - 2])
    return tuple(min(max(i, 0), n - 1) for i, n in zip(index, layer.data.shape[:-2], strict=False))


def slice_indices(layer, viewer: napari.Viewer, which: str) -> list[tuple[int, ...]]:
    """The slice indices to run on: the shown one, or all of them (`which` is SHOWN or EVERY)."""
    if which == EVERY and not layer.rgb and layer.data.ndim > 2:
        return [tuple(int(i) for i in index) for index in np.ndindex(*layer.data.shape[:-2])]
    return [shown_index(layer, viewer)]


def slice_pixels(layer, index: tuple[int, ...]) -> np.ndarray:
    """The 2-D plane of an image layer at a slice index."""
    return np.asarray(layer.data[index] if index else layer.data)


def on_slice(vertices: np.ndarray, index: tuple[int, ...]) -> bool:
    """Whether a shape's vertices (slice coordinates first) lie on the slice `index`."""
    vertices = np.asarray(vertices)
    lead = vertices.shape[1] - 2
    if not index or lead <= 0:
        return True
    return bool(np.all(np.round(vertices[:, :lead]) == np.asarray(index[-lead:])))


def run_on_slices(layer, indices: list[tuple[int, ...]], run: Callable[[np.ndarray], Generator]):
    """Generator over `run(pixels)` for each slice; returns [(index, result)] and [(index, reason)] skipped.

    With one slice an error propagates; with several, a slice the model cannot take (a
    constant or empty plane) is skipped and reported instead of ending the whole run.
    """
    results, skipped = [], []
    for k, index in enumerate(indices):
        try:
            generator = run(slice_pixels(layer, index))
            while True:
                try:
                    event = next(generator)
                except StopIteration as done:
                    results.append((index, done.value))
                    break
                if len(indices) > 1:
                    event = {**event, "step": k * SUB_STEPS + SUB_STEPS * event["step"] // event["steps"],
                             "steps": len(indices) * SUB_STEPS, "slice": index}
                yield event
        except ValueError as err:
            if len(indices) == 1:
                raise
            skipped.append((index, str(err)))
            yield {"phase": "skipped", "step": (k + 1) * SUB_STEPS, "steps": len(indices) * SUB_STEPS}
    return results, skipped


def describe_skipped(skipped: list[tuple[tuple[int, ...], str]]) -> str:
    """A short note of the slices skipped, or ''."""
    if not skipped:
        return ""
    first = skipped[0]
    return f"; {len(skipped)} slice(s) skipped (slice {list(first[0])}: {first[1]})"




def image_box(viewer: napari.Viewer, label: str = "image"):
    """A combo box of the viewer's image layers whose value is the layer itself, kept current as layers change."""
    from magicgui.widgets import ComboBox

    box = ComboBox(label=label, choices=lambda _: [(layer.name, layer) for layer in image_layers(viewer)])
    def refresh(_=None) -> None:
        box.reset_choices()

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
        event.connect(refresh)
    for layer in viewer.layers:  # a renamed layer shows its new name
        layer.events.name.connect(refresh)
    viewer.layers.events.inserted.connect(lambda event: event.value.events.name.connect(refresh))
    return box


def slices_box():
    """A 'slices' combo box: the shown slice or every slice of a stack."""
    from magicgui.widgets import ComboBox

    return ComboBox(label="slices", choices=[SHOWN, EVERY], value=SHOWN, visible=False)


def show_for_stacks(image_box, box) -> None:
    """Keep `box` visible only while `image_box` holds a stack (call once `box` is in its container)."""

    def update(_=None) -> None:
        layer = image_box.value
        box.visible = layer is not None and layer.data.ndim > 2 and not layer.rgb

    image_box.changed.connect(update)
    update()


def shown_ref(layer, viewer: napari.Viewer) -> str | None:
    """The mammogram (mdbNNN) a stack shows on its current slice, when the reader named its slices."""
    refs = slice_refs(layer)
    index = shown_index(layer, viewer)
    if not refs or len(index) != 1 or not 0 <= index[0] < len(refs):
        return None
    return refs[index[0]]
