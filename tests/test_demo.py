"""The main job on the embedded default."""

import json

from napari_mammo.cli import main


def test_headless_demo_writes_screenshot_and_report(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NAPARI_MAMMO_MIAS", raising=False)
    assert main(["demo", "--headless", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["image"] == "synthetic sample" and report["truth"]["label"] == "malignant"
    assert report["classification"]["label"] in ("normal", "benign", "malignant")
    assert 0 < report["box_threshold"] < 1
    assert all(d["score"] >= report["box_threshold"] for d in report["detections"])
    assert "screenshot:" in capsys.readouterr().out


def test_demo_opens_napari_with_all_layers(make_napari_viewer, monkeypatch):
    import napari

    from napari_mammo import demo

    monkeypatch.delenv("NAPARI_MAMMO_MIAS", raising=False)
    viewers = []
    monkeypatch.setattr(napari, "run", lambda: viewers.append(napari.current_viewer()))
    image, record, title = demo.demo_image()
    classification, detections, threshold = demo.run_models(image)
    demo.open_in_napari(image, record, classification, detections, title, threshold)
    (viewer,) = viewers
    kinds = [type(layer).__name__ for layer in viewer.layers]
    assert kinds == ["Image", "Labels", "Image", "Shapes", "Shapes"]  # image, patches, heatmap, boxes, truth
    assert viewer.layers[3].metadata["model"] == "screening"
    viewer.close()


def test_demo_screenshot_captures_the_napari_window(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    monkeypatch.delenv("NAPARI_MAMMO_MIAS", raising=False)
    shot = tmp_path / "window.png"
    assert main(["demo", "--screenshot", str(shot)]) == 0
    pixels = np.asarray(Image.open(shot))
    assert pixels.ndim == 3 and pixels.shape[0] >= 600 and pixels.shape[1] >= 1000 and pixels.std() > 10
    assert f"screenshot: {shot}" in capsys.readouterr().out
    assert main(["demo", "--headless", "--screenshot", str(shot)]) == 2
    assert "needs a display" in capsys.readouterr().err
