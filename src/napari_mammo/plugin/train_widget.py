"""The Train widget: trains a model in a separate process, with progress, a live plot and Stop.

Training runs as `python -m napari_mammo train …` in a child process: it keeps the GUI
responsive, keeps torch's optimiser (which imports triton) out of napari's process, and
Stop sends the child SIGTERM, which it takes as Ctrl-C: it keeps the best weights so far and exits.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, FileEdit, Label, ProgressBar, PushButton, SpinBox

from napari_mammo.engine.runtime import DEVICES
from napari_mammo.plugin.weights_registry import REGISTRY
from napari_mammo.plugin.widget_settings import remember
from napari_mammo.plugin.worker_widget import ScrollingContainer, add_qt_widget

if TYPE_CHECKING:
    import napari

OPEN_LAYERS = "open layers (image + lesion shapes)"


RECIPES = {
    "shipped: breast patches + lesion crops": ("--patches", "breast", "--crops-per-lesion", "16"),
    "poster: middle 4 columns": ("--patches", "middle"),
}
"""Classifier recipes: the one the shipped weights were trained with, and the poster's."""


MODELS = {"classifier": "cnni-bcc", "detector": "idbll", "screening": "screening"}
"""The widget's model choices and the weights each one writes."""


def training_command(model: str, data: Path, out: Path, options: tuple[str, ...] = ()) -> list[str]:
    """The command line that trains `model` with JSON progress on stdout (the output was chosen in a save
    dialog, so it may replace that file)."""
    return [sys.executable, "-m", "napari_mammo", "train", model, "--data", str(data), "--out", str(out),
            "--progress-json", "--overwrite", *options]


class TrainingProcess:
    """A training child process whose JSON progress lines are read by `events()`."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.process: subprocess.Popen | None = None
        self.stop_requested = False

    def events(self):
        """Generator: start the child, yield its progress events, return (exit code, last stderr line, whether it
        was stopped: by `stop()`, or by Ctrl-C in napari's terminal)."""
        # stderr goes to a file: a pipe read only at the end would block a child that writes more than it holds
        with tempfile.TemporaryFile(mode="w+") as errors:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=errors, text=True,
                                            bufsize=1)
            for line in self.process.stdout:
                line = line.strip()
                if line.startswith("{"):
                    yield json.loads(line)
            self.process.wait()
            errors.seek(0)
            err = errors.read().strip().splitlines()
        code = self.process.returncode
        return code, err[-1] if err else "", code == 130 or (self.stop_requested and code != 0)

    def stop(self) -> None:
        """Stop the child: it takes SIGTERM as Ctrl-C, keeps its best weights and exits. SIGTERM, not SIGINT:
        a child that has not yet set its handler then ends at once, where a SIGINT would be lost if napari was
        started with SIGINT ignored (as a shell's background jobs are)."""
        if self.process is not None and self.process.poll() is None:
            self.stop_requested = True
            self.process.send_signal(signal.SIGTERM)


class LossPlot:
    """A small matplotlib canvas of training loss and validation score per epoch."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.5, 2.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot()
        self.steps: list[float] = []
        self.losses: list[float] = []
        self.epochs: list[int] = []
        self.scores: list[float] = []

    def add(self, event: dict) -> None:
        """Add a training or validation event and redraw."""
        if event.get("phase") == "training":
            self.steps.append(event["epoch"] - 1 + event["step"] / event["steps"])
            self.losses.append(event["loss"])
        elif event.get("phase") == "validated":
            self.epochs.append(event["epoch"])
            self.scores.append(event.get("val_score", float("nan")))
        else:
            return
        self.axes.clear()
        self.axes.plot(self.steps, self.losses, lw=0.8, label="train loss")
        if self.epochs:
            self.axes.plot(self.epochs, self.scores, "o-", label="validation score")
        self.axes.set_xlabel("epoch")
        self.axes.legend(fontsize=7)
        self.canvas.draw_idle()


class TrainWidget(ScrollingContainer):
    """Data (a MIAS folder or the open layers), epochs, device, output file; Train toggles to Stop."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, model: str = "classifier") -> None:
        viewer = napari_viewer  # napari injects the viewer by this parameter's name
        super().__init__()
        self.viewer = viewer
        self._worker = None
        self._process: TrainingProcess | None = None
        self._closed = False
        self.model = ComboBox(label="model", choices=list(MODELS), value=model)
        self.source = ComboBox(label="data", choices=["MIAS folder", OPEN_LAYERS], value="MIAS folder")
        self.data = FileEdit(label="folder", mode="d")
        self.epochs = SpinBox(label="epochs", value=10, min=1, max=1000)
        self.recipe = ComboBox(label="recipe", choices=list(RECIPES), value=next(iter(RECIPES)))
        self.cv_seeds = SpinBox(label="fold seeds", value=1, min=1, max=10)
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.out = FileEdit(label="output", mode="w", filter="*.safetensors",
                            value=str(Path.home() / "napari-mammo" / "cnni-bcc-trained.safetensors"))
        self.train_button = PushButton(text="Train")
        self.progress = ProgressBar(label="progress", value=0, max=1)
        self.status = Label(label="status", value="")
        self.plot = LossPlot()
        self.extend([self.model, self.source, self.data, self.epochs, self.recipe, self.cv_seeds, self.device,
                     self.out,
                     self.train_button,
                     self.progress, self.status])
        add_qt_widget(self, self.plot.canvas)
        self.explain((self.model, "CNNI-BCC (the poster's patch classifier), the IDBLL detector, or the screening "
                                  "model (Classify's default: heads and a tuned cell map on the pretrained "
                                  "backbone, fitted on every image)"),
                     (self.source, "a MIAS-style folder (PGM + Info.txt), or the open image and its "
                                   "'<image> lesions' shapes"),
                     (self.data, "the folder holding Info.txt and the images"),
                     (self.epochs, "passes over the training images"),
                     (self.recipe, "the shipped weights' recipe, or the poster's middle four columns"),
                     (self.cv_seeds, "screening: seeds of the 5-fold cross-validation by woman that calibrates "
                                     "the verdict and gives the held-out figures (the model is the same; each seed "
                                     "is about 22 min on 2 cores; the shipped model used 1)"),
                     (self.device, "where torch runs"),
                     (self.out, "the weights file to write (the best epoch on validation)"),
                     (self.train_button, "train in a separate process; press again to stop and keep "
                                         "the best weights so far"))
        self._show_options(model)
        self.source.changed.connect(lambda v: setattr(self.data, "visible", v == "MIAS folder"))
        self.model.changed.connect(self._default_output)
        self.train_button.changed.connect(self._toggle)
        self.native.destroyed.connect(self._on_destroyed)
        remember("train", {"source": self.source, "data": self.data, "epochs": self.epochs, "recipe": self.recipe,
                           "cv_seeds": self.cv_seeds, "device": self.device, "out": self.out})
        self.extra_args: tuple[str, ...] = ()

    @property
    def busy(self) -> bool:
        """Whether training is running (the button then reads Stop)."""
        return self._worker is not None

    def _show_options(self, model: str) -> None:
        """Show the options the chosen model takes (the screening model has no epochs, recipe or device)."""
        self.recipe.visible = model == "classifier"
        self.cv_seeds.visible = model == "screening"
        self.epochs.visible = self.device.visible = model != "screening"

    def _default_output(self, model: str) -> None:
        """Suggest an output file named for the model, and show its options."""
        self._show_options(model)
        self.out.value = str(Path(self.out.value).with_name(f"{MODELS[model]}-trained.safetensors"))

    def _toggle(self, _=None) -> None:
        """Start training, or stop the running one."""
        if self._worker is not None:
            self.status.value = "stopping: keeping the best weights so far…"
            self._stop_process()
            return
        self.start()

    def _stop_process(self) -> None:
        """Stop the training child, if one runs: it keeps its best weights and exits."""
        if self._process is not None:
            self._process.stop()

    def _on_destroyed(self, _=None) -> None:
        """napari closed mid-training: stop the child as Stop does; nothing is shown any more."""
        self._closed = True
        self._stop_process()

    def data_folder(self) -> Path:
        """The MIAS folder to train on; the open layers are first written out as one."""
        if self.source.value == "MIAS folder":
            return Path(self.data.value)
        from napari_mammo.plugin.annotations import export_layers_as_mias

        folder = Path(tempfile.mkdtemp(prefix="napari-mammo-layers-"))
        export_layers_as_mias(self.viewer, folder)
        return folder

    def command(self, data: Path) -> list[str]:
        """The training command for the chosen model, recipe, epochs (or fold seeds), device and output."""
        if self.model.value == "screening":
            options = ("--cv-seeds", str(self.cv_seeds.value))
        else:
            recipe = RECIPES[self.recipe.value] if self.model.value == "classifier" else ()
            options = ("--epochs", str(self.epochs.value), "--device", self.device.value, *recipe)
        return training_command(self.model.value, data, Path(self.out.value), (*options, *self.extra_args))

    def start(self):
        """Launch the training process in a worker; returns the worker."""
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error

        try:
            data = self.data_folder()
        except (ValueError, OSError) as err:
            show_error(f"napari-mammo: cannot train: {err}")
            return None
        out = Path(self.out.value)
        self._process = TrainingProcess(self.command(data))
        worker = thread_worker(self._process.events, start_thread=False, ignore_errors=True)()
        worker.yielded.connect(self._on_event)
        worker.returned.connect(lambda value: self._on_done(value, out))
        worker.errored.connect(lambda err: show_error(f"napari-mammo: training failed: {err}"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.train_button.text = "Stop"
        self.status.value = "starting…"
        worker.start()
        return worker

    def _on_event(self, event: dict) -> None:
        """Show a progress event from the training process."""
        if self._closed:
            return
        self.plot.add(event)
        if event["phase"] == "training":
            self.progress.max = event["steps"]
            self.progress.value = event["step"]
            self.status.value = (f"epoch {event['epoch']}/{event['epochs']}, loss {event['loss']:.3f}, "
                                 f"about {event['eta_s'] / 60:.1f} min left")
        elif event["phase"] == "reading":
            self.status.value = f"reading images {event['step']}/{event['steps']}"
        elif "step" in event and "steps" in event:  # the screening model: features, folds, fine-tuning
            self.progress.max, self.progress.value = event["steps"], event["step"]
            self.status.value = f"{event['phase']} {event['step']}/{event['steps']}"

    def _on_done(self, value, out: Path) -> None:
        """Register the trained weights, or report why there are none."""
        from napari.utils.notifications import show_error, show_info

        code, message, stopped = value
        if self._closed:
            return
        if stopped and self.model.value == "screening":  # fitted whole: a stopped fit leaves nothing new
            show_info("napari-mammo: stopped; the screening model is fitted whole, so nothing new was written")
            self.status.value = "stopped; nothing written"
        elif out.is_file() and code in (0, 130):
            REGISTRY.add(MODELS[self.model.value], out)
            show_info(f"napari-mammo: weights saved to {out}")
            self.status.value = f"{'stopped; ' if stopped else ''}weights in {out.name}"
        elif stopped:
            show_info("napari-mammo: stopped before any weights were kept")
            self.status.value = "stopped; nothing written"
        else:
            show_error(f"napari-mammo: training ended without weights: {message or f'exit code {code}'}")
            self.status.value = "failed"

    def _on_finished(self) -> None:
        """Back to the idle state."""
        self._worker = None
        self._process = None
        if not self._closed:
            self.train_button.text = "Train"
