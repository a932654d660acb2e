"""``cardioseg train``: train or fine-tune a model from a scribble TIFF."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core.errors import CardiosegError
from ..core.train_config import POLARITIES
from . import args as checked
from .progress import ProgressBar


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a model from scribbles (0 unlabelled, 1 background, 2.. classes)",
        description="Train or fine-tune a segmentation model from sparse scribbles. The labels "
        "TIFF uses 0 = unlabelled, 1 = background, 2 = first class, 3 = second class, ...",
    )
    parser.add_argument("--image", required=True, help="greyscale 2D or 3D TIFF")
    parser.add_argument("--labels", required=True, help="scribble TIFF of the image's shape")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--init", type=checked.model_name,
                       help="pretrained model name or model file to fine-tune")
    start.add_argument("--arch", help="architecture to train from scratch (default unet2d)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="number of training steps (default 200)")
    budget.add_argument("--time-budget", type=checked.positive_seconds, metavar="SECONDS",
                        help="train for this many seconds instead of a step count")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train only the decoder and head (faster on a CPU)")
    parser.add_argument("--gan-weight", type=float, default=0.0, metavar="W",
                        help="add a conditional-GAN term (PatchGAN discriminator, as pix2pix) with "
                        "this weight; needs complete masks (--labels = mask + 1), not strokes")
    parser.add_argument("--probe-head", action=argparse.BooleanOptionalAction, default=None,
                        help="fit the output layer to the strokes first (linear probe), then "
                        "fine-tune; default: on with --init")
    parser.add_argument("--polarity", choices=POLARITIES, default="auto",
                        help="contrast the --init model sees: auto (default) inverts it when the "
                        "model's own answer on the strokes is clearly better inverted; keep; invert")
    parser.add_argument("--blend", type=float, default=None, metavar="SHARE",
                        help="keep this share (0-1] of what training changes; default 0.25 when "
                        "--init is a model trained from strokes on images of this shape (another "
                        "round), else 1")
    parser.add_argument("--renew-norm-stats", action=argparse.BooleanOptionalAction, default=None,
                        help="re-estimate the --init model's batch-norm statistics on this image "
                        "first; default: only when the model misses the strokes, and kept only "
                        "when it answers them better")
    parser.add_argument("--lr-decay", action="store_true",
                        help="decay the learning rate to 0 along a half cosine over the budget")
    parser.add_argument("--seed", type=checked.seed, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL_PATH",
                        help="output stem: writes STEM.safetensors and STEM.json")
    checked.add_selection(parser, "--image (and of --labels only when it has several)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and save the model; returns the exit code."""
    import numpy as np

    from ..core.device import train_threads
    from ..core.io import read_single
    from ..core.train import TrainConfig, TrainSession
    from ..core.writes import check_outputs

    output = Path(args.output)
    from ..core.models import check_save_name, model_files, resolved_model_files

    check_save_name(output)
    inputs = [args.image, args.labels, *(resolved_model_files(args.init) if args.init else ())]
    check_outputs([*model_files(output), *([output] if output.is_dir() else [])], inputs)
    image = read_single(args.image, "image", channel=args.channel, scene=args.scene)
    labels = read_single(args.labels, "scribble labels", channel=args.channel, scene=args.scene,
                         only_if_several=True)
    if labels.data.dtype.kind == "f":
        if not np.array_equal(labels.data, np.round(labels.data)):
            raise CardiosegError(f"{args.labels}: scribbles must be whole numbers")
        labels.data = labels.data.astype(np.int32)
    config = TrainConfig(
        init=args.init, arch=args.arch, steps=args.steps, time_budget=args.time_budget,
        freeze_encoder=args.freeze_encoder, probe_head=args.probe_head, seed=args.seed,
        gan_weight=args.gan_weight, polarity=args.polarity, lr_decay=args.lr_decay,
        blend=args.blend, renew_norm_stats=args.renew_norm_stats,
        device=args.device,
        threads=train_threads(gui=False),
        pixel_size=image.scale if image.calibrated else None,
    )
    session = TrainSession([image.data], [labels.data], config)
    bar: ProgressBar | None = None
    shown = 0.0
    interrupted = False
    try:
        for progress in session.run():
            if progress.total is not None:
                bar = bar or ProgressBar(progress.total, "train")
                bar.update(progress.done, progress.message)
            elif time.perf_counter() - shown >= 1.0:  # a time budget: no total, a status line
                shown = time.perf_counter()
                print(f"train {progress.message}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:  # Ctrl-C: keep the best model so far, as Stop does in napari
        interrupted = True
        if not session.losses:
            raise
    finally:
        if bar is not None:
            bar.close()
    result = session.best()
    if interrupted:
        result.card.training["interrupted_at_step"] = len(session.losses)
    result.card.name = model_files(output)[0].stem
    saved = result.save(output)
    print(f"saved {saved} and {saved.with_suffix('.safetensors')}")
    if interrupted:
        print(f"cardioseg train: interrupted after {len(session.losses)} steps; the best model so "
              "far was saved", file=sys.stderr)
        return 130
    return 0
