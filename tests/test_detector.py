"""IDBLL: data, training, detection, FROC and the command line on tiny synthetic data."""

import json

import numpy as np
import pytest

from napari_mammo import Lesion, Mammogram, MammoInputError, read_folder
from napari_mammo.cli import main
from napari_mammo.data.preprocess import to_canvas
from napari_mammo.evaluation.detector import average_precision, froc, match_lesions, sensitivity_at
from napari_mammo.models.idbll.predict import Detection, LesionDetector
from napari_mammo.training.idbll import DetectorConfig, build_samples, train_detector


@pytest.fixture(scope="module")
def detector_weights(synthetic_folder, tmp_path_factory):
    """IDBLL weights trained for a few steps."""
    out = tmp_path_factory.mktemp("det") / "idbll.safetensors"
    result = train_detector(read_folder(synthetic_folder), out,
                            DetectorConfig(epochs=1, batch_size=2, max_steps_per_epoch=2))
    assert result.path == out
    return out


def test_canvas_and_boxes_follow_the_image(synthetic_folder):
    record = read_folder(synthetic_folder)[4]
    sample = build_samples([record], 512)[0]
    assert sample.canvas.shape == (512, 512)
    lesion = record.lesions[0]
    box = sample.boxes[0]
    assert (box[0] + box[2]) / 2 == pytest.approx(lesion.row * 2)  # 256 px image on a 512 canvas
    canvas, factor = to_canvas(np.ones((100, 60), np.float32), 512, upscale=False)
    assert factor == 1.0 and canvas[:100, :60].all() and not canvas[100:].any()


def test_detect_json_in_image_pixels_sorted(detector_weights, synthetic_folder, capsys):
    path = str(synthetic_folder / "mdb005.pgm")
    assert main(["detect", path, "--weights", str(detector_weights), "--score-threshold", "0", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["path"] == path
    scores = [d["score"] for d in entry["detections"]]
    assert scores == sorted(scores, reverse=True) and scores
    for det in entry["detections"]:
        r0, c0, r1, c1 = det["box"]
        assert 0 <= r0 < r1 <= 256 and 0 <= c0 < c1 <= 256 and det["label"] == "lesion"


def test_roi_detection_stays_inside(detector_weights, synthetic_folder):
    detector = LesionDetector.load(detector_weights, device="cpu")
    record = read_folder(synthetic_folder)[4]
    pixels = __import__("napari_mammo").read_image(record.path).pixels
    for det in detector.detect(pixels, roi=(100, 120, 220, 250), score_threshold=0.0):
        r0, c0, r1, c1 = det.box
        assert 100 <= r0 <= r1 <= 220 and 120 <= c0 <= c1 <= 250
    with pytest.raises(ValueError, match="too small"):
        detector.detect(pixels, roi=(10, 10, 12, 12))


def test_refuses_classifier_weights(tmp_path):
    from napari_mammo.engine.weights import save_weights

    path = tmp_path / "cls.safetensors"
    save_weights(path, {"a": __import__("torch").zeros(1)}, "cnni-bcc", {})
    with pytest.raises(MammoInputError, match="not 'idbll'"):
        LesionDetector.load(path)


def test_froc_and_map_on_known_detections():
    record = Mammogram("mdb001", "F", (Lesion("CIRC", "B", 100, 100, 20), Lesion("CALC", "M", 300, 300, 10)))
    dets = [Detection((85, 85, 115, 115), "lesion", 0.9),   # hits lesion 1
            Detection((0, 0, 10, 10), "lesion", 0.8),       # false positive
            Detection((291, 291, 309, 309), "lesion", 0.4)]  # hits lesion 2 (IoU 0.81)
    hit, found = match_lesions(dets, record)
    assert list(hit) == [True, False, True] and found.all()
    curve = froc([(dets, record)])
    assert sensitivity_at(curve, 0) == 0.5 and sensitivity_at(curve, 1) == 1.0
    ap = average_precision([(dets, record)], 0.5)
    assert ap == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3))


def test_evaluate_detector_cli(detector_weights, synthetic_folder, tmp_path, capsys):
    plot = tmp_path / "froc.png"
    assert main(["evaluate", "detector", "--data", str(synthetic_folder), "--weights", str(detector_weights),
                 "--split", "all", "--plot", str(plot), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["sensitivity_at_fp"]) == {"0.5", "1", "2"} and report["images"] == 6
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_train_detector_under_torchrun(synthetic_folder, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp-idbll.safetensors"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "-m", "napari_mammo", "train", "detector", "--data", str(synthetic_folder), "--out", str(out),
               "--epochs", "1", "--batch-size", "2", "--device", "cpu", "--max-steps-per-epoch", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.is_file()


def test_jitter_moves_boxes_with_the_zoomed_image():
    from napari_mammo.training.idbll import jitter

    canvas = np.zeros((512, 512), np.float32)
    canvas[100:150, 300:380] = 0.8
    boxes = np.array([[100.0, 300.0, 150.0, 380.0]])
    rng = np.random.default_rng(3)
    for _ in range(5):
        out, moved = jitter(canvas, boxes, rng)
        assert out.shape == canvas.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
        rows, cols = np.nonzero(out > 0.4)
        np.testing.assert_allclose([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], moved[0], atol=2)


def test_idbll_is_cross_validated_in_the_screening_models_folds(synthetic_folder, tmp_path, capsys):
    from safetensors import safe_open

    from napari_mammo.evaluation.crossval import woman_folds
    from napari_mammo.io.images import read_image

    out, work = tmp_path / "cv.json", tmp_path / "w"
    assert main(["crossval", "detector", "--data", str(synthetic_folder), "--folds", "3", "--epochs", "1",
                 "--device", "cpu", "--work", str(work), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "idbll" and report["config"]["epochs"] == 1 and len(report["per_fold"]) == 3
    assert {"auc_best_box", "sensitivity_at_1_fp"} <= set(report["summary"])
    assert "pooled, seed 0: best_box AUC" in capsys.readouterr().out
    records = read_folder(synthetic_folder)
    for k, held in enumerate(woman_folds(records, 3, 0)):
        path = work / f"idbll-seed0-fold{k}.safetensors"
        with safe_open(str(path), "pt") as handle:
            split = json.loads(handle.metadata()["split"])
        assert split["test"] == [] and not {r.ref for r in held} & {*split["train"], *split["val"]}
        # the fold's figure is what its own weights find on its held-out women
        detector = LesionDetector.load(path, "cpu")
        found = [(detector.detect(read_image(r.path).pixels, score_threshold=0.0), r) for r in held]
        assert report["per_fold"][k]["sensitivity_at_1_fp"] == pytest.approx(sensitivity_at(froc(found), 1))
