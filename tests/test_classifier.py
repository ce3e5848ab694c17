"""Training, saving, loading, classifying and evaluating CNNI-BCC on tiny synthetic data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_mammo import MammoInputError, read_folder
from napari_mammo.cli import main
from napari_mammo.engine.weights import load_weights, save_weights
from napari_mammo.evaluation.metrics import roc_auc
from napari_mammo.models.cnni_bcc.predict import PatchClassifier, image_verdict
from napari_mammo.training.cnni_bcc import ClassifierConfig, train_classifier

TINY = ClassifierConfig(epochs=2, batch_size=8, patches="all", max_steps_per_epoch=2)


@pytest.fixture(scope="module")
def trained(synthetic_folder, tmp_path_factory) -> Path:
    """Weights trained for a few steps on the synthetic folder."""
    out = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    result = train_classifier(read_folder(synthetic_folder), out, TINY)
    assert result.path == out and not result.stopped
    return out


def test_weights_metadata(trained):
    state, metadata = load_weights(trained, "cnni-bcc")
    assert metadata["classes"] == ["normal", "benign", "malignant"]
    assert metadata["config"]["patches"] == "all"
    assert set(metadata["split"]) == {"test", "val", "train"}
    assert sum(t.numel() for t in state.values()) == 309_731


def test_classify_labels_layer_is_aligned(trained, synthetic_folder):
    classifier = PatchClassifier.load(trained, device="cpu")
    path = synthetic_folder / "mdb005.pgm"
    result = classifier.classify_file(path, selection="all")
    assert result.label in ("normal", "benign", "malignant")
    assert sum(result.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert result.label_image.shape == (256, 256)
    assert len(result.patches) == 4
    for patch in result.patches:
        value = result.label_image[patch["row"], patch["col"]]
        assert value == ["normal", "benign", "malignant"].index(patch["label"]) + 1
        assert (patch["row"], patch["col"]) in {(0, 0), (0, 128), (128, 0), (128, 128)}


def test_non_mias_pixel_size_is_resampled(trained):
    classifier = PatchClassifier.load(trained, device="cpu")
    pixels = np.random.default_rng(0).integers(0, 255, (512, 512), dtype=np.uint8)
    result = classifier.classify(pixels, spacing_mm=(0.1, 0.1), selection="all")
    assert result.label_image.shape == (512, 512)
    assert {(p["row"], p["col"]) for p in result.patches} == {(0, 0), (0, 256), (256, 0), (256, 256)}


def test_bad_images_give_clear_errors(trained):
    classifier = PatchClassifier.load(trained, device="cpu")
    with pytest.raises(ValueError, match="constant"):
        classifier.classify(np.full((256, 256), 7, np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        classifier.classify(np.full((256, 256), np.nan, np.float32))
    with pytest.raises(ValueError, match="2-D"):
        classifier.classify(np.zeros((2, 256, 256), np.uint8))


def test_image_verdict_uses_most_suspicious_patch():
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], np.float32)
    label, top = image_verdict(probs, threshold=0.5)
    assert label == 2 and np.allclose(top, probs[1])  # threshold 0.5: the patch's own probabilities
    label, top = image_verdict(probs, threshold=0.9)
    assert label == 0 and int(np.argmax(top)) == 0 and top.sum() == pytest.approx(1)
    assert top[1] / top[2] == pytest.approx(0.3 / 0.5)


def test_stop_keeps_best_weights(synthetic_folder, tmp_path):
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    out = tmp_path / "stopped.safetensors"
    config = ClassifierConfig(epochs=5, batch_size=4, patches="all", max_steps_per_epoch=2)
    result = train_classifier(read_folder(synthetic_folder), out, config, stop=stop)
    assert result.stopped and result.path == out and out.is_file()
    assert result.best_epoch >= 1


def test_refuses_weights_of_another_model_or_garbage(tmp_path):
    other = tmp_path / "other.safetensors"
    save_weights(other, {"x": torch.zeros(2)}, "idbll", {"classes": ["lesion"]})
    with pytest.raises(MammoInputError, match="holds weights of model 'idbll', not 'cnni-bcc'"):
        PatchClassifier.load(other)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(MammoInputError, match="garbage.safetensors: not a readable safetensors"):
        PatchClassifier.load(garbage)
    wrong = tmp_path / "wrong.safetensors"
    save_weights(wrong, {"conv1.weight": torch.zeros(1)}, "cnni-bcc", {"classes": ["normal", "benign", "malignant"]})
    with pytest.raises(MammoInputError, match="do not fit the CNNI-BCC network"):
        PatchClassifier.load(wrong)


def test_cli_classify_json(trained, synthetic_folder, capsys):
    paths = [str(synthetic_folder / "mdb001.pgm"), str(synthetic_folder / "mdb005.pgm")]
    assert main(["classify", *paths, "--model", "cnni-bcc", "--weights", str(trained), "--device", "cpu",
                 "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["path"] for e in entries] == paths
    for entry in entries:
        assert set(entry) == {"path", "label", "probabilities", "patches"}
        assert set(entry["probabilities"]) == {"normal", "benign", "malignant"}
        assert all(set(p) == {"row", "col", "label", "probabilities"} for p in entry["patches"])


def test_cli_bad_weights_is_one_line(tmp_path, synthetic_folder, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("nope")
    assert main(["classify", str(synthetic_folder / "mdb001.pgm"), "--model", "cnni-bcc", "--weights", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.safetensors" in err


def test_cli_evaluate_writes_metrics_and_plot(trained, synthetic_folder, tmp_path, capsys):
    plot = tmp_path / "roc.png"
    assert main(["evaluate", "classifier", "--data", str(synthetic_folder), "--weights", str(trained),
                 "--split", "all", "--patches", "all", "--plot", str(plot), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 6 and len(report["image"]["confusion_matrix"]) == 3
    assert {"sensitivity", "specificity"} <= set(report["image"]["per_class"]["normal"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_roc_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert np.isnan(roc_auc([1, 1], [0.2, 0.9]))


def test_cli_train_under_torchrun_with_two_processes(synthetic_folder, tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
               "-m", "napari_mammo", "train", "classifier", "--data", str(synthetic_folder), "--out", str(out),
               "--epochs", "1", "--batch-size", "4", "--patches", "all", "--device", "cpu",
               "--max-steps-per-epoch", "2", "--progress-json"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.is_file()
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(e["phase"] == "validated" for e in events)


def test_cli_training_stops_cleanly_on_sigterm_keeping_the_best(synthetic_folder, tmp_path):
    import signal

    out = tmp_path / "term.safetensors"
    command = [sys.executable, "-m", "napari_mammo", "train", "classifier", "--data", str(synthetic_folder),
               "--out", str(out), "--epochs", "500", "--batch-size", "4", "--patches", "all", "--device", "cpu",
               "--max-steps-per-epoch", "2", "--progress-json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if '"validated"' in line:
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert out.is_file() and "stopped early; kept the weights of epoch" in err


def test_cnni_bcc_is_cross_validated_in_the_screening_models_folds(synthetic_folder, tmp_path, capsys):
    from safetensors import safe_open

    out = tmp_path / "cv.json"
    assert main(["crossval", "cnni-bcc", "--data", str(synthetic_folder), "--folds", "3", "--epochs", "1",
                 "--device", "cpu", "--work", str(tmp_path / "w"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["model"] == "cnni-bcc" and len(report["per_fold"]) == 3
    assert "pooled, seed 0: cells AUC" in capsys.readouterr().out
    # each fold trained on the other folds only, and kept no test split of its own
    from napari_mammo.evaluation.crossval import woman_folds

    folds = woman_folds(read_folder(synthetic_folder), 3, 0)
    for k, held in enumerate(folds):
        with safe_open(str(tmp_path / "w" / f"cnni-bcc-seed0-fold{k}.safetensors"), "pt") as handle:
            split = json.loads(handle.metadata()["split"])
        assert split["test"] == [] and not {r.ref for r in held} & {*split["train"], *split["val"]}
