"""``python -m napari_cardioseg.recipes zdisk|mito``: train, validate and save a shipped model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..core.errors import CardiosegError
from ..core.models import PRETRAINED_DIR
from . import data


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run one recipe and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m napari_cardioseg.recipes", description=__doc__)
    parser.add_argument("recipe", choices=["zdisk", "mito"], help="which model to train")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder with the third-party data (default: $CARDIOSEG_DATA or "
                             "shared/data beside the checkout)")
    parser.add_argument("--minutes", type=float, default=40.0, help="training time budget")
    parser.add_argument("--out", type=Path, default=PRETRAINED_DIR,
                        help="folder for NAME.json + NAME.safetensors (default: the package's weights/)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="start from the stage-1 checkpoint in OUT/checkpoints (stage 2 only)")
    parser.add_argument("--exclude", action="append", default=[], choices=["lucchi", "emnet"],
                        help="mito only: leave this real data set out of training (repeatable)")
    parser.add_argument("--gan-weight", type=float, default=0.0,
                        help="mito only: weight of a conditional-GAN term (PatchGAN, as pix2pix); "
                        "0 = plain segmentation loss")
    parser.add_argument("--init", default=None,
                        help="continue this model (name or card) instead of training from scratch "
                        "(mito: stage 2 for the whole budget; zdisk: both stages at lower rates)")
    parser.add_argument("--lucchi", choices=["crop", "whole"], default="crop",
                        help="mito only: the Lucchi++ 384x512 crop or the whole 768x1024 volume "
                        "(the last 25 slices are held out either way)")
    parser.add_argument("--arch", default=None,
                        help="zdisk only: train this architecture from scratch (its scratch options) "
                        "instead of the recipe's smp U-Net")
    parser.add_argument("--lr", type=float, default=None,
                        help="mito only: stage 2's learning rate (default 5e-4)")
    parser.add_argument("--lr-decay", action="store_true",
                        help="mito only: decay stage 2's learning rate to 0 along a half cosine")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_dir = args.data or data.default_data_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if args.recipe == "mito":
            from . import mito

            mito.run(data_dir, args.minutes, args.out, seed=args.seed, resume=args.resume,
                     exclude=tuple(args.exclude), gan_weight=args.gan_weight, init=args.init,
                     whole=args.lucchi == "whole", lr=args.lr, lr_decay=args.lr_decay)
        else:
            from . import zdisk

            zdisk.run(data_dir, args.minutes, args.out, seed=args.seed, resume=args.resume,
                      init=args.init, arch=args.arch)
    except CardiosegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
