"""What the widgets run on: image layers found by name, their pixel size, and which 2-D planes
(the shown slice, or every slice of a stack)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import numpy as np

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


def plane_indices(layer, viewer: napari.Viewer, which: str) -> list[tuple[int, ...]]:
    """The slice indices to run on: the shown one, or all of them (`which` is SHOWN or EVERY)."""
    if which == EVERY and not layer.rgb and layer.data.ndim > 2:
        return [tuple(int(i) for i in index) for index in np.ndindex(*layer.data.shape[:-2])]
    return [shown_index(layer, viewer)]


def plane(layer, index: tuple[int, ...]) -> np.ndarray:
    """The 2-D plane of an image layer at a slice index."""
    return np.asarray(layer.data[index] if index else layer.data)


def on_slice(vertices: np.ndarray, index: tuple[int, ...]) -> bool:
    """Whether a shape's vertices (slice coordinates first) lie on the slice `index`."""
    vertices = np.asarray(vertices)
    lead = vertices.shape[1] - 2
    if not index or lead <= 0:
        return True
    return bool(np.all(np.round(vertices[:, :lead]) == np.asarray(index[-lead:])))


def run_on_planes(layer, indices: list[tuple[int, ...]], run: Callable[[np.ndarray], Generator]):
    """Generator over `run(plane)` for each slice; returns [(index, result)] and [(index, reason)] skipped.

    With one slice an error propagates; with several, a slice the model cannot take (a
    constant or empty plane) is skipped and reported instead of ending the whole run.
    """
    results, skipped = [], []
    for k, index in enumerate(indices):
        try:
            generator = run(plane(layer, index))
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


def layer_named(viewer: napari.Viewer, name: str, kind: str | None = None):
    """The viewer's layer of that name (and, given `kind`, of that metadata kind), or None."""
    return next((layer for layer in viewer.layers if layer.name == name
                 and (kind is None or layer.metadata.get("kind") == kind)), None)


def image_layers(viewer: napari.Viewer) -> list:
    """The viewer's image layers, not counting the suspicion heatmaps this plugin adds."""
    import napari

    return [layer for layer in viewer.layers
            if isinstance(layer, napari.layers.Image) and layer.metadata.get("kind") != "suspicion"]


def pixel_spacing(layer) -> tuple[float, float] | None:
    """The layer's pixel size in mm if its metadata says the scale is in mm."""
    if layer.metadata.get("unit") == "mm":
        return float(layer.scale[-2]), float(layer.scale[-1])
    return None


def slices_box():
    """A 'slices' combo box: the shown slice or every slice of a stack."""
    from magicgui.widgets import ComboBox

    return ComboBox(label="slices", choices=[SHOWN, EVERY], value=SHOWN, visible=False)


def show_for_stacks(viewer: napari.Viewer, image_box, box) -> None:
    """Keep `box` visible only while `image_box` names a stack (call once `box` is in its container)."""

    def update(_=None) -> None:
        layer = layer_named(viewer, image_box.value)
        box.visible = layer is not None and layer.data.ndim > 2 and not layer.rgb

    image_box.changed.connect(update)
    update()


def shown_ref(layer, viewer: napari.Viewer) -> str | None:
    """The mammogram (mdbNNN) a stack shows on its current slice, when the reader named its slices."""
    refs = layer.metadata.get("refs") or []
    index = shown_index(layer, viewer)
    if not refs or len(index) != 1 or not 0 <= index[0] < len(refs):
        return None
    return str(refs[index[0]])


def text_overlay(viewer: napari.Viewer):
    """The canvas' text overlay (napari 0.9 moved it to `viewer.canvas.overlays.text`)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.text if canvas is not None and hasattr(canvas, "overlays") else viewer.text_overlay


def name_shown_slice(viewer: napari.Viewer) -> None:
    """Show the shown slice's mammogram name (mdbNNN) in the canvas whenever a named stack is open."""

    def update(_=None) -> None:
        stacks = [layer for layer in image_layers(viewer) if layer.data.ndim == 3 and layer.metadata.get("refs")]
        names = [f"{layer.name}: {shown_ref(layer, viewer)}" for layer in stacks if shown_ref(layer, viewer)]
        overlay = text_overlay(viewer)
        overlay.text = "\n".join(names)
        overlay.visible = bool(names)

    viewer.dims.events.current_step.connect(update)
    viewer.layers.events.inserted.connect(update)
    viewer.layers.events.removed.connect(update)
    update()
