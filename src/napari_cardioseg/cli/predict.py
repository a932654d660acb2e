"""``cardioseg predict``: segment a TIFF with a pretrained or user model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.device import DEVICES
from . import args as checked


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict", description="Predict labels (0 background, 1 first class, ...) for a 2D/3D "
        "greyscale TIFF. Outputs keep the input's pixel size.",
    )
    p.add_argument("input", help="greyscale TIFF / OME-TIFF (YX or ZYX)")
    p.add_argument("--model", required=True, type=checked.model_name,
                   help="pretrained or user model name, or a path to NAME.json/.safetensors")
    p.add_argument("-o", "--output", required=True, help="labels TIFF (uint8)")
    p.add_argument("--prob", help="probability TIFF (float32) of the foreground class; with more "
                   "than two classes one file per class, PROB-<class>.tif")
    p.add_argument("--tile", type=int,
                   help="tile edge in pixels (default: automatic from the model's receptive field)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap 0..0.5 (default 0.25)")
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="default: auto")
    p.add_argument("--backend", default="auto", choices=checked.BACKENDS,
                   help="CPU inference engine; auto = ONNX Runtime when installed (default: auto)")
    p.add_argument("--flips", action="store_true",
                   help="average over in-plane flips (test-time augmentation, 4x slower)")
    p.set_defaults(func=run)


def _prob_paths(prob: str, class_names: list[str]) -> list[tuple[int, Path]]:
    """Where ``--prob`` writes each foreground class: the path itself for one class."""
    path = Path(prob)
    if len(class_names) == 2:
        return [(1, path)]
    return [(c, path.with_name(f"{path.stem}-{name}{path.suffix or '.tif'}"))
            for c, name in enumerate(class_names) if c > 0]


def run(args: argparse.Namespace) -> int:
    """Read, predict with a progress bar, write labels (and probabilities) calibrated."""
    from .progress import drain_with_bar

    if args.output.rstrip("/\\").lower().endswith(".zarr"):  # stream blockwise into OME-Zarr
        from ..core.run import predict_to_zarr
        steps = predict_to_zarr(args.input, args.model, args.output, tile=args.tile,
                                overlap=args.overlap, batch=args.batch, device=args.device,
                                prob_path=args.prob, flips=args.flips, backend=args.backend)
        print(f"wrote {drain_with_bar(steps, f'predict ({args.model})')}")
        return 0
    from ..core.io import check_outputs, read_single, write_tiff
    from ..core.models import load_model
    from ..core.predict import predict_steps

    model, card = load_model(args.model)
    probs = _prob_paths(args.prob, card.class_names) if args.prob else []
    check_outputs([args.output, *(path for _, path in probs)], [args.input])
    image = read_single(args.input)
    if card.pixel_size and not image.calibrated:
        print(f"note: {args.input} has no pixel size; the model was trained at "
              f"{card.pixel_size} µm")
    steps = predict_steps(image.data, model, card, tile=args.tile, overlap=args.overlap,
                          batch=args.batch, device=args.device, flips=args.flips,
                          backend=args.backend)
    result = drain_with_bar(steps, f"predict ({card.name})")
    scale = image.scale if image.calibrated else None  # never invent a calibration
    write_tiff(args.output, result.labels, scale)
    print(f"wrote {args.output}")
    if args.prob:
        for c, path in _prob_paths(args.prob, card.class_names):
            write_tiff(path, result.probabilities[c], scale)
            print(f"wrote {path}")
    return 0
