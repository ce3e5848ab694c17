"""The Classify widget: the screening model or CNNI-BCC on an image layer, off the GUI thread, into layers."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Label

from napari_mammo.plugin.companions import (
    PATCHES,
    PATCHES_KIND,
    SUSPICION,
    SUSPICION_KIND,
    Key,
    companion,
    companion_layer,
    image_layers,
    pixel_spacing,
    slice_refs,
)
from napari_mammo.plugin.slice_caption import caption_stacks
from napari_mammo.plugin.slices import (
    describe_skipped,
    image_box,
    run_on_slices,
    show_for_stacks,
    slice_indices,
    slices_box,
)
from napari_mammo.plugin.widget_settings import remember
from napari_mammo.plugin.worker_widget import ModelWidget
from napari_mammo.records import CLASS_NAMES, partner_of

if TYPE_CHECKING:
    import napari

MODELS = {"screening (pretrained backbone, both breasts)": "screening", "CNNI-BCC (poster)": "cnni-bcc"}
NO_OTHER = "none: this film only"
NOTICE = "Research use only, not for diagnosis."
CLASS_COLOURS = {0: "transparent", 1: "#2ca02c", 2: "#ffbf00", 3: "#d62728"}
PATCH_ID = 1000
"""Patches are labelled by ids from here on (their feature rows' `index`); the colour map gives each its
class colour, and hovering shows its class and probabilities."""


class ClassifyWidget(ModelWidget):
    """Choose an image, a model, weights and device; Classify writes a Labels layer of patch classes
    (and, for the screening model, a suspicion heatmap)."""

    idle_text = "Classify"

    @property
    def model_name(self) -> str:
        """The chosen model's name in the weights registry."""
        return MODELS[self.model.value] if hasattr(self, "model") else "screening"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        viewer = napari_viewer  # napari injects the viewer by this parameter's name
        super().__init__()
        self.viewer = viewer
        self.image = image_box(viewer)
        self.slices = slices_box()
        self.model = ComboBox(label="model", choices=list(MODELS), value=next(iter(MODELS)))
        self.other = ComboBox(label="other film", choices=self._other_choices)
        self.patches = ComboBox(label="patches", choices=["breast", "all", "middle"], value="breast", visible=False)
        self.verdict = Label(label="verdict", value="")
        self.verdict.native.setWordWrap(True)
        self.notice = Label(value=NOTICE)
        self.key = Label(label="colours", value=colour_key(
            [(CLASS_COLOURS[1], "normal"), (CLASS_COLOURS[2], "benign"), (CLASS_COLOURS[3], "malignant")]))
        self.extend([self.notice, self.key, self.image, self.slices, self.model, self.other, self.weights,
                     self.weights_file, self.device, self.patches, self.run_button, self.progress, self.verdict])
        show_for_stacks(self.image, self.slices)
        caption_stacks(viewer)
        self.explain((self.image, "the image layer to classify"),
                     (self.slices, "on a stack: the shown slice, or every slice in turn"),
                     (self.model, "the screening model on the pretrained backbone (cross-validated AUC 0.75), "
                                  "or the poster's CNNI-BCC"),
                     (self.other, "the same woman's other breast, same view: compared with this one"),
                     (self.weights, "the shipped weights, weights trained in this session, or a file"),
                     (self.weights_file, "a .safetensors weights file of the chosen model"),
                     (self.device, "where torch runs"),
                     (self.patches, "CNNI-BCC: which 128x128 patches to classify"),
                     (self.run_button, "run the model in the background; press again to cancel"))
        self.model.changed.connect(self._on_model)
        self._on_model()
        self.image.changed.connect(self._pick_partner)
        self._pick_partner()
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        remember("classify", {"model": self.model, "weights": self.weights, "weights_file": self.weights_file,
                              "device": self.device, "patches": self.patches})

    def _other_choices(self, _=None) -> list:
        """The woman's other film: none, or another open 2-D image layer."""
        return [(NO_OTHER, None)] + [(layer.name, layer) for layer in image_layers(self.viewer)
                                     if layer is not self.image.value and layer.data.ndim == 2]

    def _refresh(self, _=None) -> None:
        """Refresh the partner choices when layers come and go."""
        self.other.reset_choices()
        self._pick_partner()

    def _on_model(self, _=None) -> None:
        """Show the chosen model's own settings and weights."""
        screening = self.model_name == "screening"
        self.other.visible = screening
        self.patches.visible = not screening
        self.device.visible = not screening  # the screening model runs on the CPU (its heads are numpy)
        self.weights.reset_choices()

    def _pick_partner(self, _=None) -> None:
        """Choose the MIAS partner of the chosen image (mdb001 ↔ mdb002) when it is open."""
        self.other.reset_choices()
        image = self.image.value
        self.other.value = partner_layer(image, [c for c in self.other.choices if c is not None]) \
            if image is not None else None

    def start(self):
        """Classify the chosen image layer (the shown slice or every slice) in a worker thread."""
        from napari.utils.notifications import show_error

        layer = self.image.value
        if layer is None:
            show_error("napari-mammo: open an image layer to classify")
            return None
        try:
            indices = slice_indices(layer, self.viewer, self.slices.value)
        except ValueError as err:
            show_error(f"napari-mammo: {err}")
            return None
        weights, device, selection = self.weights_path(), self.device.value, self.patches.value
        if self.model_name == "screening":
            other = None
            other_layer = self.other.value
            if other_layer is not None and layer.data.ndim == 2:
                other = (np.asarray(other_layer.data), pixel_spacing(other_layer))

            def job():
                from napari_mammo.engine.weights import cached_load
                from napari_mammo.models.screener import Screener, check_partner, check_views

                screener = cached_load(weights, "screening", "cpu", lambda: Screener.load(weights))
                if other is not None:
                    check_views(layer.metadata, other_layer.metadata, other_layer.name)
                    check_partner(layer.data.shape, pixel_spacing(layer), other[0].shape, other[1], other_layer.name)
                results, skipped = yield from run_on_slices(
                    layer, indices, lambda pixels: screener.iter_screen(pixels, pixel_spacing(layer), other))
                return layer, results, skipped
        else:
            def job():
                from napari_mammo.engine.weights import cached_load
                from napari_mammo.models.cnni_bcc.predict import PatchClassifier

                classifier = cached_load(weights, "cnni-bcc", device, lambda: PatchClassifier.load(weights, device))
                results, skipped = yield from run_on_slices(
                    layer, indices, lambda pixels: classifier.iter_classify(pixels, pixel_spacing(layer), selection))
                return layer, results, skipped

        return self.launch(job, self._on_result, self.verdict, "classification failed", "classifying…")

    def _on_result(self, value) -> None:
        """Write or update this widget's Labels layer for the image and show the verdict(s)."""
        layer, results, skipped = value
        if not results:
            self.verdict.value = "nothing classified" + describe_skipped(skipped)
            return
        add_classification_layer(self.viewer, layer, results)
        colour = CLASS_COLOURS[1 + CLASS_NAMES.index(results[-1][1].label)]
        self.verdict.native.setStyleSheet(f"font-weight: bold; font-size: 14px; color: {colour}")
        if hasattr(results[0][1], "heatmap"):
            add_heatmap_layer(self.viewer, layer, results)
        if len(results) == 1:
            index, result = results[0]
            refs = slice_refs(layer)
            where = f"{refs[index[0]]}: " if len(index) == 1 and index[0] < len(refs) else ""
            self.verdict.value = where + verdict_text(result) + describe_skipped(skipped)
        else:
            counts = Counter(result.label for _, result in results)
            self.verdict.value = (f"{len(results)} slices: " + ", ".join(f"{n} {label}" for label, n in
                                                                           counts.most_common())
                                  + describe_skipped(skipped))


def partner_layer(image, candidates: list):
    """The open layer that is the same woman's other breast: by MIAS numbering (mdb001 ↔ mdb002), or by the
    DICOM PatientID and ViewPosition with the other ImageLaterality."""
    name = partner_of(image.name)
    named = next((layer for layer in candidates if name and layer.name == name), None)
    if named is not None:
        return named
    from napari_mammo.io.dicom import is_other_breast

    return next((layer for layer in candidates if is_other_breast(image.metadata, layer.metadata)), None)


def colour_key(entries: list[tuple[str, str]]) -> str:
    """Rich text: a coloured square before each name (a Label shows it as a legend)."""
    return " ".join(f'<span style="color:{colour}">■</span> {name}' for colour, name in entries)


def verdict_text(result) -> str:
    """A classification's verdict and probabilities in one line (for screening: the films it used)."""
    probs = ", ".join(f"{name} {p:.2f}" for name, p in result.probabilities.items())
    if hasattr(result, "both_breasts"):
        films = "both films" if result.both_breasts else "this film only"
        return f"{result.label} ({probs}; abnormal at p ≥ {result.threshold:.2f}; {films})"
    return f"{result.label} ({probs})"


def add_heatmap_layer(viewer: napari.Viewer, image_layer, results: list):
    """Add or update the suspicion heatmap (cell scores, stride ≤ 32 px) aligned with `image_layer`."""
    name = companion(image_layer.name, SUSPICION)
    first = results[0][1]
    lead = image_layer.data.shape[:-2]
    shape = (*lead, *first.heatmap.shape)
    layer = companion_layer(viewer, image_layer.name, SUSPICION, ours=True)
    data = np.array(layer.data) if layer is not None and layer.data.shape == shape else np.zeros(shape, np.float32)
    for index, result in results:
        if result.heatmap.shape == first.heatmap.shape:
            data[index] = result.heatmap
    stride = first.heatmap_stride
    scale = np.array(image_layer.scale, float)
    heat_scale = scale.copy()
    heat_scale[-2:] *= stride
    translate = np.array(image_layer.translate, float)
    translate[-2:] += (stride / 2 - 0.5) * scale[-2:]  # cell centres over the pixels they cover
    if layer is not None:
        layer.data = data
        return layer
    layer = viewer.add_image(data, name=name, scale=heat_scale, translate=translate, units=image_layer.units,
                             colormap="inferno", contrast_limits=(0.0, 1.0), opacity=0.45, blending="additive",
                             metadata={Key.KIND: SUSPICION_KIND, Key.SOURCE: image_layer.name})
    layer.colorbar.visible = True
    return layer


def _slice_key(index: tuple) -> str:
    """A slice index as a metadata key ('' for a 2-D image)."""
    return ",".join(map(str, index))


def add_classification_layer(viewer: napari.Viewer, image_layer, results: list):
    """Add or update the Labels layer of patch classes aligned with `image_layer`.

    `results` is a list of (slice index, Classification), the index () for a 2-D image. On a
    stack, only the slices classified now change; the others keep their earlier results.
    """
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    name = companion(image_layer.name, PATCHES)
    layer = companion_layer(viewer, image_layer.name, PATCHES, ours=True)
    data = np.array(layer.data, np.int32) if layer is not None and layer.data.shape == image_layer.data.shape \
        else np.zeros(image_layer.data.shape, np.int32)
    old = layer.features if layer is not None and "slice" in layer.features.columns else None
    if old is not None and image_layer.data.ndim > 2:
        redone = {_slice_key(index) for index, _ in results}
        old = old[~old["slice"].isin(redone)]
    else:
        old = None
    verdicts = dict(layer.metadata.get(Key.VERDICTS, {})) if layer is not None else {}
    next_id = int(old["index"].max()) + 1 if old is not None and len(old) else PATCH_ID
    rows = []
    for index, result in results:
        # each pixel holds its patch's feature id, so napari shows that patch's class and probabilities
        data[index] = np.where(result.patch_image > 0, next_id + result.patch_image - 1, 0)
        verdicts[_slice_key(index)] = {"label": result.label, "probabilities": result.probabilities,
                                       "model": result.model}
        rows += [{"index": next_id + k, "slice": _slice_key(index), "row": p["row"], "col": p["col"],
                  "label": p["label"], **p["probabilities"]} for k, p in enumerate(result.patches)]
        next_id += len(result.patches)
    features = pd.DataFrame(rows)
    if old is not None:
        features = pd.concat([old, features], ignore_index=True)
    colours = {int(i): CLASS_COLOURS[1 + CLASS_NAMES.index(label)]
               for i, label in zip(features["index"], features["label"], strict=True)}
    colormap = DirectLabelColormap(color_dict={**colours, 0: "transparent", None: "transparent"})
    last_index, last = results[-1]
    metadata = {Key.KIND: PATCHES_KIND, Key.SOURCE: image_layer.name, Key.VERDICT: last.label,
                Key.PROBABILITIES: last.probabilities, Key.SLICE: list(last_index), Key.VERDICTS: verdicts}
    if layer is not None:
        layer.data = data
        layer.features = features
        layer.colormap = colormap
        layer.metadata = metadata
        return layer
    return viewer.add_labels(data, name=name, scale=image_layer.scale, translate=image_layer.translate,
                             rotate=image_layer.rotate, affine=image_layer.affine, units=image_layer.units,
                             opacity=0.4, colormap=colormap, features=features, metadata=metadata)


def verdict_on(labels_layer, index: tuple) -> dict | None:
    """The classification verdict ({'label', 'probabilities'}) stored for a slice, if any."""
    return labels_layer.metadata.get(Key.VERDICTS, {}).get(_slice_key(index))

