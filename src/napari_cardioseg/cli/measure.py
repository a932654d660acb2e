"""``cardioseg measure``: per-object and summary tables of a label image.

Columns are in µm when the file carries a pixel size or ``--pixel-size`` is given, else in
pixels (named ``_px``, ``_px2``, ``_px3``). Core modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import CardiosegError
from . import args as checked
from . import batch as batch_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand."""
    p = subparsers.add_parser(
        "measure",
        help="measure Z-disks or 3D shapes; writes STATS.csv and STATS_summary.csv",
        description="Measure every object of a label image (or of a mask, split into connected "
        "components). Writes the per-object table to -o and the per-image summary next to it. "
        "Without a pixel size (in the file or --pixel-size) every column is in pixels.",
    )
    p.add_argument("labels", nargs="*", help="label image or mask (TIFF or OME-Zarr, 2D or 3D); several "
                   "files, folders or globs for a batch")
    p.add_argument("--kind", help="which measurements: zdisk or shapes (see --list-columns)")
    p.add_argument("--list-columns", action="store_true",
                   help="print every column (name, unit, description) of --kind, or of all "
                   "kinds, and exit")
    p.add_argument("--image", type=Path, help="intensity image (Fourier period, cell features)")
    p.add_argument("--cell-mask", type=Path, help="cell mask (adds the cell features; zdisk only)")
    checked.add_selection(p, "--image (and of the label image or cell mask only when they have "
                          "several)")
    p.add_argument("--pixel-size", type=checked.pixel_size, nargs="+", metavar="UM",
                   help="pixel size in µm: Z Y X or Y X (default: read from the file; without "
                   "one the results are in pixels)")
    p.add_argument("--objects", default="auto",
                   help="auto, components (split into connected components) or labels (as they "
                   "are); default auto")
    p.add_argument("--connectivity", type=int, default=None,
                   help="1 = faces only; default the full neighbourhood (8 in 2D, 26 in 3D)")
    p.add_argument("--min-size", type=int, default=None,
                   help="drop objects with fewer pixels (default for shapes: about a 0.2 µm "
                   "sphere, or 27 voxels / 9 pixels without a pixel size; none for zdisk)")
    p.add_argument("--min-length", type=float, default=None, metavar="UM",
                   help="Z-disk objects shorter than this are not counted (default 0.3 µm, or "
                   "3 px without a pixel size)")
    p.add_argument("--class", dest="class_value", type=int, default=None, metavar="N",
                   help="measure only label value N of a multi-class prediction, split into "
                   "connected components")
    p.add_argument("--period-range", type=float, nargs=2, default=None,
                   metavar=("MIN", "MAX"), help="sarcomere lengths searched (default 1 4 µm, or "
                   "5 50 px without a pixel size)")
    p.add_argument("--blockwise", action=argparse.BooleanOptionalAction, default=None,
                   help="read the files lazily and measure one object (shapes) or one slice "
                   "(zdisk) at a time, for label volumes larger than memory; same tables. "
                   "Default: on for OME-Zarr label images")
    p.add_argument("-o", "--output", type=Path, help="per-object CSV to write; with several inputs "
                   "a folder receiving NAME.csv and NAME_summary.csv")
    batch_args.add_arguments(p)
    p.set_defaults(func=run)


def print_columns(kind: str | None) -> None:
    """Print name, unit and description of every column of ``kind`` (or of every kind)."""
    from ..core.measure import KINDS, get_kind, list_columns

    names = [get_kind(kind).name] if kind else list(KINDS)
    for name in names:
        print(f"{name}: {KINDS[name].description}")
        for column, unit, where, text in list_columns(name):
            print(f"  {column:<30} {unit or '-':<6} {where:<22} {text}")
    print("the summary has mean_, median_ and std_ of each per-object column (circular statistics "
          "for orientations: 0° and 180° are one direction)")
    print("without a pixel size, names and units say px instead of µm (_um -> _px)")


def run(args: argparse.Namespace) -> int:
    """Read, measure with a progress bar, write both CSVs (per file with several inputs)."""
    if args.list_columns:
        print_columns(args.kind)
        return 0
    if not args.labels or args.output is None or args.kind is None:
        raise CardiosegError("give a label image, --kind and -o (or --list-columns)")
    from ..core.batch import is_batch
    from ..core.one_file import measure_file
    from .progress import drain_with_bar

    options = {"kind": args.kind, "pixel_size": args.pixel_size, "objects": args.objects,
               "connectivity": args.connectivity, "min_size": args.min_size,
               "min_length": args.min_length, "class_value": args.class_value,
               "period_range": args.period_range, "channel": args.channel, "scene": args.scene,
               "blockwise": args.blockwise}
    if is_batch(args.labels):
        return _run_many(args, options)
    steps = measure_file(args.labels[0], args.output, image=args.image, cell_mask=args.cell_mask,
                         **options)
    result = drain_with_bar(steps, "measure")
    units = "µm" if result.calibrated else "pixels (no pixel size: give --pixel-size for µm)"
    print(f"{result.count} objects in {units} -> {result.objects}; summary -> {result.summary}")
    return 0


def _run_many(args: argparse.Namespace, options: dict) -> int:
    """``-o`` is a folder receiving ``NAME.csv`` and ``NAME_summary.csv`` per label image."""
    from ..core.batch import TIFF_SUFFIXES, expand_inputs, make_jobs, output_folder, output_paths
    from ..core.measure import get_kind
    from .batch import run_jobs

    if args.image or args.cell_mask:
        raise CardiosegError("--image and --cell-mask name one file; with several label images "
                             "measure each one with its own command")
    get_kind(args.kind)  # a bad --kind fails once, not once per file
    inputs = expand_inputs(args.labels, (*TIFF_SUFFIXES, ".zarr"))
    outputs = output_paths(inputs, output_folder(args.output), ".csv")
    return run_jobs(make_jobs("measure", inputs, outputs, options), "measure", args)
