"""Peak memory of the whole napari workflow on one 1024×1024 mammogram, for `napari-mammo bench napari`.

Runs in a fresh spawned process so the peak RSS is that of napari, Qt, torch and both
models together: the viewer is shown, the image opened with the plugin's reader, and the
Classify (its default, the screening model) and Detect widgets, opened as the Plugins menu
opens them, run their jobs in worker threads as they do for a user.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path

from napari_mammo.engine.runtime import peak_rss_mb

LIMIT_MB = 1536


def _run_widget(app, widget, timeout: float = 300) -> None:
    """Start a widget's job and process Qt events until it is done."""
    widget.start()
    deadline = time.monotonic() + timeout
    while widget._worker is not None:
        app.processEvents()
        time.sleep(0.01)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{type(widget).__name__} did not finish in {timeout:.0f} s")


def _measure(threads: int) -> dict:
    """Open, classify and detect in a shown viewer in this process; returns the peak RSS at each stage."""
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_mammo.io.mias import write_info
    from napari_mammo.io.pgm import write_pgm
    from napari_mammo.io.synthetic import synthetic_mammogram
    torch.set_num_threads(threads)
    os.environ["NAPARI_MAMMO_CONFIG"] = tempfile.mkdtemp()  # the widgets' defaults, not anyone's saved choices
    stages = {"python + torch": peak_rss_mb()}
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    app.processEvents()
    stages["viewer shown"] = peak_rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        pixels, record = synthetic_mammogram(seed=3, size=1024, label="malignant", ref="mdb001")
        write_pgm(Path(folder, "mdb001.pgm"), pixels)
        write_info(Path(folder, "Info.txt"), [record], height=1024)
        viewer.open(str(Path(folder, "mdb001.pgm")), plugin="napari-mammo")
        app.processEvents()
    stages["1024x1024 image opened"] = peak_rss_mb()
    _, classify = viewer.window.add_plugin_dock_widget("napari-mammo", "Classify (screening, CNNI-BCC)")
    _run_widget(app, classify)
    stages["classified (screening)"] = peak_rss_mb()
    _, detect = viewer.window.add_plugin_dock_widget("napari-mammo", "Detect lesions (screening, IDBLL)")
    detect.model.value = "IDBLL (poster's SSD)"  # the other model too: the most a session holds
    _run_widget(app, detect)
    app.processEvents()
    stages["detected (IDBLL)"] = peak_rss_mb()
    layers = [layer.name for layer in viewer.layers]
    viewer.close()
    return {"stages_mb": stages, "peak_rss_mb": max(stages.values()), "layers": layers}


def bench_viewer_memory(threads: int = 2) -> dict:
    """Peak RSS of napari + both models on one 1024×1024 image, measured in a fresh process."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.apply(_measure, (threads,))
    return {"threads": threads, **result, "limit_mb": LIMIT_MB}


def format_memory_report(report: dict) -> str:
    """The stages and the verdict against the 1.5 GB limit."""
    lines = [f"napari + screening + IDBLL on one 1024x1024 image in a shown viewer ({report['threads']} CPU "
             "threads): peak RSS by stage"]
    lines += [f"  {stage:<24} {mb:8.0f} MB" for stage, mb in report["stages_mb"].items()]
    mark = "ok" if report["peak_rss_mb"] < report["limit_mb"] else "ABOVE LIMIT"
    lines.append(f"  peak {report['peak_rss_mb']:.0f} MB (limit {report['limit_mb']} MB) {mark}")
    return "\n".join(lines)
