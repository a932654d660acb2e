"""``cardioseg report``: a one-page HTML + PNG report of one label image.

The page shows what the Measure widget shows: the labels over the image (middle slice and max
projection of a stack), histograms of key columns, the summary numbers and per-object
statistics, with a protocol line. Core modules are imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import CardiosegError
from . import args as checked


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = subparsers.add_parser(
        "report",
        help="one-page HTML/PNG report of a label image: overlay, histograms, summary numbers",
        description="Measure a label image and write REPORT.html (self-contained) and REPORT.png "
        "beside it: the labels over the image, histograms of key columns, summary numbers and "
        "per-object statistics. Without a pixel size (in the file or --pixel-size) every "
        "number is in pixels.",
    )
    p.add_argument("labels", type=Path, help="label image or mask (TIFF, 2D or 3D)")
    p.add_argument("--kind", required=True, help="which measurements: zdisk or shapes")
    p.add_argument("--image", type=Path,
                   help="intensity image drawn under the labels (zdisk: also the Fourier period)")
    p.add_argument("--pixel-size", type=checked.pixel_size, nargs="+", metavar="UM",
                   help="pixel size in µm: Z Y X or Y X (default: read from the labels file)")
    p.add_argument("--class", dest="class_value", type=int, default=None, metavar="N",
                   help="report only label value N of a multi-class prediction")
    p.add_argument("--model", default=None,
                   help="name of the model that made the labels (shown in the protocol line)")
    p.add_argument("--title", default=None, help="page title (default: the labels file name)")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="REPORT.html to write (REPORT.png is written beside it)")
    checked.add_selection(p, "--image (and of the label image only when it has several)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read, measure, write the HTML and the PNG."""
    from ..core.io import read_single
    from ..core.measure import get_kind
    from ..core.one_file import resolve_pixel_size
    from ..core.report import HTML_SUFFIXES, make_report
    from ..core.writes import check_outputs

    get_kind(args.kind)
    if args.output.suffix.lower() not in HTML_SUFFIXES:
        raise CardiosegError(f"{args.output}: give an .html file name for -o")
    check_outputs([args.output, args.output.with_suffix(".png")], [args.labels, args.image])
    labels = read_single(args.labels, "labels", channel=args.channel, scene=args.scene,
                         only_if_several=True)
    spacing = resolve_pixel_size(args.pixel_size, labels.scale, labels.calibrated,
                                 labels.data.ndim)
    image = (read_single(args.image, "image", channel=args.channel, scene=args.scene).data
             if args.image else None)
    report = make_report(
        image, labels.data, spacing, args.kind, args.output, args.title or args.labels.name,
        labels_name=args.labels.name, image_name=args.image.name if args.image else None,
        model=args.model, class_value=args.class_value,
    )
    units = "µm" if report.result.calibrated else "pixels (no pixel size: give --pixel-size for µm)"
    print(f"{len(report.result.objects)} objects in {units} -> {report.html}, {report.png}")
    return 0
