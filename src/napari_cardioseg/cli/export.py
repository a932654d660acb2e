"""``cardioseg export``: write a model as a bioimage.io package (needs the ``[bioimageio]`` extra)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import args as checked


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export", help="export a model as a bioimage.io package (.zip) for other tools",
        description="Write a bioimage.io model package (spec 0.5) with pytorch_state_dict, "
        "torchscript and onnx weights, test tensors, README and cover, usable in ilastik, "
        "deepImageJ, BiaPy or bioimageio.core. Needs: pip install 'napari-cardioseg[bioimageio]'.",
    )
    p.add_argument("model", help="pretrained or user model name, or a path to NAME.json")
    p.add_argument("-o", "--output", required=True, help="package to write (MODEL.zip)")
    p.add_argument("--test-image", help="greyscale TIFF whose centre becomes the test input "
                   "(default: the plugin's sample image for the shipped models, else noise)")
    p.add_argument("--test-size", type=checked.image_edge, default=256,
                   help="test input edge in px, 16 to 2048 (default 256)")
    p.add_argument("--license", help="SPDX licence id (default: the one named in the model card)")
    p.add_argument("--author", action="append", help="author name (repeatable)")
    p.add_argument("--formats", default="pytorch_state_dict,torchscript,onnx",
                   help="comma-separated weight formats (default: all three)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the model, pick a test image, export."""
    from ..core.bioimageio_export import default_test_image, export_bioimageio
    from ..core.io import read_single
    from ..core.models import load_model

    model, card = load_model(args.model)
    image = read_single(args.test_image).data if args.test_image else default_test_image(card)
    path = export_bioimageio(model, card, Path(args.output), test_image=image,
                             test_size=args.test_size, license=args.license, authors=args.author,
                             weight_formats=tuple(f.strip() for f in args.formats.split(",")))
    print(f"wrote {path}")
    return 0
