"""The Classify widget: CNNI-BCC on an image layer, off the GUI thread, into a Labels layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Label

from .worker_widget import ModelWidget

if TYPE_CHECKING:
    import napari

MODEL = "cnni-bcc"
CLASS_COLOURS = {0: "transparent", 1: "#2ca02c", 2: "#ffbf00", 3: "#d62728"}


def image_layers(viewer: napari.Viewer) -> list:
    """The viewer's image layers."""
    import napari

    return [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image)]


def displayed_plane(layer, viewer: napari.Viewer) -> tuple[np.ndarray, tuple]:
    """The 2-D plane of an image layer at the viewer's current slice, and its leading index."""
    if layer.rgb:
        raise ValueError(f"layer {layer.name!r} is an RGB image; mammograms are greyscale")
    if layer.data.ndim == 2:
        return np.asarray(layer.data), ()
    point = layer.world_to_data(viewer.dims.point[-layer.ndim :])
    index = tuple(int(round(i)) for i in point[: layer.data.ndim - 2])
    index = tuple(min(max(i, 0), n - 1) for i, n in zip(index, layer.data.shape[:-2], strict=False))
    return np.asarray(layer.data[index]), index


def pixel_spacing(layer) -> tuple[float, float] | None:
    """The layer's pixel size in mm if its metadata says the scale is in mm."""
    if layer.metadata.get("unit") == "mm":
        return float(layer.scale[-2]), float(layer.scale[-1])
    return None


class ClassifyWidget(ModelWidget):
    """Choose an image, weights and device; Classify writes a Labels layer of patch classes."""

    model_name = MODEL
    idle_text = "Classify"

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.patches = ComboBox(label="patches", choices=["breast", "all", "middle"], value="breast")
        self.verdict = Label(label="verdict", value="")
        self.extend([self.image, self.weights, self.weights_file, self.device, self.patches, self.run_button,
                     self.progress, self.verdict])
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)

    def _image_choices(self, _=None) -> list:
        """Image layer names for the combo box."""
        return [layer.name for layer in image_layers(self.viewer)]

    def _refresh(self, _=None) -> None:
        """Refresh the image choices when layers come and go."""
        self.image.reset_choices()

    def start(self):
        """Classify the chosen image layer in a worker thread; returns the worker."""
        from napari.utils.notifications import show_error

        if not self.image.value:
            show_error("napari-mammo: open an image layer to classify")
            return None
        layer = self.viewer.layers[self.image.value]
        weights, device, selection = self.weights_path(), self.device.value, self.patches.value
        viewer = self.viewer

        def job():
            from ..classifier import PatchClassifier

            plane, index = displayed_plane(layer, viewer)
            classifier = PatchClassifier.load(weights, device=device)
            result = yield from classifier.iter_classify(plane, pixel_spacing(layer), selection)
            return layer, index, result

        return self.launch(job, self._on_result, self.verdict, "classification failed", "classifying…")

    def _on_result(self, value) -> None:
        """Write or replace this widget's Labels layer for the image and show the verdict."""
        layer, index, result = value
        add_classification_layer(self.viewer, layer, result, index)
        probs = ", ".join(f"{name} {p:.2f}" for name, p in result.probabilities.items())
        self.verdict.value = f"{result.label} ({probs})"


def add_classification_layer(viewer: napari.Viewer, image_layer, result, index: tuple = ()):
    """Add (or replace the data of) the Labels layer of patch classes aligned with `image_layer`."""
    from napari.utils.colormaps import DirectLabelColormap

    name = f"{image_layer.name} CNNI-BCC patches"
    features = {
        "index": [1000 + i for i in range(len(result.patches))],  # patch ids, never a class value
        "row": [p["row"] for p in result.patches],
        "col": [p["col"] for p in result.patches],
        "label": [p["label"] for p in result.patches],
        **{cls: [p["probabilities"][cls] for p in result.patches] for cls in result.probabilities},
    }
    metadata = {"kind": "cnni-bcc", "source": image_layer.name, "verdict": result.label,
                "probabilities": result.probabilities, "slice": list(index)}
    ndim = image_layer.data.ndim
    data = result.label_image
    if ndim > 2:
        full = np.zeros(image_layer.data.shape, np.uint8)
        full[index] = data
        data = full
    colormap = DirectLabelColormap(color_dict={**CLASS_COLOURS, None: "transparent"})
    for existing in viewer.layers:
        if existing.name == name and existing.metadata.get("kind") == "cnni-bcc":
            existing.data = data
            existing.features = features
            existing.metadata = metadata
            return existing
    return viewer.add_labels(data, name=name, scale=image_layer.scale, translate=image_layer.translate,
                             rotate=image_layer.rotate, affine=image_layer.affine, units=image_layer.units,
                             opacity=0.4, colormap=colormap, features=features, metadata=metadata)
