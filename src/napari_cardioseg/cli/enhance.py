"""``cardioseg enhance``: contrast enhancement of a TIFF, keeping its dtype and pixel size."""

from __future__ import annotations

import argparse

from ..core.contrast import METHODS, enhance_steps
from ..core.io import check_outputs, read_single, write_tiff
from .progress import drain_with_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``enhance`` subcommand."""
    p = subparsers.add_parser(
        "enhance", help="enhance contrast (AGCWD, extended AGCWD, percentile stretch)",
        description="Enhance the contrast of a 2D/3D greyscale TIFF. The output keeps the input's dtype "
        "(spanning its full range; floats 0..1) and pixel size.",
    )
    p.add_argument("input", help="greyscale TIFF / OME-TIFF (YX or ZYX)")
    p.add_argument("-o", "--output", required=True, help="output TIFF")
    # checked by the core (one-line error listing the names) rather than argparse's choices
    p.add_argument("--method", default="agcwd", metavar="{" + ",".join(METHODS) + "}",
                   help="enhancement method (default: agcwd)")
    p.add_argument("--alpha", type=float, help="AGCWD weighting exponent in (0, 1] (default 0.5)")
    p.add_argument("--n-sigma", type=float, help="agcwd-extended outlier range in σ (default 3.5)")
    p.add_argument("--bins", type=int, help="AGCWD histogram bins (default: one per grey level for "
                   "8/16-bit data, else 65536)")
    p.add_argument("--low", type=float, help="percentile: lower percentile (default 5)")
    p.add_argument("--high", type=float, help="percentile: upper percentile (default 98)")
    p.add_argument("--per-slice", action="store_true",
                   help="fit each Z slice separately instead of the whole stack")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read, enhance with a progress bar, write with the same pixel size."""
    params = {name: getattr(args, name) for name in ("alpha", "n_sigma", "bins", "low", "high")
              if getattr(args, name) is not None}
    check_outputs([args.output], [args.input])
    image = read_single(args.input)
    steps = enhance_steps(image.data, args.method, per_slice=args.per_slice, **params)
    result = drain_with_bar(steps, f"enhance ({args.method})")
    write_tiff(args.output, result, image.scale)
    print(f"wrote {args.output}")
    return 0
