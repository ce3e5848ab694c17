"""`napari-mammo bench`: speed of the models and memory of napari's workflow."""

from __future__ import annotations

import argparse
import json
import sys

from napari_mammo.cli.common import ALIASES, has_display, json_safe, model_name


def run(args: argparse.Namespace) -> int:
    """Run the speed benchmark and print the ratios."""
    from napari_mammo.bench.models import (
        bench_classifier,
        bench_detector,
        bench_screening,
        format_detector_report,
        format_report,
        format_screening_report,
    )

    def show(event: dict) -> None:
        print(f"[{event['step']}/{event['steps']}] {event['key']}: {event['seconds'] * 1000:.1f} ms", file=sys.stderr,
              flush=True)

    report = {}
    if args.model in ("cnni-bcc", "all"):
        report["classifier"] = bench_classifier(threads=args.threads, repeats=args.repeats, progress=show)
    if args.model in ("idbll", "all"):
        report["detector"] = bench_detector(threads=args.threads, repeats=max(args.repeats, 5))
    if args.model in ("screening", "all"):
        report["screening"] = bench_screening(threads=args.threads, repeats=args.repeats, weights=args.weights)
    if args.model == "napari" and not has_display():
        raise ValueError("bench napari needs a display (napari draws with OpenGL); run it as "
                         "`xvfb-run -a napari-mammo bench napari`")
    if args.model == "napari" or (args.model == "all" and has_display()):
        from napari_mammo.plugin.memory_bench import bench_viewer_memory

        report["napari"] = bench_viewer_memory(threads=args.threads)
    if args.json:
        print(json.dumps(json_safe(report), indent=2, allow_nan=False))
    else:
        if "classifier" in report:
            print(format_report(report["classifier"]))
        if "detector" in report:
            print(format_detector_report(report["detector"]))
        if "screening" in report:
            print(format_screening_report(report["screening"]))
        if "napari" in report:
            from napari_mammo.plugin.memory_bench import format_memory_report

            print(format_memory_report(report["napari"]))
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    """The `bench` command's arguments."""
    bench = sub.add_parser("bench", help="time the models (CNNI-BCC fast vs plain, IDBLL, screening); napari's memory",
                           description="CNNI-BCC: inference and a training step of 64 patches, fast vs plain "
                                       "NCHW, and one whole 1024x1024 image, each in a fresh process; prints the "
                                       "ratios. IDBLL: median detection time per 1024x1024 image. napari: peak RSS "
                                       "of the whole workflow in a shown viewer.")
    bench.add_argument("model", nargs="?", default="all",
                       choices=["all", "cnni-bcc", "idbll", "screening", "napari", *ALIASES], type=model_name,
                       help="what to measure; 'napari' is the peak RSS of a shown viewer classifying and "
                            "detecting one 1024x1024 image (needs a display: use xvfb-run -a on a server)")
    bench.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    bench.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    bench.add_argument("--weights", help="screening weights to time (default: the shipped ones)")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return bench
