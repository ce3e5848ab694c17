"""The plugin as a napari user meets it: the Plugins menu, File ▸ Open Sample, File ▸ Open."""

import numpy as np
import pytest
from npe2 import PluginManifest

from conftest import WIDGETS, use_weights_file
from napari_mammo.plugin.classify_widget import ClassifyWidget
from napari_mammo.plugin.detect_widget import DetectWidget
from napari_mammo.plugin.review_widget import ReviewWidget
from napari_mammo.plugin.train_widget import TrainWidget

WIDGET_TYPES = {"classify": ClassifyWidget, "detect": DetectWidget, "review": ReviewWidget, "train": TrainWidget}


def _menu_actions(menu) -> dict:
    """The Plugins menu's actions under napari-mammo, by their text."""
    submenu = next(action.menu() for action in menu.actions() if action.text() == "napari-mammo")
    return {action.text(): action for action in submenu.actions()}


def test_the_manifest_lists_every_widget():
    manifest = PluginManifest.from_distribution("napari-mammo")  # as the installed entry point declares it
    assert sorted(w.display_name for w in manifest.contributions.widgets) == sorted(WIDGETS.values())


@pytest.mark.parametrize("key", sorted(WIDGETS))
def test_every_widget_opens_from_the_plugins_menu(make_napari_viewer, key):
    viewer = make_napari_viewer(show=True)
    actions = _menu_actions(viewer.window.plugins_menu)
    actions[WIDGETS[key]].trigger()
    docked = [widget for widget in viewer.window.dock_widgets.values() if isinstance(widget, WIDGET_TYPES[key])]
    assert len(docked) == 1
    # the widget got the viewer it is docked in: it sees the layers opened after it
    viewer.add_image(np.zeros((256, 256), np.uint8), name="opened later")
    if key in ("classify", "detect", "review"):
        assert "opened later" in [layer.name for layer in docked[0].image.choices]


def test_sample_and_mammogram_open_the_users_way(make_napari_viewer, synthetic_folder):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-mammo", "synthetic")
    assert any(layer.data.ndim == 2 and layer.data.shape[0] >= 512 for layer in viewer.layers)
    # the sample's truth follows the "<image> lesions" rule, so Review and Train find it
    assert "synthetic mammogram lesions" in viewer.layers
    layers = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    image = layers[0]
    np.testing.assert_allclose(image.scale, (0.2, 0.2))
    assert image.name == "mdb005" and "mdb005 lesions" in viewer.layers


def test_classify_detect_review_end_to_end_from_the_menu(open_widget, make_napari_viewer, qtbot, classifier_file,
                                                          detector_file, screening_file, synthetic_folder):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    classify, detect, review = (open_widget(viewer, key) for key in ("classify", "detect", "review"))
    for widget, weights in ((classify, classifier_file), (detect, detector_file)):
        widget.image.value = viewer.layers["mdb005"]
        use_weights_file(widget, weights)
        widget.start()
        qtbot.waitUntil(lambda w=widget: not w.busy, timeout=60_000)
    labels = viewer.layers["mdb005 patch classes"]
    assert labels.data.shape == viewer.layers["mdb005"].data.shape
    assert labels.metadata["verdict"] in classify.verdict.value
    detect.threshold.value = 0.01
    boxes = viewer.layers["mdb005 detections"]
    assert len(boxes.data) > 0
    review.image.value = viewer.layers["mdb005"]
    counts = review.compare()
    assert counts["hits"] + counts["false_positives"] == len(boxes.data)
    assert counts["truth"] == "malignant"
    review.compare_button.changed.emit(True)  # the button fills the summary line
    assert f"CNNI-BCC {labels.metadata['verdict']} (truth malignant)" in review.image_summary.value
    # classified again with the screening model, the summary names it
    use_weights_file(classify, screening_file)
    classify.start()
    qtbot.waitUntil(lambda: not classify.busy, timeout=60_000)
    review.compare_button.changed.emit(True)
    assert f"screening {labels.metadata['verdict']} (truth malignant)" in review.image_summary.value


def test_screening_from_the_menu_uses_the_other_film_and_adds_an_aligned_heatmap(
        open_widget, make_napari_viewer, qtbot, screening_file, synthetic_folder):
    viewer = make_napari_viewer(show=True)
    for ref in ("mdb005", "mdb006"):
        viewer.open(str(synthetic_folder / f"{ref}.pgm"), plugin="napari-mammo")
    classify = open_widget(viewer, "classify")
    classify.image.value = viewer.layers["mdb005"]
    assert classify.model.value.startswith("screening") and classify.other.value is viewer.layers["mdb006"]
    assert "mdb005 suspicion" not in [layer.name for layer in classify.image.choices]
    use_weights_file(classify, screening_file)
    classify.start()
    qtbot.waitUntil(lambda: not classify.busy, timeout=60_000)
    assert "both films" in classify.verdict.value
    image, heatmap = viewer.layers["mdb005"], viewer.layers["mdb005 suspicion"]
    assert "mdb005 suspicion" not in [layer.name for layer in classify.image.choices]
    # the heatmap's cells cover the image: its last cell ends where the image's pixels end (± one cell)
    extent = heatmap.translate + (np.array(heatmap.data.shape) - 0.5) * heatmap.scale
    np.testing.assert_allclose(extent, image.translate + (np.array(image.data.shape) - 0.5) * image.scale,
                               atol=heatmap.scale.max())
    assert heatmap.colorbar.visible
    assert viewer.layers["mdb005 patch classes"].data.shape == image.data.shape


def test_all_four_widgets_docked_fit_a_laptop_screen(open_widget, make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    widgets = [open_widget(viewer, key) for key in sorted(WIDGETS)]
    # each scrolls inside its dock instead of asking for its full height
    assert sum(w.native.minimumSizeHint().height() for w in widgets) < 768 - 150


@pytest.mark.parametrize("key", sorted(WIDGETS))
def test_every_control_explains_itself(open_widget, make_napari_viewer, key):
    from magicgui.widgets import Label, ProgressBar

    viewer = make_napari_viewer()
    widget = open_widget(viewer, key)
    controls = [w for w in widget if not isinstance(w, Label | ProgressBar) and w.widget_type != "Table"]
    assert controls and all(w.tooltip for w in controls), [type(w).__name__ for w in controls if not w.tooltip]


def test_the_image_choice_holds_the_layer_through_a_rename(open_widget, make_napari_viewer, synthetic_folder):
    viewer = make_napari_viewer()
    (image, _) = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    detect = open_widget(viewer, "detect")
    detect.image.value = image
    image.name = "left MLO"
    assert detect.image.value is image
    assert "left MLO" in [layer.name for layer in detect.image.choices]
    assert detect.image.native.currentText() == "left MLO"
