import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_mammo import read_folder
from napari_mammo.cli import main


def test_info_text_and_json(synthetic_folder, capsys):
    path = synthetic_folder / "mdb005.pgm"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "PGM 256x256 uint8, 0.2 mm pixels" in out and "label malignant" in out
    assert main(["info", "--json", str(synthetic_folder)]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == 6 and entries[4]["label"] == "malignant"
    assert all(e["shape"] == [256, 256] for e in entries)


def test_bad_input_is_one_line_on_stderr(tmp_path, capsys):
    bad = tmp_path / "mdb001.pgm"
    bad.write_bytes(b"P5\n1024 1024\n255\n" + bytes(10))
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mdb001.pgm: truncated" in err and "Traceback" not in err


def test_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "napari_mammo", "--help"], capture_output=True, text=True,
                            check=True)
    assert "info" in result.stdout


def test_core_does_not_import_napari_qt_or_torch():
    code = (
        "import sys, napari_mammo, napari_mammo.cli, napari_mammo.data.patches, napari_mammo.data.augment, "
        "napari_mammo.data.splits, napari_mammo.io.synthetic, napari_mammo.io.dicom\n"
        "bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'torch', 'magicgui') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_help_names_both_models(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "classifier" in out and "detector" in out


def test_bench_report_structure():
    """The benchmark runs end to end (tiny batch; no timing is asserted)."""
    from napari_mammo.bench.models import bench_classifier, bench_detector, format_detector_report, format_report

    report = bench_classifier(threads=1, repeats=1, batch=2)
    assert set(report["measurements"]) == {"infer_plain", "infer_fast", "train_plain", "train_fast", "image_fast"}
    assert report["inference_speedup"] > 0 and report["training_step_speedup"] > 0
    assert "inference_speedup" in format_report(report)
    detector = bench_detector(threads=1, repeats=1)
    assert detector["seconds"] > 0 and "IDBLL" in format_detector_report(detector)
    from napari_mammo.bench.models import bench_screening, format_screening_report

    screening = bench_screening(threads=1, repeats=1)
    assert 0 < screening["one_film"] and 0 < screening["both_films"] and 0 < screening["pair_per_film"]
    assert "Screening" in format_screening_report(screening)


def test_bench_of_weights_that_cannot_load_is_one_line(tmp_path, capsys):
    import pickle

    from napari_mammo import MammoInputError

    error = pickle.loads(pickle.dumps(MammoInputError(tmp_path / "w.safetensors", "damaged")))
    assert (error.path, error.problem) == (tmp_path / "w.safetensors", "damaged")
    assert main(["bench", "screening", "--weights", str(tmp_path / "missing.safetensors"), "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.safetensors" in err


def test_review_prints_the_folder_by_suspicion_with_plots(synthetic_folder, detector_file, tmp_path, capsys):
    plot = tmp_path / "review.png"
    args = ["review", "--data", str(synthetic_folder), "--model", "poster", "--split", "all", "--detector-weights",
            str(detector_file), "--threshold", "0.01", "--device", "cpu"]
    assert main([*args, "--json", "--plot", str(plot)]) == 0
    report = json.loads(capsys.readouterr().out)
    images, summary = report["images"], report["summary"]
    assert len(images) == 6 and plot.read_bytes().startswith(b"\x89PNG")
    assert [i["abnormality"] for i in images] == sorted((i["abnormality"] for i in images), reverse=True)
    located = sum(1 for r in read_folder(synthetic_folder) for les in r.lesions if les.located)
    assert summary["lesions"] == sum(i["lesions"] for i in images) == located > 0
    assert summary["fp_per_image"] == sum(i["false_positives"] for i in images) / 6
    assert set(summary["sensitivity_at_fp"]) == {"0.5", "1", "2"}
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "verdict accuracy" in text and "mdb005" in text
    # the shipped weights' test split names mini-MIAS images, not these
    assert main(["review", "--data", str(synthetic_folder), "--model", "poster", "--split", "test"]) == 2
    assert "none of the weights' 'test' images are in this folder; use --split all" in capsys.readouterr().err


def test_review_screens_by_default_with_the_other_film(synthetic_folder, screening_file, capsys):
    from napari_mammo.models.screener import Screener, partner_file

    args = ["review", "--data", str(synthetic_folder), "--weights", str(screening_file), "--threshold", "0.01"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "screening" and len(report["images"]) == 6
    screener = Screener.load(screening_file)
    row = next(i for i in report["images"] if i["ref"] == "mdb005")
    expected = screener.screen_file(row["path"], partner_file(row["path"]))
    assert expected.both_breasts and row["verdict"] == expected.label and row["films"] == "both"
    assert row["abnormality"] == pytest.approx(1 - expected.probabilities["normal"])
    assert row["best_box"] == pytest.approx(max(s for _, s in expected.boxes))
    # without --threshold, the boxes are counted at the weights' own operating point
    assert main(["review", "--data", str(synthetic_folder), "--weights", str(screening_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["threshold"] == pytest.approx(screener.box_threshold)
    # the poster's weights with the screening model are refused, not ignored
    assert main([*args, "--detector-weights", str(screening_file)]) == 2
    assert "add --model poster" in capsys.readouterr().err


def test_napari_memory_benchmark_runs_the_whole_workflow():
    from napari_mammo.plugin.memory_bench import bench_viewer_memory, format_memory_report

    report = bench_viewer_memory()
    assert report["layers"] == ["mdb001", "mdb001 lesions", "mdb001 patch classes", "mdb001 suspicion",
                                "mdb001 detections"]
    stages = list(report["stages_mb"].values())
    assert stages == sorted(stages) and report["peak_rss_mb"] == stages[-1]  # a peak never falls
    assert report["peak_rss_mb"] < report["limit_mb"], format_memory_report(report)


def test_napari_benchmark_without_a_display_says_how(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main(["bench", "napari"]) == 2
    assert "xvfb-run -a napari-mammo bench napari" in capsys.readouterr().err


def test_a_folder_is_its_images_and_bad_thresholds_are_refused(screening_file, synthetic_folder, capsys):
    from napari_mammo.cli import main

    assert main(["classify", str(synthetic_folder), "--weights", str(screening_file), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [Path(e["path"]).name for e in entries] == sorted(p.name for p in synthetic_folder.glob("*.pgm"))
    with pytest.raises(SystemExit) as stopped:
        main(["detect", str(synthetic_folder / "mdb001.pgm"), "--score-threshold", "2"])
    assert stopped.value.code == 2 and "not between 0 and 1" in capsys.readouterr().err


def test_info_into_a_closed_pipe_ends_quietly(synthetic_folder):
    command = f"{sys.executable} -m napari_mammo info {synthetic_folder} {synthetic_folder} | head -n 1"
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_an_empty_png_is_one_line(tmp_path, capsys):
    from napari_mammo.cli import main

    (tmp_path / "empty.png").write_bytes(b"")
    assert main(["info", str(tmp_path / "empty.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty.png" in err


def test_evaluate_on_another_labelled_folder_takes_every_image_and_says_so(synthetic_folder, capsys):
    from napari_mammo.cli import main

    # the shipped weights' test images (mdb015, …) are not in this folder: every image is evaluated
    assert main(["evaluate", "detector", "--data", str(synthetic_folder), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["images"] == len(list(synthetic_folder.glob("*.pgm")))
    assert "evaluating all" in captured.err and "--split test" in captured.err
    assert main(["evaluate", "detector", "--data", str(synthetic_folder), "--split", "test"]) == 2
    assert "use --split all" in capsys.readouterr().err


def test_resume_goes_on_from_the_last_finished_epoch_as_if_never_stopped(synthetic_folder, tmp_path, capsys):
    from napari_mammo import read_folder
    from napari_mammo.training.cnni_bcc import ClassifierConfig, train_classifier
    from napari_mammo.training.loop import checkpoint_path

    config = ClassifierConfig(epochs=2, batch_size=4, patches="all", max_steps_per_epoch=2)
    records = read_folder(synthetic_folder)
    whole = tmp_path / "whole.safetensors"
    uninterrupted = train_classifier(records, whole, config)
    assert not checkpoint_path(whole).exists()  # a finished run leaves no checkpoint
    calls = []
    stopped = tmp_path / "stopped.safetensors"
    result = train_classifier(records, stopped, config, stop=lambda: calls.append(1) or len(calls) > 2)
    assert result.stopped and checkpoint_path(stopped).is_file() and len(result.history) == 1
    args = ["train", "classifier", "--data", str(synthetic_folder), "--out", str(stopped), "--epochs", "2",
            "--batch-size", "4", "--patches", "all", "--max-steps-per-epoch", "2", "--resume"]
    assert main([*args, "--learning-rate", "0.01"]) == 2
    assert "resume with the same options" in capsys.readouterr().err
    resumed = train_classifier(records, stopped, config, resume=True)
    assert not checkpoint_path(stopped).exists()
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    np.testing.assert_allclose([h["train_loss"] for h in resumed.history],
                               [h["train_loss"] for h in uninterrupted.history], rtol=1e-5)
    assert resumed.best_epoch == uninterrupted.best_epoch


def test_resume_without_a_checkpoint_is_one_line(synthetic_folder, tmp_path, capsys):
    out = tmp_path / "never.safetensors"
    assert main(["train", "classifier", "--data", str(synthetic_folder), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint beside it" in err


def test_train_screening_writes_weights_that_load_with_progress_as_json(synthetic_folder, tmp_path, capsys):
    from napari_mammo.models.screener import Screener

    out = tmp_path / "screening.safetensors"
    args = ["train", "screening", "--data", str(synthetic_folder), "--out", str(out), "--cv-seeds", "1",
            "--tune-epochs", "1", "--tune-steps", "2", "--verdict-epochs", "2"]
    assert main([*args, "--folds", "5"]) == 2  # three women cannot fill five folds
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--folds must be between 2 and the number of women" in err and "(3)" in err
    assert not out.exists()
    assert main([*args, "--folds", "3", "--progress-json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {"backbone features", "folds", "fine-tuning"} <= {event["phase"] for event in events}
    assert [e["step"] for e in events if e["phase"] == "folds"] == [1, 2, 3]
    # each fold and the final fit: the boxes' map for one epoch of two steps, the verdict map for two epochs
    assert [e["steps"] for e in events if e["phase"] == "fine-tuning"][-6:] == [2, 2, 4, 4, 4, 4]
    screener = Screener.load(out)
    assert screener.tuned is not None and "verdict_map_asymmetry" in screener.heads.standardise
    assert screener.metadata["crossval"]["folds"] == 3


def _stop_requested_at(phase: str, monkeypatch) -> list[str]:
    """Make `train` request a stop at the first `phase` event, as the signal handler does where its own
    KeyboardInterrupt is lost (raised inside a destructor); returns the phases reported."""
    import threading

    from napari_mammo.cli import train

    seen: list[str] = []
    monkeypatch.setattr(train, "STOP_REQUESTED", threading.Event())

    def printer(as_json: bool):
        def show(event: dict) -> None:
            seen.append(event["phase"])
            if event["phase"] == phase:
                train.STOP_REQUESTED.set()

        return show, lambda: None

    monkeypatch.setattr(train, "progress_printer", printer)
    return seen


def test_a_stop_request_ends_the_screening_fit_at_its_next_event(synthetic_folder, tmp_path, capsys, monkeypatch):
    seen = _stop_requested_at("backbone features", monkeypatch)
    out = tmp_path / "screening.safetensors"
    assert main(["train", "screening", "--data", str(synthetic_folder), "--out", str(out), "--folds", "3",
                 "--tune-epochs", "1", "--tune-steps", "2", "--verdict-epochs", "1"]) == 130
    assert seen == ["backbone features"] and not out.exists()
    assert capsys.readouterr().err.strip().endswith("napari-mammo: interrupted")


def test_a_stop_request_ends_classifier_training_keeping_the_best(synthetic_folder, tmp_path, capsys, monkeypatch):
    seen = _stop_requested_at("training", monkeypatch)
    out = tmp_path / "stopped.safetensors"
    assert main(["train", "classifier", "--data", str(synthetic_folder), "--out", str(out), "--epochs", "3",
                 "--batch-size", "4", "--patches", "all", "--max-steps-per-epoch", "2", "--device", "cpu"]) == 130
    assert seen.count("training") == 1 and out.is_file()
    assert "stopped early; kept the weights of epoch 1" in capsys.readouterr().err
