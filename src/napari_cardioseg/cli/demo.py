"""``cardioseg demo``: napari with the sample data and the widgets, or the same pipeline headless.

With a display, the viewer opens on the synthetic EM stack and Z-disk image with every widget docked,
as tabs of one dock area so that the window fits a 1280×800 screen.
Without one (or with ``--headless``) the pipeline runs through the CLI subcommands on the same samples
and writes every result into ``--out``: enhanced images, predicted labels, measurements, evaluation
and a one-page HTML/PNG report per sample.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import CardiosegError

if TYPE_CHECKING:
    import napari

WIDGETS = ("Pixel size", "Enhance contrast", "Predict", "Train from scribbles", "Measure",
           "Evaluate")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo", description="Open napari on the sample data with every widget docked; without a "
        "display (or with --headless) run the same pipeline through the CLI into --out.")
    p.add_argument("--out", default="demo_output", help="folder for the headless results")
    p.add_argument("--headless", action="store_true", help="run the CLI pipeline even with a display")
    p.set_defaults(func=run)


def has_display() -> bool:
    """Tell whether a window can be shown (X11/Wayland on Linux, always on macOS/Windows)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(args: argparse.Namespace) -> int:
    """Open the GUI when possible, else run the headless pipeline."""
    if has_display() and not args.headless:
        return run_gui()
    return run_headless(Path(args.out))


def run_gui() -> int:
    """Open napari with both samples loaded and the plugin's widgets docked."""
    import napari
    import torch  # noqa: F401  (torch's triton imported after Mesa's GL is up segfaults)

    open_demo(napari.Viewer(title="napari-cardioseg demo"))
    napari.run()
    return 0


def open_demo(viewer: napari.viewer.Viewer) -> list:
    """Load both samples into ``viewer`` and dock every widget as a tab; returns the docks."""
    viewer.open_sample("napari-cardioseg", "zdisk")
    viewer.open_sample("napari-cardioseg", "em")
    docks = [viewer.window.add_plugin_dock_widget("napari-cardioseg", name, tabify=True)[0]
             for name in WIDGETS]
    docks[0].raise_()  # the first tab shown: set the pixel size first
    return docks


def _write_samples(out: Path) -> dict[str, Path]:
    """Write the plugin's synthetic samples (image + exact truth) as calibrated TIFFs."""
    import numpy as np

    from .._sample_data import em_sample, zdisk_sample
    from ..core.writes import write_tiff

    paths = {}
    for key, layers in (("zdisk", zdisk_sample()), ("em", em_sample())):
        (image, image_meta, _), (truth, truth_meta, _) = layers[:2]
        paths[key] = write_tiff(out / f"{key}.tif", image, image_meta["scale"])
        binary = (np.asarray(truth) > 0).astype(np.uint8)  # evaluate semantic masks, not instances
        paths[f"{key}_truth"] = write_tiff(out / f"{key}_truth.tif", binary, truth_meta["scale"])
    return paths


def run_headless(out: Path) -> int:
    """Run samples → enhance → predict (pretrained) → evaluate → measure → report, all through the CLI."""
    from . import main

    out.mkdir(parents=True, exist_ok=True)
    paths = _write_samples(out)
    steps = [
        ["enhance", paths["em"], "-o", out / "em_enhanced.tif", "--method", "agcwd-extended"],
        ["enhance", paths["zdisk"], "-o", out / "zdisk_enhanced.tif", "--method", "percentile"],
        ["predict", paths["em"], "--model", "mito-em", "-o", out / "em_mito.tif"],
        ["evaluate", out / "em_mito.tif", paths["em_truth"], "-o", out / "em_evaluation.csv"],
        ["measure", out / "em_mito.tif", "--kind", "shapes", "-o", out / "em_shapes.csv"],
        ["predict", paths["zdisk"], "--model", "zdisk-fluo", "-o", out / "zdisk_labels.tif"],
        ["evaluate", out / "zdisk_labels.tif", paths["zdisk_truth"], "-o",
         out / "zdisk_evaluation.csv"],
        ["measure", out / "zdisk_labels.tif", "--kind", "zdisk", "--image", paths["zdisk"],
         "-o", out / "zdisk_stats.csv"],
        ["report", out / "em_mito.tif", "--kind", "shapes", "--image", paths["em"], "--model",
         "mito-em", "-o", out / "em_report.html"],
        ["report", out / "zdisk_labels.tif", "--kind", "zdisk", "--image", paths["zdisk"],
         "--model", "zdisk-fluo", "-o", out / "zdisk_report.html"],
    ]
    for step in steps:
        argv = [str(a) for a in step]
        print("$ cardioseg " + " ".join(argv), flush=True)
        code = main(argv)
        if code:
            raise CardiosegError(f"demo step '{argv[0]}' failed (exit {code})")
    print(f"demo results written to {out.resolve()}")
    return 0
