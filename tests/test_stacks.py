"""Stacks: classify and detect the shown slice or every slice, with layers on the right slices."""

import numpy as np

from conftest import use_weights_file
from napari_mammo import read_folder
from napari_mammo.plugin.slice_caption import text_overlay
from napari_mammo.plugin.slices import EVERY, SHOWN


def _run(qtbot, widget) -> list[dict]:
    """Start the widget's job, wait for it, return the progress events it yielded."""
    events = []
    worker = widget.start()
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    return events


def _with_weights(widget, path) -> None:
    use_weights_file(widget, path)


def test_classify_every_slice_then_redo_one(open_widget, make_napari_viewer, qtbot, classifier_file, synthetic_folder):
    viewer = make_napari_viewer()
    stack, _ = viewer.open(str(synthetic_folder), plugin="napari-mammo")
    widget = open_widget(viewer, "classify")
    assert not widget.slices.native.isHidden()  # offered for a stack
    _with_weights(widget, classifier_file)
    widget.patches.value = "all"
    widget.slices.value = EVERY
    events = _run(qtbot, widget)
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and events[-1]["step"] == events[-1]["steps"] == 6 * 1000
    (labels,) = [layer for layer in viewer.layers if layer.metadata.get("kind") == "cnni-bcc"]
    assert labels.data.shape == stack.data.shape and all(labels.data[k].any() for k in range(6))
    assert set(labels.metadata["verdicts"]) == {str(k) for k in range(6)}
    assert widget.verdict.value.startswith("6 slices:")
    assert len(labels.features) == 6 * 4 and set(labels.features["slice"]) == {str(k) for k in range(6)}
    before = labels.data.copy()
    # redo the shown slice only: the others keep their results
    viewer.dims.set_current_step(0, 2)
    shown = stack.metadata["refs"][2]
    overlay = text_overlay(viewer)
    assert f": {shown}" in overlay.text and overlay.visible  # the canvas names it
    widget.slices.value = SHOWN
    _run(qtbot, widget)
    assert widget.verdict.value.startswith(f"{shown}: ")  # and so does the verdict
    np.testing.assert_array_equal(labels.data[[0, 1, 3, 4, 5]], before[[0, 1, 3, 4, 5]])
    assert len(labels.features) == 6 * 4 and labels.metadata["slice"] == [2]
    # every patch keeps one id, and every labelled pixel names a patch in the table
    assert labels.features["index"].is_unique and set(np.unique(labels.data)) - {0} == set(labels.features["index"])


def test_every_slice_skips_a_constant_slice(open_widget, make_napari_viewer, qtbot, classifier_file):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 256, 256), dtype=np.uint8)
    data[1] = 7
    viewer.add_image(data, name="stack")
    widget = open_widget(viewer, "classify")
    _with_weights(widget, classifier_file)
    widget.slices.value = EVERY
    _run(qtbot, widget)
    labels = viewer.layers["stack patch classes"]
    assert labels.data[0].any() and not labels.data[1].any() and labels.data[2].any()
    assert "1 slice(s) skipped (slice [1]: the image is constant" in widget.verdict.value


def test_detect_every_slice_puts_boxes_on_their_slices(open_widget,
                                                       make_napari_viewer, qtbot, detector_file, synthetic_folder):
    viewer = make_napari_viewer()
    stack, _ = viewer.open(str(synthetic_folder), plugin="napari-mammo")
    widget = open_widget(viewer, "detect")
    _with_weights(widget, detector_file)
    widget.threshold.value = 0.01
    widget.slices.value = EVERY
    _run(qtbot, widget)
    layer = widget.output_layer()
    assert layer.ndim == 3
    np.testing.assert_allclose(layer.scale, stack.scale)
    stored = layer.metadata["detections"]
    assert {tuple(d["slice"]) for d in stored} == {(k,) for k in range(6)}
    by_id = {d["id"]: d for d in stored}
    for vertices, shape_id in zip(layer.data, layer.features["id"], strict=True):
        detection = by_id[shape_id]
        assert set(vertices[:, 0]) == {detection["slice"][0]}
        np.testing.assert_allclose(vertices[:, 1:].min(axis=0), detection["box"][:2])
    # detect again on slice 3 only: the other slices keep their boxes
    per_slice = {k: sum(1 for v in layer.data if v[0, 0] == k) for k in range(6)}
    viewer.dims.set_current_step(0, 3)
    widget.slices.value = SHOWN
    _run(qtbot, widget)
    again = {k: sum(1 for v in layer.data if v[0, 0] == k) for k in range(6)}
    assert again == per_slice


def test_review_compares_the_shown_slice_of_a_stack(open_widget, make_napari_viewer, synthetic_folder):
    viewer = make_napari_viewer()
    stack, truth = viewer.open(str(synthetic_folder), plugin="napari-mammo")
    name = stack.name
    viewer.dims.set_current_step(0, 4)  # mdb005, malignant in the synthetic folder
    (record,) = [r for r in read_folder(synthetic_folder) if r.ref == "mdb005"]
    first, *others = [les for les in record.lesions if les.located]

    def box(k, row, col):
        return np.array([[k, row - 4, col - 4], [k, row - 4, col + 4], [k, row + 4, col + 4], [k, row + 4, col - 4]],
                        float)

    far = (5.0, 5.0)  # the image's corner: no lesion there
    boxes = viewer.add_shapes([box(4, first.row, first.col), box(3, 50, 50), box(4, *far)], shape_type="rectangle",
                              name=f"{name} detections", scale=stack.scale)
    widget = open_widget(viewer, "review")
    widget.image.value = viewer.layers[name]
    counts = widget.compare()
    assert (counts["hits"], counts["false_positives"], counts["missed"], counts["lesions"]) == (
        1, 1, len(others), 1 + len(others))
    assert counts["truth"] == "malignant"
    missed = viewer.layers[f"{name} missed lesions"]
    np.testing.assert_allclose(missed.data, [[4, les.row, les.col] for les in others] or np.zeros((0, 3)))
    colours = boxes.edge_color
    np.testing.assert_allclose(colours[0][:3], [0x30 / 255, 1, 0x30 / 255], atol=0.01)
    np.testing.assert_allclose(colours[2][:3], [1, 0x30 / 255, 0x30 / 255], atol=0.01)
    assert not np.allclose(colours[1][:3], colours[2][:3])  # the box on slice 3 is not judged here


def test_save_annotations_of_a_stack_writes_each_detected_slice(open_widget, make_napari_viewer, qtbot, detector_file,
                                                                 synthetic_folder, tmp_path):
    from napari_mammo import read_folder
    from napari_mammo.io.pgm import read_pgm

    viewer = make_napari_viewer()
    stack, _ = viewer.open(str(synthetic_folder), plugin="napari-mammo")
    widget = open_widget(viewer, "detect")
    _with_weights(widget, detector_file)
    widget.slices.value = EVERY
    _run(qtbot, widget)
    layer = widget.output_layer()
    widget.threshold.value = 1.0  # the researcher rejects every box ...
    assert len(layer.data) == 0
    layer.add_rectangles(np.array([[[2, 150, 217], [2, 150, 227], [2, 160, 227], [2, 160, 217]]]))  # ... draws one
    widget.save_folder.value = str(tmp_path / "corrected")
    assert widget.save_annotations() == tmp_path / "corrected" / "Info.txt"
    saved = {r.ref: r for r in read_folder(tmp_path / "corrected")}
    assert sorted(saved) == stack.metadata["refs"]
    assert [(les.row, les.col) for les in saved["mdb003"].lesions] == [(155, 222)]
    assert all(not r.lesions for ref, r in saved.items() if ref != "mdb003")
    for ref in saved:
        np.testing.assert_array_equal(read_pgm(tmp_path / "corrected" / f"{ref}.pgm"),
                                      read_pgm(synthetic_folder / f"{ref}.pgm"))


def test_a_multi_page_tiff_is_a_stack_in_napari_and_refused_by_the_command_line(open_widget, make_napari_viewer, qtbot,
                                                                                 classifier_file, tmp_path, capsys):
    import tifffile

    from napari_mammo.cli import main
    from napari_mammo.io.synthetic import synthetic_mammogram

    pages = np.stack([synthetic_mammogram(seed=k, size=256)[0] for k in range(4)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, pages, photometric="minisblack")  # pages, not colour planes
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-mammo")
    np.testing.assert_array_equal(layer.data, pages)
    widget = open_widget(viewer, "classify")
    _with_weights(widget, classifier_file)
    widget.slices.value = EVERY
    _run(qtbot, widget)
    assert widget.verdict.value.startswith("4 slices:")
    assert main(["classify", str(path)]) == 2
    assert "is a stack of 4 slices of 256x256" in capsys.readouterr().err


def test_a_stack_and_its_ground_truth_export_for_training(make_napari_viewer, synthetic_folder, tmp_path):
    from napari_mammo import read_folder
    from napari_mammo.io.pgm import read_pgm
    from napari_mammo.plugin.annotations import export_layers_as_mias

    viewer = make_napari_viewer()
    viewer.open(str(synthetic_folder), plugin="napari-mammo")
    records = export_layers_as_mias(viewer, tmp_path)
    original = {r.ref: r for r in read_folder(synthetic_folder)}
    assert [r.ref for r in records] == sorted(original)
    for record in read_folder(tmp_path):
        truth = original[record.ref]
        assert [(les.abnormality, les.severity, les.row, les.col, les.radius) for les in record.lesions] == [
            (les.abnormality, les.severity, les.row, les.col, les.radius) for les in truth.lesions if les.located]
        np.testing.assert_array_equal(read_pgm(record.path), read_pgm(truth.path))
