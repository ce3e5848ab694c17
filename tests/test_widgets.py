"""The Classify and Train widgets driven in a real viewer on tiny synthetic data."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import use_weights_file
from napari_mammo import read_folder
from napari_mammo.plugin.classify_widget import ClassifyWidget
from napari_mammo.plugin.train_widget import TrainWidget
from napari_mammo.plugin.weights_registry import REGISTRY

FAST_TRAINING = ("--max-steps-per-epoch", "2", "--batch-size", "4", "--patches", "all")


@pytest.fixture
def weights(classifier_file):
    """CNNI-BCC weights trained for a few steps."""
    return classifier_file


def _set_up_training(widget: TrainWidget, folder, out, epochs: int, extra: tuple[str, ...]) -> None:
    """Point the Train widget at a folder and an output, on the CPU, with a few quick steps."""
    widget.data.value = str(folder)
    widget.epochs.value = epochs
    widget.device.value = "cpu"
    widget.out.value = str(out)
    widget.extra_args = extra


def _use_file(widget: ClassifyWidget, path) -> None:
    use_weights_file(widget, path)


def test_classify_writes_aligned_labels_and_replaces_its_layer(open_widget, make_napari_viewer, qtbot, weights,
                                                               synthetic_folder):
    viewer = make_napari_viewer()
    image, _ = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    widget = open_widget(viewer, "classify")
    assert widget.image.value is image
    assert widget.slices.native.isHidden()  # a 2-D image has no slices to choose
    _use_file(widget, weights)
    widget.patches.value = "all"
    for _ in range(2):
        widget.start()
        qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    labels = [layer for layer in viewer.layers if layer.metadata.get("kind") == "cnni-bcc"]
    assert len(labels) == 1
    layer = labels[0]
    assert layer.data.shape == image.data.shape
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    assert len(layer.features) == 4
    assert set(np.unique(layer.data)) == set(layer.features["index"])  # every pixel names its patch
    assert {"normal", "benign", "malignant", "row", "col"} <= set(layer.features.columns)
    first = layer.features.iloc[0]
    assert layer.data[int(first["row"]), int(first["col"])] == first["index"]
    # the patch is drawn in its class colour, and hovering it shows its class and probabilities
    colour = {"normal": "#2ca02c", "benign": "#ffbf00", "malignant": "#d62728"}[first["label"]]
    np.testing.assert_allclose(layer.colormap.map(np.array([first["index"]]))[0][:3],
                               [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)], atol=0.01)
    status = layer.get_status(tuple(np.array([first["row"], first["col"]]) * layer.scale + layer.translate))
    assert first["label"] in str(status) and "normal" in str(status)
    assert layer.metadata["verdict"] in widget.verdict.value
    assert widget.run_button.text == "Classify"


def test_cancel_leaves_viewer_as_it_was(open_widget, make_napari_viewer, qtbot, weights):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (2048, 2048), dtype=np.uint8), name="big")
    widget = open_widget(viewer, "classify")
    _use_file(widget, weights)
    widget.patches.value = "all"
    widget.start()
    widget._toggle()  # the button now reads Cancel
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert widget.verdict.value == "cancelled"


def test_bad_weights_file_is_a_notification_not_a_crash(open_widget, make_napari_viewer, qtbot, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 255, (256, 256), dtype=np.uint8), name="img")
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    widget = open_widget(viewer, "classify")
    _use_file(widget, bad)
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert len(shown) == 1 and "bad.safetensors" in shown[0] and "not a readable safetensors" in shown[0]
    assert [layer.name for layer in viewer.layers] == ["img"]


def test_train_widget_trains_in_a_shown_viewer_and_offers_the_weights(open_widget, make_napari_viewer, qtbot, tmp_path,
                                                                     synthetic_folder):
    viewer = make_napari_viewer(show=True)
    widget = open_widget(viewer, "train")
    classify = open_widget(viewer, "classify")
    _set_up_training(widget, synthetic_folder, tmp_path / "trained.safetensors", 1, FAST_TRAINING)
    widget.start()
    assert widget.train_button.text == "Stop"
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    assert (tmp_path / "trained.safetensors").is_file()
    classify.model.value = "CNNI-BCC (poster)"
    assert str((tmp_path / "trained.safetensors").resolve()) in classify.weights.choices
    assert widget.plot.losses and widget.plot.scores
    assert widget.train_button.text == "Train"


def test_stop_really_stops_and_keeps_best_weights(open_widget, make_napari_viewer, qtbot, tmp_path, synthetic_folder):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "train")
    _set_up_training(widget, synthetic_folder, tmp_path / "stopped.safetensors", 500, FAST_TRAINING)
    events = []
    worker = widget.start()
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: any(e["phase"] == "validated" for e in events), timeout=120_000)
    widget._toggle()  # Stop
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert (tmp_path / "stopped.safetensors").is_file()
    assert widget.status.value.startswith("stopped")
    assert max(e.get("epoch", 0) for e in events) < 500
    REGISTRY._files.clear()


def test_training_from_open_layers(open_widget, make_napari_viewer, qtbot, tmp_path, synthetic_folder):
    viewer = make_napari_viewer()
    for name in ("mdb003.pgm", "mdb004.pgm"):
        viewer.open(str(synthetic_folder / name), plugin="napari-mammo")
    widget = open_widget(viewer, "train")
    widget.source.value = "open layers (image + lesion shapes)"
    folder = widget.data_folder()
    records = {r.ref: r for r in read_folder(folder)}
    originals = {r.ref: r for r in read_folder(synthetic_folder)}
    assert set(records) == {"mdb003", "mdb004"}
    for ref, record in records.items():
        original = originals[ref].lesions
        assert [les.severity for les in record.lesions] == [les.severity for les in original]
        for mine, theirs in zip(record.lesions, original, strict=True):
            assert (mine.row, mine.col, mine.radius) == pytest.approx((theirs.row, theirs.col, theirs.radius))


def test_optimiser_step_after_a_shown_viewer_does_not_crash():
    """The known crash: torch's optimiser importing triton after napari made a Mesa GL context."""
    code = (
        "import napari\n"
        "viewer = napari.Viewer(show=True)\n"
        "import napari_mammo.plugin.classify_widget\n"
        "import torch\n"
        "model = torch.nn.Linear(2, 1)\n"
        "opt = torch.optim.Adam(model.parameters())\n"
        "model(torch.ones(1, 2)).sum().backward()\n"
        "opt.step()\n"
        "viewer.close()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_progress_json_lines_are_json(synthetic_folder, tmp_path):
    result = subprocess.run([sys.executable, "-m", "napari_mammo", "train", "classifier", "--data",
                             str(synthetic_folder), "--out", str(tmp_path / "w.safetensors"), "--epochs", "1",
                             "--device", "cpu", "--progress-json", *FAST_TRAINING],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    phases = {json.loads(line)["phase"] for line in result.stdout.splitlines()}
    assert {"reading", "training", "validated"} <= phases


def _detect(qtbot, widget):
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    return widget.output_layer()


def test_detect_widget_slider_refilters_and_corrections_round_trip(open_widget,
                                                                   make_napari_viewer, qtbot, detector_file,
                                                                   synthetic_folder, tmp_path):

    viewer = make_napari_viewer()
    image, _ = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    widget = open_widget(viewer, "detect")
    use_weights_file(widget, detector_file)
    widget.threshold.value = 0.01
    layer = _detect(qtbot, widget)
    assert layer is not None and layer.metadata["kind"] == "detections" and layer.metadata["model"] == "idbll"
    np.testing.assert_allclose(layer.scale, image.scale)
    everything = len(layer.data)
    assert everything == len([d for d in layer.metadata["detections"] if d["score"] >= 0.01]) > 0
    assert list(layer.features["score"]) == sorted(layer.features["score"], reverse=True)
    colours = {tuple(c) for c in np.round(layer.edge_color, 3)}
    median = float(np.median(layer.features["score"]))
    widget.threshold.value = median
    assert 0 < len(layer.data) < everything or len(set(layer.features["score"])) == 1
    assert (layer.features["score"] >= median).all()
    # the status follows the slider, and the boxes keep their colour
    assert widget.status.value.startswith(f"{len(layer.data)} box(es) at score ≥ {median:.2f}")
    assert {tuple(c) for c in np.round(layer.edge_color, 3)} == colours == {(1.0, 0.0, 1.0, 1.0)}
    # the researcher deletes the best box and draws a missed lesion
    widget.threshold.value = 0.01
    layer.selected_data = {0}
    layer.remove_selected()
    layer.add_rectangles(np.array([[[150, 217], [150, 227], [160, 227], [160, 217]]]))
    widget.threshold.value = 0.02
    widget.threshold.value = 0.01
    assert len(layer.data) == everything  # one deleted, one drawn
    assert widget.status.value.endswith("1 of yours")
    drawn = list(layer.features["id"]).index(-1)
    np.testing.assert_allclose(layer.edge_color[drawn], [1, 1, 0, 1])  # the researcher's box is yellow
    assert -1 in set(layer.features["id"]) and 0 not in set(layer.features["id"])
    widget.save_folder.value = str(tmp_path / "corrected")
    info = widget.save_annotations()
    (record,) = read_folder(tmp_path / "corrected")
    assert info.name == "Info.txt" and record.ref == "mdb005"
    assert len(record.lesions) == len(layer.data)
    assert any(les.row == pytest.approx(155) and les.col == pytest.approx(222) for les in record.lesions)
    # and the corrected folder trains both models
    for model in ("detector", "classifier"):
        out = tmp_path / f"re-{model}.safetensors"
        result = subprocess.run([sys.executable, "-m", "napari_mammo", "train", model, "--data",
                                 str(tmp_path / "corrected"), "--out", str(out), "--epochs", "1",
                                 "--batch-size", "2", "--max-steps-per-epoch", "1", "--device", "cpu"],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and out.is_file(), result.stderr[-2000:]


def test_detect_roi_stays_inside(open_widget, make_napari_viewer, qtbot, detector_file, synthetic_folder):

    viewer = make_napari_viewer()
    image, _ = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    roi = viewer.add_shapes(np.array([[[100, 120], [100, 250], [220, 250], [220, 120]]]), shape_type="rectangle",
                            name="roi", scale=image.scale)
    widget = open_widget(viewer, "detect")
    use_weights_file(widget, detector_file)
    widget.roi.value = roi
    widget.threshold.value = 0.01
    layer = _detect(qtbot, widget)
    assert len(layer.data)
    for rectangle in layer.data:
        assert rectangle[:, 0].min() >= 100 - 1e-6 and rectangle[:, 0].max() <= 220 + 1e-6
        assert rectangle[:, 1].min() >= 120 - 1e-6 and rectangle[:, 1].max() <= 250 + 1e-6


def test_classify_on_a_stack_uses_the_shown_slice(open_widget, make_napari_viewer, qtbot, weights, synthetic_folder):
    viewer = make_napari_viewer()
    stack, _ = viewer.open(str(synthetic_folder), plugin="napari-mammo")
    viewer.dims.set_current_step(0, 4)
    widget = open_widget(viewer, "classify")
    _use_file(widget, weights)
    widget.patches.value = "all"
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    (labels,) = [layer for layer in viewer.layers if layer.metadata.get("kind") == "cnni-bcc"]
    assert labels.data.shape == stack.data.shape and labels.metadata["slice"] == [4]
    assert labels.data[4].any() and not labels.data[3].any()


def test_train_widget_trains_the_detector_and_detect_offers_it(open_widget, make_napari_viewer, qtbot, tmp_path,
                                                               synthetic_folder):

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "train")
    detect = open_widget(viewer, "detect")
    widget.model.value = "detector"
    assert widget.out.value.name == "idbll-trained.safetensors"
    _set_up_training(widget, synthetic_folder, tmp_path / "idbll-trained.safetensors", 1,
                     ("--max-steps-per-epoch", "1", "--batch-size", "2"))
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    trained = str((tmp_path / "idbll-trained.safetensors").resolve())
    assert trained not in detect.weights.choices  # Detect opens on the screening model's weights
    detect.model.value = "IDBLL (poster's SSD)"
    assert trained in detect.weights.choices


def test_train_widget_fits_the_screening_model_and_classify_offers_it(open_widget, make_napari_viewer, qtbot,
                                                                       tmp_path, synthetic_folder):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "train")
    classify = open_widget(viewer, "classify")
    widget.model.value = "screening"
    assert widget.out.value.name == "screening-trained.safetensors"
    assert not widget.cv_seeds.native.isHidden()
    assert widget.epochs.native.isHidden() and widget.device.native.isHidden()
    out = tmp_path / "screening-trained.safetensors"
    _set_up_training(widget, synthetic_folder, out, 1, ("--folds", "3", "--tune-epochs", "1", "--tune-steps", "2",
                                                                 "--verdict-epochs", "1"))
    assert "--epochs" not in widget.command(synthetic_folder)
    events = []
    worker = widget.start()
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: not widget.busy, timeout=180_000)
    assert out.is_file() and widget.status.value == f"weights in {out.name}"
    assert any(e["phase"] == "folds" for e in events)
    assert str(out.resolve()) in classify.weights.choices  # the screening model is Classify's default choice


def _long_screening_training(open_widget, viewer, folder, out):
    """The Train widget on `viewer`, set up for a screening fit that takes minutes (50 tuning epochs)."""
    widget = open_widget(viewer, "train")
    widget.model.value = "screening"
    _set_up_training(widget, folder, out, 1, ("--folds", "3", "--tune-epochs", "50"))
    return widget


def _start_until_features(widget, qtbot) -> None:
    """Start training and wait until the child reports its first backbone features (its handlers are set)."""
    events = []
    widget.start().yielded.connect(events.append)
    qtbot.waitUntil(lambda: any(e["phase"] == "backbone features" for e in events), timeout=120_000)


def test_stopping_screening_training_writes_nothing(open_widget, make_napari_viewer, qtbot, tmp_path,
                                                    synthetic_folder):
    out = tmp_path / "stopped-screening.safetensors"
    widget = _long_screening_training(open_widget, make_napari_viewer(), synthetic_folder, out)
    _start_until_features(widget, qtbot)
    assert widget.busy, widget.status.value  # else the toggle below would start another run
    widget._toggle()  # Stop, while the first fold is fitted
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.status.value == "stopped; nothing written" and not out.exists()


def test_stop_at_once_ends_training_where_napari_ignores_ctrl_c(open_widget, make_napari_viewer, qtbot, tmp_path,
                                                                synthetic_folder):
    import signal

    widget = _long_screening_training(open_widget, make_napari_viewer(), synthetic_folder,
                                      tmp_path / "early.safetensors")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # napari run as a shell's background job; inherited
    try:
        widget.start()
        qtbot.waitUntil(lambda: widget._process.process is not None, timeout=10_000)
        widget._toggle()  # Stop before the child has set its own handler
    finally:
        signal.signal(signal.SIGINT, previous)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.status.value == "stopped; nothing written"


def test_closing_napari_mid_training_stops_the_training_process(open_widget, make_napari_viewer, qtbot, tmp_path,
                                                                 synthetic_folder):
    viewer = make_napari_viewer()
    widget = _long_screening_training(open_widget, viewer, synthetic_folder, tmp_path / "closed.safetensors")
    _start_until_features(widget, qtbot)
    child = widget._process.process
    viewer.close()
    qtbot.waitUntil(lambda: child.poll() is not None, timeout=60_000)
    assert child.returncode == 130  # stopped as by Stop (SIGTERM, taken as Ctrl-C), not killed


def test_save_annotations_never_replaces_another_image(open_widget,
                                                       make_napari_viewer, synthetic_folder, tmp_path, monkeypatch):
    import shutil


    viewer = make_napari_viewer()
    image, _ = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    folder = tmp_path / "theirs"
    folder.mkdir()
    shutil.copy(synthetic_folder / "mdb003.pgm", folder / "mdb005.pgm")  # another image under the same name
    before = (folder / "mdb005.pgm").read_bytes()
    viewer.add_shapes(np.array([[[150, 217], [150, 227], [160, 227], [160, 217]]]), shape_type="rectangle",
                      name="mdb005 detections", scale=image.scale)
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    widget = open_widget(viewer, "detect")
    widget.save_folder.value = str(folder)
    assert widget.save_annotations() is None
    assert "a different image of this name is already there" in shown[0]
    assert (folder / "mdb005.pgm").read_bytes() == before and not (folder / "Info.txt").exists()
    # the same image is fine: its row is added
    shutil.copy(synthetic_folder / "mdb005.pgm", folder / "mdb005.pgm")
    assert widget.save_annotations() == folder / "Info.txt"
    assert len(read_folder(folder)[0].lesions) == 1


@pytest.mark.parametrize("problem", ["nan", "constant"])
def test_odd_image_is_a_notification_and_leaves_the_layers(open_widget,
                                                           make_napari_viewer, qtbot, weights, detector_file,
                                                           monkeypatch, problem):

    viewer = make_napari_viewer(show=True)
    data = np.random.default_rng(0).random((256, 256)).astype(np.float32)
    if problem == "nan":
        data[10:20, 10:20] = np.nan
    else:
        data[:] = 0.5
    viewer.add_image(data, name="odd")
    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    for key, path in (("classify", weights), ("detect", detector_file)):
        widget = open_widget(viewer, key)
        _use_file(widget, path)
        widget.start()
        qtbot.waitUntil(lambda w=widget: not w.busy, timeout=60_000)
    assert [layer.name for layer in viewer.layers] == ["odd"]
    expected = "NaN or infinite" if problem == "nan" else "constant"
    assert len(shown) == 2 and all(expected in message for message in shown), shown


def test_train_widget_uses_the_shipped_recipe_for_the_classifier(open_widget, make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, "train")
    assert not widget.recipe.native.isHidden()
    command = widget.command(tmp_path)
    assert command[command.index("--crops-per-lesion") + 1] == "16"
    assert command[command.index("--patches") + 1] == "breast"
    widget.recipe.value = "poster: middle 4 columns"
    command = widget.command(tmp_path)
    assert "--crops-per-lesion" not in command and command[command.index("--patches") + 1] == "middle"
    widget.model.value = "detector"
    assert widget.recipe.native.isHidden() and "--patches" not in widget.command(tmp_path)


def test_choices_are_remembered_for_the_next_session(open_widget, make_napari_viewer, classifier_file, tmp_path,
                                                    widget_settings):
    viewer = make_napari_viewer()
    classify, review = open_widget(viewer, "classify"), open_widget(viewer, "review")
    use_weights_file(classify, classifier_file)
    classify.patches.value = "all"
    review.folder.value = str(tmp_path)
    assert (widget_settings / "widgets.json").is_file()
    later = make_napari_viewer()  # a new session: the same choices come back
    classify2, review2 = open_widget(later, "classify"), open_widget(later, "review")
    assert classify2.model.value.startswith("CNNI-BCC") and classify2.weights.value == "other file…"
    assert Path(classify2.weights_file.value) == classifier_file and classify2.patches.value == "all"
    assert Path(review2.folder.value) == tmp_path
    # a damaged settings file is ignored, never an error
    (widget_settings / "widgets.json").write_text("{not json")
    assert open_widget(make_napari_viewer(), "classify").patches.value == "breast"


def test_detect_widget_offers_the_screening_models_boxes(open_widget, make_napari_viewer, qtbot, screening_file,
                                                          synthetic_folder):
    from napari_mammo.models.screener import Screener

    viewer = make_napari_viewer()
    image, _ = viewer.open(str(synthetic_folder / "mdb005.pgm"), plugin="napari-mammo")
    widget = open_widget(viewer, "detect")
    assert widget.model.value == "screening (tuned cell map)" and not widget.device.visible  # the default
    shipped = Screener.load().box_threshold
    assert widget.threshold.value == pytest.approx(shipped, abs=0.006)  # its own default, from its weights
    use_weights_file(widget, screening_file)
    assert widget.threshold.value == pytest.approx(Screener.load(screening_file).box_threshold, abs=0.006)
    widget.threshold.value = 0.01
    layer = _detect(qtbot, widget)
    assert layer.metadata["model"] == "screening"
    expected = [(b, s) for b, s in Screener.load(screening_file).screen(image.data).boxes if s >= 0.01]
    assert len(layer.data) == len(expected) > 0
    np.testing.assert_allclose(sorted(layer.features["score"]), sorted(s for _, s in expected), atol=1e-6)
    # a region keeps the boxes centred in it
    roi = viewer.add_shapes(np.array([[[0, 0], [0, 128], [256, 128], [256, 0]]]), shape_type="rectangle", name="roi",
                            scale=image.scale)
    widget.roi.value = roi
    layer = _detect(qtbot, widget)
    inside = [s for b, s in expected if (b[1] + b[3]) / 2 <= 128]
    np.testing.assert_allclose(sorted(layer.features["score"]), sorted(inside), atol=1e-6)


def test_detect_threshold_follows_the_model_until_the_researcher_moves_it(open_widget, make_napari_viewer):
    from napari_mammo.models.screener import Screener

    viewer = make_napari_viewer()
    widget = open_widget(viewer, "detect")
    screening = Screener.load().box_threshold
    assert widget.threshold.value == pytest.approx(screening, abs=0.006)
    widget.model.value = "IDBLL (poster's SSD)"
    assert widget.threshold.value == pytest.approx(0.3)
    widget.model.value = "screening (tuned cell map)"
    assert widget.threshold.value == pytest.approx(screening, abs=0.006)
    widget.threshold.value = 0.5  # the researcher's own choice stays
    widget.model.value = "IDBLL (poster's SSD)"
    assert widget.threshold.value == pytest.approx(0.5)
