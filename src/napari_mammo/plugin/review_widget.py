"""The Review widget: predictions beside the ground truth, for the open image and for a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, FileEdit, FloatSlider, Label, PushButton, Table

from napari_mammo.evaluation.detector import match_lesions
from napari_mammo.evaluation.plots import draw_review
from napari_mammo.evaluation.review import Prediction, iter_predict_folder, iter_screen_folder, review_predictions
from napari_mammo.models.idbll.predict import BOX_THRESHOLD, Detection
from napari_mammo.plugin.classify_widget import verdict_on
from napari_mammo.plugin.companions import (
    DETECTIONS,
    LESIONS,
    MISSED,
    PATCHES,
    Key,
    companion,
    companion_layer,
)
from napari_mammo.plugin.detect_widget import SliderDefault, default_threshold
from napari_mammo.plugin.layers import shape_box
from napari_mammo.plugin.slices import image_box, on_slice, shown_index
from napari_mammo.plugin.weights_registry import REGISTRY, SHIPPED, follow_registry
from napari_mammo.plugin.widget_settings import remember
from napari_mammo.plugin.worker_widget import WorkerWidget, add_qt_widget

if TYPE_CHECKING:
    import napari

HIT, FALSE_POSITIVE = "#30ff30", "#ff3030"
COLUMNS = ("image", "truth", "verdict", "abnormality", "best box", "found", "lesions", "false positives", "films")
MODELS = {"screening (verdict and boxes)": "screening", "poster (CNNI-BCC verdict, IDBLL boxes)": "poster"}
"""The Review widget's model choices."""
MODEL_NAMES = {"screening": "screening", "cnni-bcc": "CNNI-BCC"}
"""How the verdict's model is named in the summary (layers from before the model was recorded: CNNI-BCC)."""


def compare_open_image(viewer: napari.Viewer, image) -> dict:
    """Colour the image's detection boxes as hits or false positives and mark missed lesions.

    Needs the '<image> lesions' ground truth (from the reader) and the '<image> detections'
    layer (from Detect, either model); Classify's verdict (and its model) is read from the
    '<image> patch classes' layer when present. On a stack, the shown slice is compared.
    Returns the counts.
    """
    from napari.utils.colormaps.standardize_color import transform_color

    image_name = image.name
    truth_layer = companion_layer(viewer, image_name, LESIONS)
    boxes_layer = companion_layer(viewer, image_name, DETECTIONS)
    if boxes_layer is None:
        raise ValueError(f"run Detect on {image_name!r} first")
    if truth_layer is None and not (image.metadata.get(Key.LABEL) or image.metadata.get(Key.LABELS)):
        raise ValueError(f"{image_name!r} has no ground truth: open it from a folder with its Info.txt")
    index = shown_index(image, viewer)
    truth = [i for i, v in enumerate(truth_layer.data) if on_slice(v, index)] if truth_layer is not None else []
    boxes = [i for i, v in enumerate(boxes_layer.data) if on_slice(v, index)]
    record = truth_record(truth_layer, image_name, truth)
    detections = [Detection(shape_box(boxes_layer.data[i]), "lesion", 1.0) for i in boxes]
    hit, found = match_lesions(detections, record)
    if boxes:
        colours = np.array(boxes_layer.edge_color)
        colours[boxes] = [transform_color(HIT if h else FALSE_POSITIVE)[0] for h in hit]
        boxes_layer.edge_color = colours
    located = [les for les in record.lesions if les.located]
    missed = np.array([[*index, les.row, les.col] for les, f in zip(located, found, strict=True) if not f])
    missed = missed.reshape(-1, image.ndim)
    name = companion(image_name, MISSED)
    points = companion_layer(viewer, image_name, MISSED)
    if points is not None and points.ndim == image.ndim:
        others = [p for p in np.asarray(points.data) if not on_slice(p[None], index)]
        points.data = np.vstack([*others, missed]) if others else missed
    else:
        if points is not None:
            viewer.layers.remove(points)
        points = viewer.add_points(missed, ndim=image.ndim, name=name, symbol="x", size=40,
                                   border_color=FALSE_POSITIVE, face_color=FALSE_POSITIVE, scale=image.scale,
                                   translate=image.translate, units=image.units)
    labels = companion_layer(viewer, image_name, PATCHES)
    verdict = verdict_on(labels, index) if labels is not None else None
    return {"hits": int(hit.sum()), "false_positives": int((~hit).sum()), "missed": len(missed),
            "lesions": len(located), "verdict": verdict["label"] if verdict else None,
            "verdict_model": MODEL_NAMES.get(verdict.get("model", "cnni-bcc"), "") if verdict else None,
            "truth": _truth_label(image, record, index)}


def _truth_label(image, record, index: tuple) -> str:
    """The image's true label: from the reader's metadata (per slice on a stack), else from its lesions."""
    labels = image.metadata.get(Key.LABELS)
    if index and labels:
        return labels[index[-1]]
    return image.metadata.get(Key.LABEL) or record.label


def truth_record(truth_layer, ref: str, shape_indices: list[int] | None = None):
    """The ground-truth record of an image from (some of) its lesion Shapes."""
    from napari_mammo.plugin.annotations import shapes_to_lesions
    from napari_mammo.records import Mammogram

    if truth_layer is None:  # an image the reader found no lesion circles for
        return Mammogram(ref, "")
    return Mammogram(ref, "", tuple(shapes_to_lesions(truth_layer, shape_indices)))


class ReviewWidget(WorkerWidget):
    """Compare the open image's predictions with its truth, or review a whole labelled folder."""

    idle_text = "Review folder"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        viewer = napari_viewer  # napari injects the viewer by this parameter's name
        super().__init__()
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = viewer
        self.image = image_box(viewer)
        self.compare_button = PushButton(text="Compare open image with truth")
        self.image_summary = Label(label="this image", value="")
        self.folder = FileEdit(label="folder", mode="d")
        self.models = ComboBox(label="model", choices=list(MODELS), value=next(iter(MODELS)))
        self.screening_weights = ComboBox(label="screening weights", choices=lambda _: REGISTRY.choices("screening"))
        self.classifier_weights = ComboBox(label="CNNI-BCC weights", choices=lambda _: REGISTRY.choices("cnni-bcc"))
        self.detector_weights = ComboBox(label="IDBLL weights", choices=lambda _: REGISTRY.choices("idbll"))
        self.threshold = FloatSlider(label="box threshold", value=BOX_THRESHOLD, min=0.01, max=1.0, step=0.01)
        self._default = SliderDefault(self.threshold)
        self.table = Table(value={"data": [], "index": [], "columns": list(COLUMNS)})
        self.table.native.setSortingEnabled(True)
        self.table.native.setMinimumHeight(260)  # about ten rows
        self.table.native.horizontalHeader().setSectionResizeMode(
            self.table.native.horizontalHeader().ResizeMode.ResizeToContents)
        self.summary = Label(label="folder", value="")
        self.figure = Figure(figsize=(6, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.extend([self.image, self.compare_button, self.image_summary, self.folder, self.models,
                     self.screening_weights, self.classifier_weights, self.detector_weights, self.threshold,
                     self.run_button, self.progress, self.summary])
        add_qt_widget(self, self.canvas)
        self.append(self.table)
        self.explain((self.image, "the open image whose boxes to compare with its ground truth"),
                     (self.compare_button, "colour the boxes as hits (green) or false positives (red) and "
                                           "mark the missed lesions"),
                     (self.folder, "a labelled MIAS-style folder to review as a whole"),
                     (self.models, "the screening model's verdicts and boxes (with the woman's other film when "
                                   "it is in the folder), or the poster's CNNI-BCC verdicts and IDBLL boxes"),
                     (self.screening_weights, "screening weights for the verdicts and boxes"),
                     (self.classifier_weights, "CNNI-BCC weights for the verdicts"),
                     (self.detector_weights, "IDBLL weights for the boxes"),
                     (self.threshold, "box score threshold: moving it re-reviews without running the models; "
                                      "choosing a model or weights sets the model's own default"),
                     (self.run_button, "run the model(s) on every image of the folder; press again to "
                                       "cancel"))
        self.models.changed.connect(self._show_weights)
        self._show_weights()
        self.screening_weights.changed.connect(self._follow_default_threshold)
        self.compare_button.changed.connect(self.compare)
        self.threshold.changed.connect(lambda _: self._show())
        self.table.native.cellDoubleClicked.connect(self._open_row)
        follow_registry(self, [self.screening_weights, self.classifier_weights, self.detector_weights])
        remember("review", {"folder": self.folder, "models": self.models, "screening_weights": self.screening_weights,
                            "classifier_weights": self.classifier_weights, "detector_weights": self.detector_weights})
        self.reviewed_model = MODELS[self.models.value]
        self.paths: dict[str, str] = {}
        self.predictions: list[Prediction] = []
        self.skipped: list[str] = []
        self._opened: list = []
        self.reviews: list = []
        self.report: dict = {}

    def _show_weights(self, _=None) -> None:
        """Show the weights the chosen model reads."""
        screening = MODELS[self.models.value] == "screening"
        self.screening_weights.visible = screening
        self.classifier_weights.visible = self.detector_weights.visible = not screening
        self._follow_default_threshold()

    def _follow_default_threshold(self, _=None) -> None:
        """Move the slider to the chosen model's default box threshold (see `SliderDefault`)."""
        if MODELS[self.models.value] == "poster":
            self._default.follow(BOX_THRESHOLD)
        else:
            weights = self.screening_weights.value
            self._default.follow(default_threshold("screening", None if weights in (None, SHIPPED) else Path(weights)))

    def compare(self, _=None) -> dict | None:
        """Compare the chosen image's predictions with its truth."""
        from napari.utils.notifications import show_error

        if self.image.value is None:
            show_error("napari-mammo: open an image, run Detect on it, then compare")
            return None
        try:
            counts = compare_open_image(self.viewer, self.image.value)
        except (ValueError, KeyError) as err:
            show_error(f"napari-mammo: {err}")
            return None
        verdict = (f"; {counts['verdict_model']} {counts['verdict']} (truth {counts['truth']})"
                   if counts["verdict"] else "")
        self.image_summary.value = (f"{counts['hits']} hit(s), {counts['false_positives']} false positive(s), "
                                    f"{counts['missed']} of {counts['lesions']} lesion(s) missed{verdict}")
        return counts

    def start(self):
        """Screen (or classify and detect) every image of the folder in a worker; fills the table and the plots."""
        from napari.utils.notifications import show_error

        from napari_mammo.errors import MammoInputError
        from napari_mammo.io.mias import read_folder
        from napari_mammo.models.cnni_bcc.predict import PatchClassifier
        from napari_mammo.models.idbll.predict import LesionDetector
        from napari_mammo.models.screener import Screener

        if not self.folder.value or not Path(self.folder.value).is_dir():
            show_error("napari-mammo: choose a MIAS-style folder (images + Info.txt) to review")
            return None
        try:
            records = read_folder(Path(self.folder.value))
        except MammoInputError as err:
            show_error(f"napari-mammo: {err}")
            return None
        if not records:
            show_error(f"napari-mammo: {self.folder.value}: no labelled images to review")
            return None
        model = MODELS[self.models.value]
        weights = [None if w == SHIPPED else w for w in (self.classifier_weights.value, self.detector_weights.value,
                                                         self.screening_weights.value)]

        def job():
            from napari_mammo.engine.weights import cached_load

            if model == "screening":
                screener = cached_load(weights[2], "screening", "cpu", lambda: Screener.load(weights[2]))
                return (yield from iter_screen_folder(records, screener))
            classifier = cached_load(weights[0], "cnni-bcc", "auto", lambda: PatchClassifier.load(weights[0]))
            detector = cached_load(weights[1], "idbll", "auto", lambda: LesionDetector.load(weights[1]))
            return (yield from iter_predict_folder(records, classifier, detector))

        return self.launch(job, lambda value: self._on_predictions(value, model), self.summary, "review failed",
                           "reviewing…")

    def _on_predictions(self, value: tuple[list[Prediction], list[str]], model: str) -> None:
        """Keep the predictions (of `model`) and show them; say which images were skipped."""
        from napari.utils.notifications import show_warning

        self.predictions, self.skipped = value
        self.reviewed_model = model
        for message in self.skipped:
            show_warning(f"napari-mammo: skipped {message}")
        if not self.predictions:
            self.summary.value = f"no image could be reviewed ({len(self.skipped)} skipped)"
        self._show()

    def _show(self) -> None:
        """Fill the table (most suspicious first), the summary and the plots at the current box threshold."""
        if not self.predictions:
            return
        self.reviews, self.report = review_predictions(self.predictions, self.threshold.value)
        self.paths = {r.ref: r.path for r in self.reviews}
        self.table.native.setSortingEnabled(False)
        self.table.value = {"data": [[r.ref, r.truth, r.verdict, round(r.abnormality, 3), round(r.best_box, 3),
                                      r.found, r.lesions, r.false_positives, r.films] for r in self.reviews],
                            "index": list(range(1, len(self.reviews) + 1)), "columns": list(COLUMNS)}
        self.table.native.setSortingEnabled(True)
        s = self.report
        self.summary.value = (f"{s['images']} images: lesion sensitivity {s['sensitivity']:.2f} at "
                              f"{s['fp_per_image']:.2f} FP/image (boxes ≥ {s['threshold']:.2f}); "
                              f"verdict accuracy {s['accuracy']:.2f}; AUC {s['auc_normal_vs_abnormal']:.2f}"
                              + (f"; {len(self.skipped)} image(s) skipped" if self.skipped else ""))
        draw_review(self.figure, s)
        self.canvas.draw_idle()

    def _open_row(self, row: int, _column: int = 0) -> None:
        """Open a table row's image with its ground truth and its reviewed boxes, hits and misses marked."""
        from napari_mammo.plugin.detect_widget import add_detection_layer

        ref = self.table.native.item(row, 0).text()
        for layer in self._opened:  # the layers the previous row opened make way (never the user's own)
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        before = set(map(id, self.viewer.layers))
        layers = self.viewer.open(self.paths[ref], plugin="napari-mammo")
        self.viewer.reset_view()
        prediction = next((p for p in self.predictions if p.record.ref == ref), None)
        if not layers or prediction is None:
            return
        screening = self.reviewed_model == "screening"
        add_detection_layer(self.viewer, layers[0], [((), prediction.detections)], self.threshold.value,
                            "screening" if screening else "idbll")
        self.image.reset_choices()
        self.image.value = layers[0]
        counts = self.compare()
        self._opened = [layer for layer in self.viewer.layers if id(layer) not in before]
        if counts is not None:
            verdict = "screening" if screening else "CNNI-BCC"
            self.image_summary.value += f"; {verdict} {prediction.verdict} (truth {prediction.record.label})"
