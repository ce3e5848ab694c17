"""Shared fixtures: synthetic MIAS folders and the real data folder when it is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_mammo.io.synthetic import write_synthetic_dataset


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> Path:
    """A MIAS-layout folder of 6 small synthetic mammograms (3 women), 256×256."""
    folder = tmp_path_factory.mktemp("synthetic-mias")
    write_synthetic_dataset(folder, women=3, size=256, seed=1)
    return folder


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory) -> Path:
    """Backbone features are cached in a temporary folder, never in the user's cache."""
    folder = tmp_path_factory.mktemp("feature-cache")
    os.environ["NAPARI_MAMMO_CACHE"] = str(folder)
    return folder


@pytest.fixture(autouse=True)
def widget_settings(tmp_path_factory, monkeypatch) -> Path:
    """Each test starts with no saved widget settings, and never touches the user's own."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("NAPARI_MAMMO_CONFIG", str(folder))
    return folder


@pytest.fixture(scope="session")
def mias_folder() -> Path:
    """The real mini-MIAS folder named by NAPARI_MAMMO_MIAS; skips without it."""
    value = os.environ.get("NAPARI_MAMMO_MIAS")
    if not value or not Path(value, "Info.txt").is_file():
        pytest.skip("NAPARI_MAMMO_MIAS is not set to a mini-MIAS folder")
    return Path(value)


@pytest.fixture(scope="session")
def detector_file(synthetic_folder, tmp_path_factory) -> Path:
    """IDBLL weights trained for a few steps."""
    from napari_mammo import read_folder
    from napari_mammo.training.idbll import DetectorConfig, train_detector

    out = tmp_path_factory.mktemp("det") / "idbll.safetensors"
    train_detector(read_folder(synthetic_folder), out, DetectorConfig(epochs=1, batch_size=2, max_steps_per_epoch=2))
    return out


@pytest.fixture(scope="session")
def classifier_file(synthetic_folder, tmp_path_factory) -> Path:
    """CNNI-BCC weights trained for a few steps."""
    from napari_mammo import read_folder
    from napari_mammo.training.cnni_bcc import ClassifierConfig, train_classifier

    out = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    train_classifier(read_folder(synthetic_folder), out,
                     ClassifierConfig(epochs=1, batch_size=4, patches="all", max_steps_per_epoch=2))
    return out


@pytest.fixture(scope="session")
def screening_file(synthetic_folder, tmp_path_factory) -> Path:
    """Screening weights fitted on the small synthetic folder (3 folds, one seed; a few fine-tuning steps)."""
    from napari_mammo import read_folder
    from napari_mammo.evaluation.crossval import load_screening_features
    from napari_mammo.models.screening import ScreeningConfig
    from napari_mammo.training.screening import fit_screener

    records = read_folder(synthetic_folder)
    out = tmp_path_factory.mktemp("screening") / "screening.safetensors"
    config = ScreeningConfig(tune_epochs=1, tune_steps=2, tune_batch=4, verdict_tune_epochs=1)
    cells, stage4 = load_screening_features(records, config)
    fit_screener(records, cells, out, config, folds=3, seeds=1, stage4=stage4)
    return out


def use_weights_file(widget, path) -> None:
    """Point a model widget at a weights file, choosing the model that the file holds."""
    import sys

    from safetensors import safe_open

    if hasattr(widget, "model"):
        models = sys.modules[type(widget).__module__].MODELS  # the widget's model labels -> registry names
        try:
            with safe_open(str(path), framework="pt") as handle:
                model = handle.metadata()["model"]
            widget.model.value = next(label for label, name in models.items() if name == model)
        except Exception:  # not weights at all: the widget must say so itself
            pass
    widget.weights.value = "other file…"
    widget.weights_file.value = str(path)


WIDGETS = {
    "classify": "Classify (screening, CNNI-BCC)",
    "detect": "Detect lesions (screening, IDBLL)",
    "review": "Review",
    "train": "Train",
}
"""The manifest's display names of the widgets, by a short key."""


@pytest.fixture
def open_widget():
    """Open one of the plugin's widgets the way the Plugins menu does, docked in `viewer`; returns the widget."""

    def open_(viewer, key: str):
        _, widget = viewer.window.add_plugin_dock_widget("napari-mammo", WIDGETS[key])
        return widget

    return open_
