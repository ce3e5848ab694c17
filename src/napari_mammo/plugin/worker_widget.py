"""A widget whose button starts a job in a worker thread and, while it runs, cancels it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, ProgressBar, PushButton

from napari_mammo.engine.runtime import DEVICES
from napari_mammo.plugin.weights_registry import REGISTRY, SHIPPED, follow_registry

OTHER_FILE = "other file…"


class ScrollingContainer(Container):
    """A container that napari docks with its scroll area, so that tall widgets fit a laptop screen.

    napari docks a magicgui widget's `native`, which for a scrollable container is the
    inner widget (without the scroll area); here `native` is the scroll area itself.
    """

    def __init__(self) -> None:
        from qtpy.QtCore import Qt

        super().__init__(labels=True, scrollable=True)
        self.root_native_widget.widget().layout().setAlignment(Qt.AlignmentFlag.AlignTop)  # no stretched rows

    @property
    def native(self):
        """The scroll area around the widgets (what napari docks)."""
        return self.root_native_widget

    def explain(self, *tips: tuple) -> None:
        """Give each (control, text) pair its tooltip."""
        for widget, tip in tips:
            widget.tooltip = tip


def add_qt_widget(container: Container, widget) -> None:
    """Append a plain Qt widget (a plot canvas) below a container's widgets, inside its scroll area."""
    root = container.root_native_widget
    inner = root.widget() if hasattr(root, "widget") else root
    inner.layout().addWidget(widget)


class WorkerWidget(ScrollingContainer):
    """Subclasses build their inputs, call `launch` from `start`, and show results."""

    idle_text = "Run"

    def __init__(self) -> None:
        super().__init__()
        self._worker = None
        self.run_button = PushButton(text=self.idle_text)
        self.progress = ProgressBar(label="progress", value=0, max=1, visible=False)
        self.run_button.changed.connect(self._toggle)

    @property
    def busy(self) -> bool:
        """Whether a job is running (the button then reads Cancel)."""
        return self._worker is not None

    def start(self):
        """Start the job; returns its worker (or None when it cannot start)."""
        raise NotImplementedError

    def _toggle(self, _=None) -> None:
        """Start the job, or cancel the running one (it stops at its next progress step)."""
        if self._worker is not None:
            self._worker.quit()
            return
        self.start()

    def launch(self, job: Callable, on_result: Callable, status: Label, failure: str, busy: str):
        """Run a progress generator `job` in a worker thread wired to this widget; returns the worker."""
        from napari.qt.threading import thread_worker
        from napari.utils.notifications import show_error

        worker = thread_worker(job, start_thread=False, ignore_errors=True)()
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(on_result)
        worker.errored.connect(lambda err: show_error(f"napari-mammo: {failure}: {err}"))
        worker.aborted.connect(lambda: setattr(status, "value", "cancelled"))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.text = "Cancel"
        self.progress.visible, self.progress.value = True, 0
        status.value = busy
        worker.start()
        return worker

    def _on_progress(self, event: dict) -> None:
        """Show a progress event."""
        self.progress.max = event["steps"]
        self.progress.value = event["step"]

    def _on_finished(self) -> None:
        """Back to the idle state."""
        self._worker = None
        self.run_button.text = self.idle_text
        self.progress.visible = False


class ModelWidget(WorkerWidget):
    """A worker widget that runs a model: weights (shipped, trained here, or a file) and a device."""

    model_name = ""

    def __init__(self) -> None:
        super().__init__()
        self.weights = ComboBox(label="weights", choices=lambda _: REGISTRY.choices(self.model_name) + [OTHER_FILE])
        self.weights_file = FileEdit(label="weights file", filter="*.safetensors", visible=False)
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.weights.changed.connect(lambda v: setattr(self.weights_file, "visible", v == OTHER_FILE))
        follow_registry(self, [self.weights])

    def weights_path(self) -> Path | None:
        """The chosen weights file, or None for the shipped default."""
        if self.weights.value == SHIPPED:
            return None
        if self.weights.value == OTHER_FILE:
            return Path(self.weights_file.value)
        return Path(self.weights.value)
