"""Benchmarks: the fast CNNI-BCC against the plain NCHW `nn.Conv2d` model, in one run.

Each measurement runs in a fresh process (so its peak RSS is its own) with the same thread
count; times are medians of repeats after a warm-up.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time

from napari_mammo.engine.progress import Progress, progress_event
from napari_mammo.engine.runtime import peak_rss_mb


def _median_time(fn, repeats: int) -> float:
    """Median wall time of `fn` over `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(kind: str, fast: bool, threads: int, repeats: int, batch: int) -> dict:
    """One measurement in this process: 'infer', 'train' or 'image'."""
    import torch
    import torch.nn.functional as F

    from napari_mammo.models.cnni_bcc.network import CNNIBCC

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = CNNIBCC(fast=fast)
    patches = torch.rand(batch, 1, 128, 128)
    if kind == "infer":
        model.eval()

        def run():
            with torch.no_grad():
                model(patches)
    elif kind == "train":
        target = torch.randint(0, 3, (batch,))
        optimiser = torch.optim.Adam(model.parameters())

        def run():
            optimiser.zero_grad()
            F.cross_entropy(model(patches), target).backward()
            optimiser.step()
    else:
        from napari_mammo.io.synthetic import synthetic_mammogram
        from napari_mammo.models.cnni_bcc.predict import PatchClassifier

        pixels, _ = synthetic_mammogram(seed=1, label="malignant")
        classifier = PatchClassifier(model.eval(), {}, "cpu", None)

        def run():
            classifier.classify(pixels, (0.2, 0.2))
    seconds = _median_time(run, repeats)
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def _measure_detector(threads: int, repeats: int) -> dict:
    """Median time to detect lesions in one synthetic 1024×1024 mammogram, in this process."""
    import torch

    from napari_mammo.io.synthetic import synthetic_mammogram
    from napari_mammo.models.idbll.network import build_idbll
    from napari_mammo.models.idbll.predict import LesionDetector

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    detector = LesionDetector(build_idbll().eval(), {}, "cpu", None)
    pixels, _ = synthetic_mammogram(seed=2, label="malignant")
    times = []
    detector.detect(pixels, (0.2, 0.2))
    for _ in range(repeats):
        start = time.perf_counter()
        detector.detect(pixels, (0.2, 0.2))
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "runs": repeats,
            "peak_rss_mb": peak_rss_mb()}


def bench_detector(threads: int = 2, repeats: int = 10) -> dict:
    """IDBLL detection time per 1024×1024 image (median) and peak RSS, in a fresh process."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.apply(_measure_detector, (threads, repeats))
    return {"threads": threads, **result, "target_seconds": 0.5}


def _measure_screening(threads: int, repeats: int, weights: str | None = None) -> dict:
    """Median time to screen one synthetic 1024×1024 mammogram with and without its other film, here, with the
    screening weights at `weights` (the shipped ones when None)."""
    import torch

    from napari_mammo.io.synthetic import synthetic_mammogram
    from napari_mammo.models.screener import Screener

    torch.set_num_threads(threads)
    screener = Screener.load(weights)
    pixels, _ = synthetic_mammogram(seed=2, label="malignant")
    other, _ = synthetic_mammogram(seed=3, label="normal")
    screener.screen(pixels, (0.2, 0.2))  # loads the backbone
    film, partner = (pixels, (0.2, 0.2)), (other, (0.2, 0.2))
    runs = {"one_film": [(film, None)], "both_films": [(film, partner)],
            "pair_per_film": [(film, partner), (partner, film)]}  # a woman's two films, one after the other
    out = {}
    for key, screenings in runs.items():
        times = []
        for _ in range(repeats):
            screener.forget_films()  # every run reads its films afresh
            start = time.perf_counter()
            for image, with_other in screenings:
                screener.screen(*image, with_other)
            times.append((time.perf_counter() - start) / len(screenings))
        out[key] = statistics.median(times)
    return {**out, "runs": repeats, "peak_rss_mb": peak_rss_mb()}


def bench_screening(threads: int = 2, repeats: int = 5, weights: str | None = None) -> dict:
    """Screening time per 1024×1024 image (median; one film, with the other film, and a film of a woman's pair
    screened each with the other), in a fresh process."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result = pool.apply(_measure_screening, (threads, repeats, weights))
    return {"threads": threads, **result, "target_seconds": 2.0}


def format_screening_report(report: dict) -> str:
    """One line for the screening benchmark."""
    mark = "ok" if report["one_film"] < report["target_seconds"] else "ABOVE TARGET"
    return (f"Screening of one 1024x1024 image, {report['threads']} CPU threads: median "
            f"{report['one_film']:.2f} s alone, {report['both_films']:.2f} s with the other film, "
            f"{report['pair_per_film']:.2f} s a film for a woman's two films screened each with the other, over "
            f"{report['runs']} runs (target < {report['target_seconds']:.0f} s per image) {mark}; "
            f"peak RSS {report['peak_rss_mb']:.0f} MB")


def _in_fresh_process(kind: str, fast: bool, threads: int, repeats: int, batch: int) -> dict:
    """Run `_measure` in a spawned process and return its result."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, (kind, fast, threads, repeats, batch))


def bench_classifier(threads: int = 2, repeats: int = 5, batch: int = 64,
                     progress: Progress | None = None) -> dict:
    """Fast vs plain CNNI-BCC: inference and a training step of `batch` patches, one whole image."""
    plan = [("infer", False, max(1, repeats // 2)), ("infer", True, repeats), ("train", False, 1),
            ("train", True, repeats), ("image", True, repeats)]
    results = {}
    for step, (kind, fast, count) in enumerate(plan):
        key = f"{kind}_{'fast' if fast else 'plain'}"
        results[key] = _in_fresh_process(kind, fast, threads, count, batch)
        if progress:
            progress(progress_event("measuring", step + 1, len(plan), key=key, seconds=results[key]["seconds"]))
    plain_infer = results["infer_plain"]["seconds"]
    return {
        "threads": threads,
        "batch": batch,
        "measurements": results,
        "inference_speedup": plain_infer / results["infer_fast"]["seconds"],
        "training_step_speedup": results["train_plain"]["seconds"] / results["train_fast"]["seconds"],
        "image_vs_plain_64_patch_forward": plain_infer / results["image_fast"]["seconds"],
        "targets": {"inference_speedup": 40.0, "training_step_speedup": 15.0,
                    "image_vs_plain_64_patch_forward": 20.0},
    }


def format_detector_report(report: dict) -> str:
    """One line for the detector benchmark."""
    mark = "ok" if report["seconds"] < report["target_seconds"] else "ABOVE TARGET"
    return (f"IDBLL detection of one 1024x1024 image, {report['threads']} CPU threads: median "
            f"{report['seconds'] * 1000:.1f} ms over {report['runs']} runs (target < "
            f"{report['target_seconds'] * 1000:.0f} ms) {mark}; peak RSS {report['peak_rss_mb']:.0f} MB")


def format_report(report: dict) -> str:
    """A readable table of a benchmark report."""
    lines = [f"CNNI-BCC benchmark: {report['batch']} patches, {report['threads']} CPU threads "
             "(median wall time; peak RSS of the measuring process)"]
    for key, value in report["measurements"].items():
        lines.append(f"  {key:<14} {value['seconds'] * 1000:10.1f} ms   peak RSS {value['peak_rss_mb']:8.0f} MB")
    for key, target in report["targets"].items():
        mark = "ok" if report[key] >= target else "BELOW TARGET"
        lines.append(f"  {key:<34} {report[key]:7.1f}x  (target >= {target:g}x) {mark}")
    return "\n".join(lines)



