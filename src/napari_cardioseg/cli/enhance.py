"""``cardioseg enhance``: contrast enhancement of an image, keeping its dtype and pixel size.

The ``--method`` choices and the parameter flags come from the contrast registry
(:data:`napari_cardioseg.core.contrast.METHODS`); this module states no default or range of its own.
"""

from __future__ import annotations

import argparse

from ..core.contrast import DEFAULT_METHOD, METHODS, PER_SLICE_HELP, all_params, check_params
from . import args as checked
from . import batch as batch_args
from .progress import drain_with_bar


def _flag_help(name: str, text: str) -> str:
    """``text`` prefixed by the methods that take parameter ``name``; ``%`` escaped for argparse."""
    users = [m.name for m in METHODS.values() if any(p.name == name for p in m.params)]
    return f"{', '.join(users)}: {text}".replace("%", "%%")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``enhance`` subcommand, with one flag per parameter of the registry's methods."""
    methods = "; ".join(f"{m.name}: {m.help}" for m in METHODS.values())
    p = subparsers.add_parser(
        "enhance", help="enhance contrast (AGCWD, extended AGCWD, percentile stretch)",
        description="Enhance the contrast of a 2D/3D image (TIFF, OME-Zarr; CZI, ND2, LIF with the "
        "formats extra) into a TIFF. The output keeps the input's dtype "
        "(spanning its full range; floats 0..1, float16 written as float32) and pixel size.",
    )
    p.add_argument("input", nargs="+", help="TIFF / OME-TIFF / OME-Zarr / CZI / ND2 / LIF (YX or "
                   "ZYX); several files, folders or globs for a batch")
    p.add_argument("-o", "--output", required=True,
                   help="output TIFF; with several inputs a folder receiving NAME_enhanced.tif")
    # checked by the core (one-line error listing the names) rather than argparse's choices
    p.add_argument("--method", default=DEFAULT_METHOD, metavar="{" + ",".join(METHODS) + "}",
                   help=f"enhancement method (default: {DEFAULT_METHOD}); {methods}".replace("%", "%%"))
    for param in all_params().values():
        # no argparse default: a flag given for a method that lacks the parameter is an error
        p.add_argument(param.flag, dest=param.name, type=param.type, metavar=param.name.upper(),
                       help=_flag_help(param.name, param.describe()))
    p.add_argument("--per-slice", action="store_true", help=PER_SLICE_HELP)
    checked.add_selection(p)
    batch_args.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the parameters, read, enhance with a progress bar, write with the same pixel size.

    Several files (or a folder, or a glob): ``-o`` is a folder receiving ``NAME_enhanced.tif``.
    """
    from ..core.batch import is_batch
    from ..core.one_file import enhance_file

    params = {name: getattr(args, name) for name in all_params() if getattr(args, name) is not None}
    check_params(args.method, params)  # before reading: a bad value costs nothing
    options = {"method": args.method, "params": params, "per_slice": args.per_slice,
               "channel": args.channel, "scene": args.scene}
    if is_batch(args.input):
        from ..core.batch import expand_inputs, make_jobs, output_folder, output_paths
        from .batch import run_jobs

        inputs = expand_inputs(args.input)
        outputs = output_paths(inputs, output_folder(args.output), "_enhanced.tif")
        return run_jobs(make_jobs("enhance", inputs, outputs, options), "enhance", args)
    steps = enhance_file(args.input[0], args.output, **options)
    for path in drain_with_bar(steps, f"enhance ({args.method})"):
        print(f"wrote {path}")
    return 0
