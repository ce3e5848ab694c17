"""The Detect widget: IDBLL, or the screening model's tuned cell map, on an image layer (or a drawn region of
it) into an editable Shapes layer.

The threshold slider re-filters the kept detections without running the model again. The
researcher's corrections survive re-filtering: boxes they deleted stay deleted, boxes they
drew (features `id` −1, score 1) stay, and **Save annotations** writes the shown boxes as
lesion circles in a MIAS-style folder that `napari-mammo train detector --data` accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, FloatSlider, Label, PushButton

from napari_mammo.models.idbll.predict import BOX_THRESHOLD
from napari_mammo.plugin.classify_widget import NOTICE, colour_key
from napari_mammo.plugin.companions import (
    DETECTIONS,
    DETECTIONS_KIND,
    Key,
    companion,
    companion_layer,
    pixel_spacing,
)
from napari_mammo.plugin.layers import box_corners, shape_box
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

if TYPE_CHECKING:
    import napari

MODELS = {"screening (tuned cell map)": "screening", "IDBLL (poster's SSD)": "idbll"}
"""The models that give boxes: label in the widget -> name in the weights registry; the first is the default."""
NO_ROI = "whole image"
USER_BOX = {"id": -1, "label": "lesion", "score": 1.0}
"""Features of a box the researcher draws."""
KEEP_FROM = 0.01
"""Detections scoring at least this are kept for the slider to filter."""
MODEL_BOX, USER_BOX_COLOUR = "#ff00ff", "#ffff00"
"""Edge colours: the model's boxes magenta, the researcher's own boxes yellow, whatever the threshold."""


def refilter(layer, threshold: float) -> None:
    """Show the model's detections scoring ≥ threshold, keeping the user's own edits."""
    import pandas as pd

    meta = layer.metadata
    features = layer.features
    ids = list(features["id"]) if "id" in features else []
    deleted = set(meta.get(Key.DELETED, [])) | (set(meta.get(Key.SHOWN_IDS, [])) - set(ids))
    user_shapes = [np.asarray(layer.data[i]) for i, k in enumerate(ids) if k < 0]
    user_rows = features[features["id"] < 0] if len(ids) else None
    shown = [d for d in meta[Key.DETECTIONS] if d["score"] >= threshold and d["id"] not in deleted]
    data = user_shapes + [box_corners(d["box"], tuple(d.get("slice", ()))) for d in shown]
    table = pd.DataFrame({  # explicit types: an empty table must still take a drawn box's defaults
        "id": np.array([*([-1] * len(user_shapes)), *(d["id"] for d in shown)], int),
        "label": np.array([*(user_rows["label"] if user_rows is not None else []), *(d["label"] for d in shown)],
                          object),
        "score": np.array([*(user_rows["score"] if user_rows is not None else []), *(d["score"] for d in shown)],
                          float),
    })
    layer.selected_data = set()
    layer.data = []
    if data:
        layer.add_rectangles(data) if not user_shapes else layer.add(data, shape_type=["rectangle"] * len(data))
    layer.features = table
    layer.feature_defaults = USER_BOX  # napari resets the defaults from the new table's first row
    if len(layer.data):
        layer.edge_color = [USER_BOX_COLOUR if k < 0 else MODEL_BOX for k in table["id"]]
    layer.current_edge_color = USER_BOX_COLOUR
    layer.refresh_text()
    meta.update({Key.DELETED: sorted(deleted), Key.SHOWN_IDS: [d["id"] for d in shown], Key.THRESHOLD: threshold})


def add_detection_layer(viewer: napari.Viewer, image_layer, results: list, threshold: float, model: str = "idbll"):
    """Add or refill the Shapes layer of detections aligned with `image_layer`.

    `results` is a list of (slice index, detections); on a stack the boxes carry their slice,
    and only the slices detected now are replaced (the researcher's drawn boxes stay).
    """
    name = companion(image_layer.name, DETECTIONS)
    layer = companion_layer(viewer, image_layer.name, DETECTIONS, ours=True)
    redone = {tuple(index) for index, _ in results}
    kept = [d for d in layer.metadata.get(Key.DETECTIONS, []) if tuple(d.get("slice", ())) not in redone] \
        if layer is not None and layer.ndim == image_layer.ndim else []
    next_id = max((d["id"] for d in kept), default=-1) + 1
    stored = kept + [{"id": next_id + i, "box": list(d.box), "label": d.label, "score": d.score, "slice": list(index)}
                     for i, (index, d) in enumerate((index, d) for index, dets in results for d in dets)]
    if layer is None or layer.ndim != image_layer.ndim:
        layer = viewer.add_shapes(
            ndim=image_layer.ndim, name=name, scale=image_layer.scale, translate=image_layer.translate,
            units=image_layer.units, face_color="transparent", edge_width=3,
            features={"id": np.zeros(0, int), "label": np.zeros(0, str), "score": np.zeros(0, float)},
            feature_defaults=USER_BOX,
            edge_color=MODEL_BOX,
            text={"string": "{label} {score:.2f}", "color": "white", "size": 9, "anchor": "upper_left"},
        )
        layer.metadata = {Key.KIND: DETECTIONS_KIND, Key.SOURCE: image_layer.name, Key.DELETED: [], Key.SHOWN_IDS: []}
    layer.metadata.update({Key.DETECTIONS: stored, Key.SLICES: sorted({tuple(d["slice"]) for d in stored}),
                           Key.MODEL: model})
    refilter(layer, threshold)
    return layer


def box_count_text(layer, threshold: float) -> str:
    """How many of the model's boxes show at the threshold, and how many boxes are the researcher's."""
    ids = np.asarray(layer.features["id"]) if "id" in layer.features else np.zeros(0, int)
    own = int((ids < 0).sum())
    text = f"{int((ids >= 0).sum())} box(es) at score ≥ {threshold:.2f}"
    return text + (f", {own} of yours" if own else "")


def box_finder(model: str, weights, device: str, layer, roi):
    """A function of a slice's pixels giving a generator of progress events that returns its boxes."""
    from napari_mammo.engine.weights import cached_load

    if model == "idbll":
        from napari_mammo.models.idbll.predict import LesionDetector

        detector = cached_load(weights, "idbll", device, lambda: LesionDetector.load(weights, device))
        return lambda pixels: detector.iter_detect(pixels, pixel_spacing(layer), roi, KEEP_FROM)
    from napari_mammo.models.screener import Screener

    screener = cached_load(weights, "screening", "cpu", lambda: Screener.load(weights))
    return lambda pixels: screening_boxes(screener, pixels, pixel_spacing(layer), roi)


def default_threshold(model: str, weights: Path | None) -> float | None:
    """A model's default box threshold: IDBLL's, or the one the screening weights record; None when the file
    cannot be read yet (the run names it)."""
    if model == "idbll":
        return BOX_THRESHOLD
    from napari_mammo.engine.weights import weights_metadata
    from napari_mammo.errors import MammoInputError
    from napari_mammo.models.screener import box_threshold

    try:
        return box_threshold(weights_metadata(weights, "screening"))
    except (MammoInputError, TypeError, ValueError, AttributeError):
        return None


class SliderDefault:
    """Keeps a threshold slider on the chosen model's default, unless the researcher moved it off the last one."""

    def __init__(self, slider) -> None:
        self.slider, self.last = slider, float(slider.value)

    def follow(self, default: float | None) -> None:
        """A new default (None: unknown, nothing changes)."""
        if default is None:
            return
        if abs(float(self.slider.value) - self.last) < 1e-6:
            self.slider.value = default
        self.last = float(self.slider.value) if abs(float(self.slider.value) - default) < 0.005 else default


def screening_boxes(screener, pixels: np.ndarray, spacing_mm, roi):
    """Generator of progress events returning the screening model's boxes scoring ≥ KEEP_FROM, those centred
    in `roi` when one is given (the map is made from the whole film, as it was trained)."""
    result = yield from screener.iter_screen(pixels, spacing_mm)
    boxes = result.detections(KEEP_FROM)
    if roi is None:
        return boxes
    return [d for d in boxes if roi[0] <= (d.box[0] + d.box[2]) / 2 <= roi[2]
            and roi[1] <= (d.box[1] + d.box[3]) / 2 <= roi[3]]


class DetectWidget(ModelWidget):
    """Choose an image, weights, a threshold and optionally a region; Detect writes editable boxes."""

    idle_text = "Detect"

    @property
    def model_name(self) -> str:
        """The chosen model's name in the weights registry."""
        return MODELS[self.model.value] if hasattr(self, "model") else next(iter(MODELS.values()))

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        viewer = napari_viewer  # napari injects the viewer by this parameter's name
        super().__init__()
        self.viewer = viewer
        self.image = image_box(viewer)
        self.model = ComboBox(label="model", choices=list(MODELS), value=next(iter(MODELS)))
        self.threshold = FloatSlider(label="score threshold", value=BOX_THRESHOLD, min=KEEP_FROM, max=1.0, step=0.01)
        self._default = SliderDefault(self.threshold)
        self.slices = slices_box()
        self.roi = ComboBox(label="region", choices=self._roi_choices)
        self.status = Label(label="status", value="")
        self.notice = Label(value=NOTICE)
        self.key = Label(label="colours", value=colour_key([(MODEL_BOX, "model's boxes"), (USER_BOX_COLOUR, "yours")]))
        self.save_folder = FileEdit(label="annotations", mode="d")
        self.save_button = PushButton(text="Save annotations")
        self.extend([self.notice, self.key, self.image, self.slices, self.model, self.weights, self.weights_file,
                     self.threshold,
                     self.roi, self.device, self.run_button, self.progress, self.status, self.save_folder,
                     self.save_button])
        show_for_stacks(self.image, self.slices)
        caption_stacks(viewer)
        self.explain((self.image, "the image layer to search for lesions"),
                     (self.threshold, "show boxes scoring at least this (the model is not run again); choosing a "
                                      "model or weights sets the model's own default (screening: 1 false positive "
                                      "per image on held-out women)"),
                     (self.roi, "a Shapes layer whose last rectangle limits the search"),
                     (self.model, "the boxes of the screening model's tuned cell map (local maxima, 96x96 pixels "
                                  "at 0.2 mm; the most lesions found in cross-validation), or the poster's IDBLL"),
                     (self.weights, "the shipped weights, weights trained in this session, or a file"),
                     (self.weights_file, "a .safetensors weights file of the chosen model"),
                     (self.slices, "on a stack: the shown slice, or every slice in turn"),
                     (self.device, "where torch runs"),
                     (self.run_button, "run the detector in the background; press again to cancel"),
                     (self.save_folder, "a MIAS-style folder (PGM + Info.txt) for your corrected boxes"),
                     (self.save_button, "write the image and the shown boxes as lesion circles"))
        self.model.changed.connect(self._on_model)
        self._on_model()
        for box in (self.weights, self.weights_file):
            box.changed.connect(self._follow_default_threshold)
        self.threshold.changed.connect(self._on_threshold)
        self.save_button.changed.connect(self.save_annotations)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda _: self.roi.reset_choices())
        remember("detect", {"model": self.model, "weights": self.weights, "weights_file": self.weights_file,
                            "device": self.device, "save_folder": self.save_folder})

    def _on_model(self, _=None) -> None:
        """Offer the chosen model's weights (the screening model runs on the CPU) and its default threshold."""
        self.device.visible = self.model_name == "idbll"
        self.weights.reset_choices()
        self._follow_default_threshold()

    def _follow_default_threshold(self, _=None) -> None:
        """Move the slider to the chosen model's default threshold (see `SliderDefault`)."""
        if hasattr(self, "threshold"):  # the weights box signals before the slider exists
            self._default.follow(default_threshold(self.model_name, self.weights_path()))

    def _roi_choices(self, _=None) -> list:
        """'whole image' or any Shapes layer that is not our output."""
        import napari

        return [(NO_ROI, None)] + [(lay.name, lay) for lay in self.viewer.layers
                                   if isinstance(lay, napari.layers.Shapes)
                                   and lay.metadata.get(Key.KIND) != DETECTIONS_KIND]

    def output_layer(self):
        """This widget's Shapes layer for the chosen image, if any."""
        image = self.image.value
        return companion_layer(self.viewer, image.name, DETECTIONS) if image is not None else None

    def _on_threshold(self, value: float) -> None:
        """Re-filter the shown boxes without running the model, and say how many show."""
        layer = self.output_layer()
        if layer is not None:
            refilter(layer, value)
            self.status.value = box_count_text(layer, value)

    def region(self, image_layer) -> tuple[float, float, float, float] | None:
        """The last rectangle of the chosen region layer, in the image's data pixels."""
        shapes = self.roi.value
        if shapes is None:
            return None
        if not len(shapes.data):
            raise ValueError(f"draw a rectangle in {shapes.name!r} to detect inside it")
        world = np.array([shapes.data_to_world(v) for v in np.asarray(shapes.data[-1])])
        return shape_box([image_layer.world_to_data(w) for w in world])

    def start(self):
        """Detect in a worker thread; returns the worker."""
        from napari.utils.notifications import show_error

        layer = self.image.value
        if layer is None:
            show_error("napari-mammo: open an image layer to detect lesions in")
            return None
        try:
            roi = self.region(layer)
            indices = slice_indices(layer, self.viewer, self.slices.value)
        except ValueError as err:
            show_error(f"napari-mammo: {err}")
            return None
        weights, device, model = self.weights_path(), self.device.value, self.model_name

        def job():
            results, skipped = yield from run_on_slices(layer, indices, box_finder(model, weights, device, layer, roi))
            return layer, results, skipped

        return self.launch(job, lambda value: self._on_result(value, model), self.status, "detection failed",
                           "detecting…")

    def _on_result(self, value, model: str) -> None:
        """Write the detections of `model`."""
        layer, results, skipped = value
        kept = sum(len(dets) for _, dets in results)
        if results:
            out = add_detection_layer(self.viewer, layer, results, self.threshold.value, model)
            where = f" on {len(results)} slices" if len(results) > 1 else ""
            self.status.value = (box_count_text(out, self.threshold.value) + f"{where} ({kept} kept)"
                                 + describe_skipped(skipped))
        else:
            self.status.value = "nothing detected" + describe_skipped(skipped)

    def save_annotations(self, _=None) -> Path | None:
        """Write the image and its shown boxes (as lesion circles) into the chosen MIAS-style folder."""
        from napari.utils.notifications import show_error, show_info

        from napari_mammo.plugin.annotations import save_image_annotations

        layer = self.output_layer()
        if layer is None:
            show_error("napari-mammo: run Detect first (or draw boxes), then save")
            return None
        try:
            path = save_image_annotations(self.image.value, layer, Path(self.save_folder.value))
        except (ValueError, OSError) as err:
            show_error(f"napari-mammo: could not save annotations: {err}")
            return None
        show_info(f"napari-mammo: annotations saved in {path}")
        return path
