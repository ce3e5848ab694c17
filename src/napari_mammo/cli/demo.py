"""`napari-mammo demo`: the shipped weights on the bundled sample, in napari or as PNG + JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_mammo.cli.common import has_display


def run(args: argparse.Namespace) -> int:
    """The main job: shipped weights on the bundled sample, in napari or as PNG + JSON."""
    from napari_mammo.demo import run_demo

    if args.screenshot and (args.headless or not has_display()):
        raise ValueError("--screenshot captures the napari window and needs a display (use xvfb-run -a); "
                         "--headless draws demo.png without napari")
    headless = args.headless or not has_display()
    result = run_demo(Path(args.out), headless, Path(args.screenshot) if args.screenshot else None)
    c = result["classification"]
    films = "both films" if c.get("both_breasts") else "this film only"
    print(f"{result['image']}: truth {result['truth']['label']}, screening {c['label']} (p abnormal "
          f"{c['score']:.2f}, threshold {c['threshold']:.2f}, {films}), {len(result['detections'])} box(es) "
          f"at score >= {result['box_threshold']:.2f}; research use only, not for diagnosis")
    if headless or args.screenshot:
        print(f"screenshot: {result['files']['png']}")
    if headless:
        print(f"report: {result['files']['json']}")
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    """The `demo` command's arguments."""
    demo = sub.add_parser("demo", help="run the shipped screening model on the bundled sample",
                          description="The shipped weights on a synthetic mammogram (or, with NAPARI_MAMMO_MIAS "
                                      "set, a mini-MIAS image it was not fitted on). With a display it opens "
                                      "napari; without one (or --headless) it writes demo.png and demo.json.")
    demo.add_argument("--headless", action="store_true", help="write a PNG and a JSON report, open no window")
    demo.add_argument("--out", default="napari-mammo-demo", metavar="DIR", help="where headless output goes")
    demo.add_argument("--screenshot", metavar="FILE.png",
                      help="open napari, save a screenshot of its window here and close it")
    return demo
