"""The main job on the embedded default: the shipped weights on the bundled sample.

With a display it opens napari with the image, the patch-class Labels layer, the detection
Shapes layer and the ground truth; without one (or with --headless) it draws the same view
into a PNG with matplotlib and writes a JSON report beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from napari_mammo.io.image_data import ImageData
from napari_mammo.io.images import read_image
from napari_mammo.plugin.companions import LESIONS, companion
from napari_mammo.records import MIAS_PIXEL_MM, Mammogram

NOTICE = "research use only, not for diagnosis"


def demo_image() -> tuple[ImageData, Mammogram, str]:
    """A mini-MIAS image with a lesion that the shipped screening model was not fitted on when NAPARI_MAMMO_MIAS is
    set, else the synthetic sample.

    Says on stderr which image it shows and why, when the folder lacks what it looks for.
    """
    import sys

    folder = os.environ.get("NAPARI_MAMMO_MIAS")
    if folder and Path(folder, "Info.txt").is_file():
        from napari_mammo.engine.weights import weights_metadata
        from napari_mammo.io.mias import read_folder

        records = read_folder(folder)
        seen = set(weights_metadata(None, "screening")["trained_on"])
        chosen = next((r for r in records if r.ref not in seen and any(les.located for les in r.lesions)), None)
        if chosen is None:
            chosen = next((r for r in records if any(les.located for les in r.lesions)), records[0])
            print(f"napari-mammo: the shipped screening model was fitted on every image with a lesion in {folder}; "
                  f"showing {chosen.ref} ({chosen.label}), which it has seen", file=sys.stderr)
        return read_image(chosen.path), chosen, f"mini-MIAS {chosen.ref}"
    from napari_mammo.io.synthetic import sample_mammogram

    pixels, record = sample_mammogram()
    spacing = (MIAS_PIXEL_MM, MIAS_PIXEL_MM)
    return ImageData(pixels, spacing, Path("synthetic"), {"format": "synthetic"}), record, "synthetic sample"


def partner_path(image: ImageData) -> Path | None:
    """The woman's other film beside a mini-MIAS image file, if it is there."""
    from napari_mammo.models.screener import partner_file

    return partner_file(image.source) if Path(image.source).is_file() else None


def other_film(image: ImageData) -> tuple[np.ndarray, tuple[float, float] | None] | None:
    """The pixels and pixel size of the woman's other film, if it is beside the image."""
    partner = partner_path(image)
    if partner is None:
        return None
    other = read_image(partner)
    return other.pixels, other.spacing_mm


def run_models(image: ImageData):
    """Screening with the shipped weights (with the other film when it is beside the image): its verdict, and
    its boxes at its own default threshold (Detect's default)."""
    from napari_mammo.models.screener import Screener

    screener = Screener.load()
    classification = screener.screen(image.pixels, image.spacing_mm, other_film(image))
    return classification, classification.detections(screener.box_threshold), screener.box_threshold


def report(image: ImageData, record: Mammogram, source: str, classification, detections, threshold: float) -> dict:
    """The JSON report of the demo."""
    return {
        "image": source,
        "shape": list(image.pixels.shape),
        "truth": {"label": record.label, "lesions": [
            {"class": les.abnormality, "severity": les.severity, "row": les.row, "col": les.col,
             "radius": les.radius} for les in record.lesions]},
        "classification": classification.to_json(source),
        "detections": [d.to_json() for d in detections],
        "box_threshold": threshold,
    }


def draw_png(image: ImageData, record: Mammogram, classification, detections, path: Path, title: str) -> Path:
    """The demo view as a PNG: the image, patch classes, detection boxes and ground-truth circles."""
    from matplotlib.patches import Circle, Rectangle

    from napari_mammo.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(image.pixels, cmap="gray")
    colours = np.array([[0, 0, 0, 0], [0.17, 0.63, 0.17, 0.35], [1, 0.75, 0, 0.35], [0.84, 0.15, 0.16, 0.35]])
    ax.imshow(colours[classification.label_image])
    for det in detections:
        r0, c0, r1, c1 = det.box
        ax.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, fill=False, edgecolor="#ff00ff", lw=1.5))
        ax.text(c0, r0 - 4, f"lesion {det.score:.2f}", color="#ff00ff", fontsize=7)
    for les in record.lesions:
        if les.located:
            ax.add_patch(Circle((les.col, les.row), les.radius, fill=False, edgecolor="#ff3030", lw=1.5, ls="--"))
    probs = ", ".join(f"{k} {v:.2f}" for k, v in classification.probabilities.items())
    ax.set_title(f"{title}: truth {record.label}; screening {classification.label} ({probs})\n"
                 "patches green/amber/red = normal/benign/malignant; magenta boxes screening; dashed red circles "
                 f"truth; {NOTICE}", fontsize=8)
    ax.set_axis_off()
    return save_figure(fig, path)


def open_in_napari(image: ImageData, record: Mammogram, classification, detections, title: str, threshold: float,
                   screenshot: Path | None = None) -> Path | None:
    """Show the demo in napari and run its event loop; or, given `screenshot`, save the window as PNG and close."""
    import napari

    from napari_mammo.plugin.classify_widget import add_classification_layer, add_heatmap_layer, verdict_text
    from napari_mammo.plugin.detect_widget import add_detection_layer, box_count_text
    from napari_mammo.plugin.layers import image_layer, lesion_shapes

    viewer = napari.Viewer(title=f"napari-mammo demo: {title}")
    data, kwargs, _ = image_layer(image, name=title)
    layer = viewer.add_image(data, **kwargs)
    add_classification_layer(viewer, layer, [((), classification)])
    add_heatmap_layer(viewer, layer, [((), classification)])
    boxes = add_detection_layer(viewer, layer, [((), detections)], threshold, "screening")
    truth = lesion_shapes([record], image.spacing_mm, companion(title, LESIONS))
    if truth is not None:
        viewer.add_shapes(truth[0], **truth[1])
    partner, other_layer = partner_path(image), None
    if getattr(classification, "both_breasts", False) and partner is not None:
        # the other film the screening used, hidden, so the widget shows what the verdict says
        other = read_image(partner)
        other_data, other_kwargs, _ = image_layer(other, name=f"{partner.stem} (other film)")
        other_layer = viewer.add_image(other_data, **{**other_kwargs, "visible": False})
    _, classify = viewer.window.add_plugin_dock_widget("napari-mammo", "Classify (screening, CNNI-BCC)")
    classify.image.value = layer
    if partner is not None and other_layer in classify.other.choices:
        classify.other.value = other_layer
    classify.verdict.value = verdict_text(classification)
    _, detect = viewer.window.add_plugin_dock_widget("napari-mammo", "Detect lesions (screening, IDBLL)")
    detect.image.value = layer
    detect.threshold.value = threshold
    detect.status.value = box_count_text(boxes, threshold)
    viewer.layers.selection.active = layer
    if screenshot is None:
        napari.run()
        return None
    viewer.window.resize(1400, 900)
    return save_window(viewer, screenshot)


def save_window(viewer, path: Path) -> Path:
    """Write a screenshot of the whole napari window as PNG (atomically) and close the viewer."""
    import io

    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from napari_mammo.io.atomic import atomic_write_bytes

    for _ in range(5):
        QApplication.processEvents()
    viewer.reset_view()
    QApplication.processEvents()
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., :3]).save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(path, buffer.getvalue())
    viewer.close()
    return Path(path)


def run_demo(out: Path, headless: bool, screenshot: Path | None = None) -> dict:
    """Run the demo; returns the report (and the paths written when headless or taking a screenshot)."""
    image, record, title = demo_image()
    classification, detections, threshold = run_models(image)
    result = report(image, record, title, classification, detections, threshold)
    if headless:
        out.mkdir(parents=True, exist_ok=True)
        png = draw_png(image, record, classification, detections, out / "demo.png", title)
        from napari_mammo.io.atomic import atomic_write_bytes

        atomic_write_bytes(out / "demo.json", json.dumps(result, indent=2).encode())
        result["files"] = {"png": str(png), "json": str(out / "demo.json")}
    else:
        shot = open_in_napari(image, record, classification, detections, title, threshold, screenshot)
        if shot is not None:
            result["files"] = {"png": str(shot)}
    return result
