"""``cardioseg measure``: per-object and summary tables of a label image.

Columns are in µm when the file carries a pixel size or ``--pixel-size`` is given, else in
pixels (named ``_px``, ``_px2``, ``_px3``). Core modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import CardiosegError
from . import args as checked


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand."""
    p = subparsers.add_parser(
        "measure",
        help="measure Z-disks or 3D shapes; writes STATS.csv and STATS_summary.csv",
        description="Measure every object of a label image (or of a mask, split into connected "
        "components). Writes the per-object table to -o and the per-image summary next to it. "
        "Without a pixel size (in the file or --pixel-size) every column is in pixels.",
    )
    p.add_argument("labels", type=Path, nargs="?", help="label image or mask (TIFF, 2D or 3D)")
    p.add_argument("--kind", help="which measurements: zdisk or shapes (see --list-columns)")
    p.add_argument("--list-columns", action="store_true",
                   help="print every column (name, unit, description) of --kind, or of all "
                   "kinds, and exit")
    p.add_argument("--image", type=Path, help="intensity image (Fourier period, cell features)")
    p.add_argument("--cell-mask", type=Path, help="cell mask (adds the cell features; zdisk only)")
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
    p.add_argument("-o", "--output", type=Path, help="per-object CSV to write")
    p.set_defaults(func=run)


def summary_path(output: Path) -> Path:
    """``STATS.csv`` → ``STATS_summary.csv`` beside it."""
    return output.with_name(f"{output.stem}_summary{output.suffix or '.csv'}")


def resolve_pixel_size(given: list[float] | None, scale: tuple[float, ...], calibrated: bool,
                       ndim: int) -> tuple[float, ...] | None:
    """The pixel size from ``--pixel-size``, else from the file; None when neither has one."""
    if given is None:
        return tuple(scale) if calibrated else None
    if len(given) != ndim:
        raise CardiosegError(f"--pixel-size needs {ndim} values ({'Z Y X' if ndim == 3 else 'Y X'}) "
                             f"for a {ndim}D image, got {len(given)}")
    return tuple(given)


def print_columns(kind: str | None) -> None:
    """Print name, unit and description of every column of ``kind`` (or of every kind)."""
    from ..core.measure import KINDS, get_kind, list_columns

    names = [get_kind(kind).name] if kind else list(KINDS)
    for name in names:
        print(f"{name}: {KINDS[name].description}")
        for column, unit, where, text in list_columns(name):
            print(f"  {column:<30} {unit or '-':<6} {where:<22} {text}")
    print("without a pixel size, names and units say px instead of µm (_um -> _px)")


def run(args: argparse.Namespace) -> int:
    """Read, measure with a progress bar, write both CSVs."""
    if args.list_columns:
        print_columns(args.kind)
        return 0
    if args.labels is None or args.output is None or args.kind is None:
        raise CardiosegError("give a label image, --kind and -o (or --list-columns)")
    from ..core.io import check_outputs, read_single
    from ..core.measure import get_kind, measure_iter
    from .progress import drain_with_bar

    get_kind(args.kind)
    summary = summary_path(args.output)
    check_outputs([args.output, summary], [args.labels, args.image, args.cell_mask])
    labels = read_single(args.labels, "labels")
    spacing = resolve_pixel_size(args.pixel_size, labels.scale, labels.calibrated,
                                 labels.data.ndim)
    image = read_single(args.image, "image").data if args.image else None
    cell_mask = read_single(args.cell_mask, "cell mask").data if args.cell_mask else None
    gen = measure_iter(labels.data, spacing, args.kind, image=image, cell_mask=cell_mask,
                       mode=args.objects, connectivity=args.connectivity,
                       min_size=args.min_size, period_range=args.period_range,
                       class_value=args.class_value, min_length=args.min_length)
    result = drain_with_bar(gen, "measure")
    result.objects.write_csv(args.output)
    result.summary.write_csv(summary)
    units = "µm" if result.calibrated else "pixels (no pixel size: give --pixel-size for µm)"
    print(f"{len(result.objects)} objects in {units} -> {args.output}; summary -> {summary}")
    return 0
