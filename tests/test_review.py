"""The Review widget: the open image against its truth, and a folder table."""

import numpy as np
import pytest

from napari_mammo import Lesion, Mammogram
from napari_mammo.evaluation.review import review_image, summarise
from napari_mammo.models.idbll.predict import Detection
from napari_mammo.plugin.review_widget import FALSE_POSITIVE, HIT


def test_review_counts():
    record = Mammogram("mdb001", "F", (Lesion("CIRC", "B", 100, 100, 20), Lesion("CALC", "M", 300, 300, 10)))
    detections = [Detection((90, 90, 110, 110), "lesion", 0.9), Detection((0, 0, 9, 9), "lesion", 0.5),
                  Detection((295, 295, 305, 305), "lesion", 0.1)]
    review = review_image(record, "benign", 0.7, detections, threshold=0.3)
    assert (review.found, review.lesions, review.false_positives, review.best_box) == (1, 2, 1, 0.9)
    summary = summarise([review])
    assert summary["sensitivity"] == 0.5 and summary["fp_per_image"] == 1 and summary["accuracy"] == 0.0


def test_compare_open_image_colours_hits_and_marks_missed(open_widget, make_napari_viewer, synthetic_folder):
    viewer = make_napari_viewer()
    image, truth = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    centre = truth.data[0].mean(axis=0)
    boxes = [np.array([centre - 5, [centre[0] - 5, centre[1] + 5], centre + 5, [centre[0] + 5, centre[1] - 5]]),
             np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)]
    viewer.add_shapes(boxes, shape_type="rectangle", name="mdb005 detections", scale=image.scale)
    widget = open_widget(viewer, "review")
    widget.image.value = viewer.layers["mdb005"]
    counts = widget.compare()
    assert counts["hits"] == 1 and counts["false_positives"] == 1
    assert counts["missed"] == len(truth.data) - 1 and counts["truth"] == "malignant"
    colours = viewer.layers["mdb005 detections"].edge_color
    np.testing.assert_allclose(colours[0][:3], [0x30 / 255, 1, 0x30 / 255], atol=0.01)
    np.testing.assert_allclose(colours[1][:3], [1, 0x30 / 255, 0x30 / 255], atol=0.01)
    assert len(viewer.layers["mdb005 missed lesions"].data) == counts["missed"]
    assert HIT != FALSE_POSITIVE


def test_review_folder_table_sorted_by_suspicion_and_opens_rows(open_widget,
                                                                make_napari_viewer, qtbot, synthetic_folder,
                                                                detector_file):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "review")
    widget.folder.value = str(synthetic_folder)
    widget.models.value = "poster (CNNI-BCC verdict, IDBLL boxes)"
    assert widget.screening_weights.native.isHidden() and not widget.detector_weights.native.isHidden()
    assert widget.threshold.value == pytest.approx(0.3)  # IDBLL's default box threshold
    widget.detector_weights.set_choice(str(detector_file), str(detector_file))
    widget.detector_weights.value = str(detector_file)
    widget.threshold.value = 0.01
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    rows = widget.table.data.to_list()
    assert len(rows) == 6
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)
    assert "lesion sensitivity" in widget.summary.value
    # the FROC and ROC are drawn, the threshold marked on the FROC
    froc_ax, roc_ax = widget.figure.axes
    assert "FROC" in froc_ax.get_title() and "ROC" in roc_ax.get_title()
    assert "boxes ≥ 0.01" in froc_ax.get_legend().get_texts()[0].get_text()
    # a higher threshold re-reviews the same predictions without running the models
    predictions = widget.predictions
    false_positives = sum(r[7] for r in rows)
    widget.threshold.value = 1.0
    assert widget.predictions is predictions
    assert sum(r[7] for r in widget.table.data.to_list()) == 0 <= false_positives
    assert "boxes ≥ 1.00" in widget.summary.value
    # opening rows shows their reviewed boxes against the truth (a normal image has no lesions layer)
    widget.threshold.value = 0.01
    rows = widget.table.data.to_list()
    for row, values in enumerate(rows):
        widget._open_row(row)
        ref = values[0]
        boxes = viewer.layers[f"{ref} detections"]
        prediction = next(p for p in widget.predictions if p.record.ref == ref)
        assert len(boxes.data) == len(prediction.detections) > 0  # all kept boxes score >= 0.01
        assert f"{values[7]} false positive(s)" in widget.image_summary.value
        assert f"CNNI-BCC {values[2]} (truth {values[1]})" in widget.image_summary.value
        assert len(viewer.layers[f"{ref} missed lesions"].data) == values[6] - values[5]
    # each row replaced the previous row's layers, and the view shows the last one
    assert [layer.name for layer in viewer.layers if layer.name in {r[0] for r in rows}] == [rows[-1][0]]


def test_review_folder_with_the_screening_model(open_widget, make_napari_viewer, qtbot, synthetic_folder,
                                                screening_file):
    from napari_mammo.models.screener import Screener, partner_file

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "review")
    assert widget.models.value.startswith("screening")  # the default, as in Classify
    assert widget.detector_weights.native.isHidden() and not widget.screening_weights.native.isHidden()
    assert widget.threshold.value == pytest.approx(Screener.load().box_threshold, abs=0.006)  # its own default
    widget.folder.value = str(synthetic_folder)
    widget.screening_weights.set_choice(str(screening_file), str(screening_file))
    widget.screening_weights.value = str(screening_file)
    assert widget.threshold.value == pytest.approx(Screener.load(screening_file).box_threshold, abs=0.006)
    widget.threshold.value = 0.01
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    rows = widget.table.data.to_list()
    assert len(rows) == 6
    row = next(r for r in rows if r[0] == "mdb005")
    expected = Screener.load(screening_file).screen_file(synthetic_folder / "mdb005.pgm",
                                                         partner_file(synthetic_folder / "mdb005.pgm"))
    assert row[2] == expected.label and row[3] == pytest.approx(1 - expected.probabilities["normal"], abs=1e-3)
    widget._open_row(rows.index(row))
    boxes = viewer.layers["mdb005 detections"]
    assert boxes.metadata["model"] == "screening"
    assert len(boxes.data) == len(expected.detections(0.01))
    assert f"screening {expected.label} (truth malignant)" in widget.image_summary.value


def test_review_folder_without_a_folder_is_a_message(open_widget, make_napari_viewer, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    widget = open_widget(viewer, "review")
    widget.folder.value = str(tmp_path / "nowhere")
    assert widget.start() is None and "choose a MIAS-style folder" in shown[0]
    (tmp_path / "Info.txt").write_text("mdb001 G CIRX B 1 2 3\n")
    widget.folder.value = str(tmp_path)
    assert widget.start() is None and "CIRX" in shown[1]


def test_compare_without_detections_is_a_message(open_widget, make_napari_viewer, synthetic_folder, monkeypatch):
    viewer = make_napari_viewer()
    viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    widget = open_widget(viewer, "review")
    assert widget.compare() is None and "run Detect" in shown[0]
    with pytest.raises(KeyError):
        viewer.layers["mdb005 missed lesions"]


def test_a_broken_image_is_skipped_not_the_whole_review(open_widget,
                                                        make_napari_viewer, qtbot, synthetic_folder, tmp_path,
                                                        monkeypatch, capsys):
    import shutil

    from napari_mammo.cli import main

    folder = tmp_path / "with-broken"
    shutil.copytree(synthetic_folder, folder)
    data = (folder / "mdb002.pgm").read_bytes()
    (folder / "mdb002.pgm").write_bytes(data[: len(data) // 2])  # truncated
    assert main(["review", "--data", str(folder), "--model", "poster", "--split", "all", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "mdb002.pgm: truncated" in captured.err
    assert "5 images" in captured.out
    viewer = make_napari_viewer()
    warned = []
    monkeypatch.setattr("napari.utils.notifications.show_warning", warned.append)
    widget = open_widget(viewer, "review")
    widget.folder.value = str(folder)
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    rows = widget.table.data.to_list()
    assert len(rows) == 5 and "1 image(s) skipped" in widget.summary.value
    assert "mdb002.pgm: truncated" in warned[0]
    films = {r[0]: r[-1] for r in rows}  # mdb001's other film is the broken one: screened alone, and said so
    assert films["mdb001"] == "this one" and films["mdb005"] == "both"
    # the poster's models too
    widget.models.value = "poster (CNNI-BCC verdict, IDBLL boxes)"
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert len(widget.table.data.to_list()) == 5 and "1 image(s) skipped" in widget.summary.value
    assert {r[-1] for r in widget.table.data.to_list()} == {"this one"}  # the poster's models read one film
