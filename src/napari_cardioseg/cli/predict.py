"""``cardioseg predict``: segment an image file with a pretrained or user model."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..core.backend_names import BACKENDS
from ..core.device import DEVICES
from . import args as checked
from . import batch as batch_args


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict", description="Predict labels (0 background, 1 first class, ...) for a 2D/3D "
        "image (TIFF, OME-Zarr; CZI, ND2, LIF with the formats extra). Outputs keep the input's pixel "
        "size.",
    )
    p.add_argument("input", nargs="+", help="TIFF / OME-TIFF / OME-Zarr / CZI / ND2 / LIF (YX or ZYX); "
                   "several files, folders or globs for a batch")
    p.add_argument("--model", required=True, type=checked.model_name,
                   help="pretrained or user model name, or a path to NAME.json/.safetensors")
    p.add_argument("-o", "--output", required=True, help="labels TIFF (uint8) or .zarr (streamed); with "
                   "several inputs a folder receiving NAME_labels.tif")
    p.add_argument("--prob", help="probability TIFF (float32) of the foreground class; with more "
                   "than two classes one file per class, PROB-<class>.tif; with several inputs a "
                   "folder receiving NAME_prob.tif")
    p.add_argument("--tile", type=int,
                   help="tile edge in pixels (default: automatic from the model's receptive field)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap 0..0.5 (default 0.25)")
    p.add_argument("--batch", type=int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default="auto", choices=DEVICES, help="default: auto")
    p.add_argument("--backend", default="auto", choices=list(BACKENDS),
                   help="CPU inference engine: " + "; ".join(f"{k}: {v}" for k, v in BACKENDS.items()))
    p.add_argument("--prob-dtype", choices=("uint8", "float16"), default=None,
                   help="storage of --prob: uint8 (0-255) or float16 (default: uint8 in .zarr, "
                   "float32 in TIFF)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="with a .zarr output, start afresh instead of continuing an interrupted run "
                   "of the same command from its finished blocks")
    p.add_argument("--flips", action="store_true",
                   help="average over in-plane flips (test-time augmentation, 4x slower)")
    p.add_argument("--z-sigma", type=checked.z_sigma, default=None, metavar="SLICES",
                   help="a 2D model on a ZYX stack: smooth the probabilities across slices with "
                   "a Gaussian this many slices wide; 0 keeps slices independent (default: one "
                   "slice, at most four in-plane pixels, when the file's pixel size is known, else 0)")
    checked.add_selection(p)
    batch_args.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One file: predict with a progress bar, write labels (and probabilities) calibrated.

    Several files (or a folder, or a glob): one job per file, see :mod:`.batch`.
    """
    from ..core.batch import is_batch
    from ..core.cluster import SCHEDULER_ENV
    from ..core.one_file import predict_file
    from .progress import drain_with_bar

    if is_batch(args.input):
        return _run_many(args)
    scheduler = args.scheduler or os.environ.get(SCHEDULER_ENV) or None
    steps = predict_file(args.input[0], args.output, model=args.model, prob=args.prob,
                         tile=args.tile, overlap=args.overlap, batch=args.batch,
                         device=args.device, flips=args.flips, note=print,
                         backend=args.backend, channel=args.channel, scene=args.scene,
                         resume=args.resume, prob_dtype=args.prob_dtype,
                         workers=args.workers or 1, scheduler=scheduler, z_sigma=args.z_sigma)
    for path in drain_with_bar(steps, f"predict ({args.model})"):
        print(f"wrote {path}")
    return 0


def _run_many(args: argparse.Namespace) -> int:
    """``-o`` (and ``--prob``) are folders: ``NAME_labels.tif`` (and ``NAME_prob.tif``).

    OME-Zarr inputs stream into ``NAME_labels.zarr`` (and ``NAME_prob.zarr``).
    """
    from ..core.batch import expand_inputs, make_jobs, output_folder, output_paths
    from .batch import run_jobs

    inputs = expand_inputs(args.input)
    outputs = output_paths(inputs, output_folder(args.output), "_labels.tif", "_labels.zarr")
    per_file = None
    if args.prob:
        probs = output_paths(inputs, output_folder(args.prob), "_prob.tif", "_prob.zarr")
        per_file = [{"prob": str(p)} for p in probs]
    model = args.model
    if Path(model).suffix in (".json", ".safetensors") and Path(model).is_file():
        model = str(Path(model).resolve())  # workers load it from the same path
    options = {"model": model, "tile": args.tile, "overlap": args.overlap, "batch": args.batch,
               "device": args.device, "flips": args.flips, "backend": args.backend,
               "channel": args.channel, "scene": args.scene, "resume": args.resume,
               "prob_dtype": args.prob_dtype, "z_sigma": args.z_sigma}
    jobs = make_jobs("predict", inputs, outputs, options, per_file)
    return run_jobs(jobs, f"predict ({args.model})", args)
