"""``cardioseg measure``: per-object and summary tables of a label image, in physical units."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import CardiosegError
from ..core.io import check_outputs, read_single
from ..core.measure import KINDS, measure_iter
from ..core.measure.objects import OBJECT_MODES
from . import args as checked
from .progress import drain_with_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``measure`` subcommand."""
    p = subparsers.add_parser(
        "measure",
        help="measure Z-disks or 3D shapes; writes STATS.csv and STATS_summary.csv",
        description="Measure every object of a label image (or of a mask, split into connected "
        "components). Writes the per-object table to -o and the per-image summary next to it.",
    )
    p.add_argument("labels", type=Path, help="label image or mask (TIFF, 2D or 3D)")
    p.add_argument("--kind", choices=KINDS, required=True, help="which measurements")
    p.add_argument("--image", type=Path, help="intensity image (Fourier period, cell features)")
    p.add_argument("--cell-mask", type=Path, help="cell mask (adds the cell features; zdisk only)")
    p.add_argument("--pixel-size", type=checked.pixel_size, nargs="+", metavar="UM",
                   help="pixel size in µm: Z Y X or Y X (default: read from the file)")
    p.add_argument("--objects", choices=OBJECT_MODES, default="auto",
                   help="split into connected components or use the labels as they are")
    p.add_argument("--connectivity", type=int, default=None,
                   help="1 = faces only; default the full neighbourhood (8 in 2D, 26 in 3D)")
    p.add_argument("--min-size", type=int, default=0, help="drop objects with fewer pixels")
    p.add_argument("--class", dest="class_value", type=int, default=None, metavar="N",
                   help="measure only label value N of a multi-class prediction, split into "
                   "connected components")
    p.add_argument("--period-range", type=float, nargs=2, default=(1.0, 4.0),
                   metavar=("MIN", "MAX"), help="sarcomere lengths searched, µm (default 1 4)")
    p.add_argument("-o", "--output", type=Path, required=True, help="per-object CSV to write")
    p.set_defaults(func=run)


def summary_path(output: Path) -> Path:
    """``STATS.csv`` → ``STATS_summary.csv`` beside it."""
    return output.with_name(f"{output.stem}_summary{output.suffix or '.csv'}")


def resolve_pixel_size(given: list[float] | None, scale: tuple[float, ...], calibrated: bool,
                       ndim: int, path: Path) -> tuple[float, ...]:
    """The pixel size from ``--pixel-size`` or, when not given, from the file."""
    if given is None:
        if not calibrated:
            raise CardiosegError(
                f"{path}: the file has no pixel size; give it with --pixel-size "
                f"{'Z Y X' if ndim == 3 else 'Y X'} (µm)"
            )
        return scale
    if len(given) != ndim:
        raise CardiosegError(f"--pixel-size needs {ndim} values ({'Z Y X' if ndim == 3 else 'Y X'}) "
                             f"for a {ndim}D image, got {len(given)}")
    return tuple(given)


def run(args: argparse.Namespace) -> int:
    """Read, measure with a progress bar, write both CSVs."""
    check_outputs([args.output, summary_path(args.output)], [args.labels, args.image, args.cell_mask])
    labels = read_single(args.labels, "labels")
    spacing = resolve_pixel_size(args.pixel_size, labels.scale, labels.calibrated,
                                 labels.data.ndim, args.labels)
    image = read_single(args.image, "image").data if args.image else None
    cell_mask = read_single(args.cell_mask, "cell mask").data if args.cell_mask else None
    gen = measure_iter(labels.data, spacing, args.kind, image=image, cell_mask=cell_mask,
                       mode=args.objects, connectivity=args.connectivity,
                       min_size=args.min_size, period_range=tuple(args.period_range),
                       class_value=args.class_value)
    result = drain_with_bar(gen, "measure")
    result.objects.write_csv(args.output)
    summary = summary_path(args.output)
    result.summary.write_csv(summary)
    print(f"{len(result.objects)} objects -> {args.output}; summary -> {summary}")
    return 0
