"""A widget whose button starts a job in a worker thread and, while it runs, cancels it."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import Container, Label, ProgressBar, PushButton


class WorkerWidget(Container):
    """Subclasses build their inputs, call `launch` from `start`, and show results."""

    idle_text = "Run"

    def __init__(self) -> None:
        super().__init__(labels=True)
        self._worker = None
        self.run_button = PushButton(text=self.idle_text)
        self.progress = ProgressBar(label="progress", value=0, max=1, visible=False)
        self.run_button.changed.connect(self._toggle)

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
