"""Smoothing a 2D model's stack across slices: accuracy, time and memory against independent slices.

Not a test. Needs ``../shared/data`` (the whole Lucchi++ training volume) and the ``benchmark``
extra (psutil). In one process, ``mito-em`` predicts the held-out slab (slices 140-164, 5 nm
isotropic, never trained on) four ways: in memory and block by block (``core.blocks``, the
streamed path), each with slices independent and smoothed by :func:`slice_smooth.slice_sigma`
of the slab's voxel size (one slice). Printed: Jaccard and Dice, seconds and peak RSS growth with
their ratios to the in-memory independent run, and whether blockwise labels equal in-memory
ones. Then, from the same probabilities, Jaccard on the slab thinned to every 2nd, 3rd and 4th
slice (10, 15, 20 nm sections) without smoothing, at the default width and at 0.5, 1 and 2 slices.
``--tall N``: also the time of smoothed blockwise prediction on the first N slices of the training
volume (speed only) with blocks of 16 slices (what a 512 px block holds at 4 Mvoxel) against the
shipped depth of :data:`blocks.HALO_DEPTHS` Z halos, and whether both give the same labels.
Run: ``python benchmarks/bench_slice_smooth.py [--threads 2] [--tall 96]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import psutil
import torch

from bench_predict import measure
from napari_cardioseg.core import blocks, metrics
from napari_cardioseg.core.blocks import card_halo, fixed_normalization_card, predict_blocks
from napari_cardioseg.core.models import load_model
from napari_cardioseg.core.predict import predict_probabilities, probabilities_to_labels
from napari_cardioseg.core.progress import drain
from napari_cardioseg.core.slice_smooth import slice_sigma, smooth
from napari_cardioseg.recipes import data

VOXEL = 0.005  # µm, Lucchi++ is isotropic


def scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return metrics.scores(metrics.confusion(labels > 0, truth, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tall", type=int, default=0, help="slices of the tall-volume check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = data.default_data_dir() if args.data is None else Path(args.data)
    _, held = data.lucchi_split(folder, whole=True)
    slab, truth = np.stack(held.images), np.stack(held.masks) > 0
    model, card = load_model("mito-em")
    fixed = fixed_normalization_card(card, slab)  # both paths use the same normalisation numbers
    sigma = slice_sigma((VOXEL,) * 3)

    def in_memory(z: float) -> np.ndarray:
        return predict_probabilities(slab, model, fixed, device="cpu", z_sigma=z)

    def blockwise(z: float) -> np.ndarray:
        labels = np.zeros(slab.shape, np.uint8)
        drain(predict_blocks(slab, model, fixed, labels, block=512, halo=card_halo(card),
                             device="cpu", z_sigma=z))
        return labels

    print(f"held-out Lucchi++ slab {slab.shape}, mito-em, width {sigma:.2f} slices, "
          f"{torch.get_num_threads()} threads")
    in_memory(0.0)  # warm-up: allocator, oneDNN kernels
    runs = {name: measure(lambda f=func, w=z: f(w)) for name, func, z in (
        ("in memory, independent", in_memory, 0.0), ("in memory, smoothed", in_memory, sigma),
        ("blockwise, independent", blockwise, 0.0), ("blockwise, smoothed", blockwise, sigma))}
    base_s, base_m, prob = runs["in memory, independent"]
    labels = {}
    for name, (seconds, memory, out) in runs.items():
        labels[name] = probabilities_to_labels(out) if out.ndim == 4 else out
        s = scores(labels[name], truth)
        print(f"  {name:24s} Jaccard {s['jaccard']:.4f}  Dice {s['dice']:.4f}  {seconds:6.1f} s "
              f"(x{seconds / base_s:.2f})  peak +{memory:5.0f} MiB (x{memory / max(base_m, 1):.2f})")
    for kind in ("independent", "smoothed"):
        same = np.array_equal(labels[f"blockwise, {kind}"], labels[f"in memory, {kind}"])
        print(f"  blockwise == in memory ({kind}): {same}")
    print("thinned slab (same probabilities): Jaccard at widths in slices")
    for step in (1, 2, 3, 4):
        auto = slice_sigma((VOXEL * step, VOXEL, VOXEL))
        thin, t = prob[:, ::step], truth[::step]
        cells = [f"{w:.2f}: {scores(probabilities_to_labels(smooth(thin, w)), t)['jaccard']:.4f}"
                 for w in (0.0, auto, 0.5, 1.0, 2.0)]
        print(f"  every {step} ({VOXEL * step * 1000:.0f} nm, default {auto:.2f})  " + "  ".join(cells))
    if args.tall:
        tall_check(folder, model, card, sigma, args.tall)
    print(f"load average {psutil.getloadavg()[0]:.1f}")


def tall_check(folder: Path, model: torch.nn.Module, card, sigma: float, depth: int) -> None:
    """Smoothed blockwise prediction of a tall stack: 16-slice blocks against the shipped depth."""
    train, _ = data.lucchi_split(folder, whole=True)
    stack = np.stack(train.images[:depth])
    fixed = fixed_normalization_card(card, stack)

    def run(block: int | tuple[int, ...]) -> np.ndarray:
        labels = np.zeros(stack.shape, np.uint8)
        drain(predict_blocks(stack, model, fixed, labels, block=block, halo=card_halo(card),
                             device="cpu", z_sigma=sigma))
        return labels

    old_s, old_m, old = measure(lambda: run((16, 512, 512)))  # the 4 Mvoxel rule alone
    new_s, new_m, new = measure(lambda: run(512))  # the depth block_geometry picks
    print(f"tall stack {stack.shape}, smoothed, blockwise: 16-slice blocks {old_s:.1f} s, "
          f"{blocks.HALO_DEPTHS} halos deep {new_s:.1f} s (x{new_s / old_s:.2f}); peak "
          f"+{old_m:.0f} / +{new_m:.0f} MiB; same labels: {np.array_equal(old, new)}")


if __name__ == "__main__":
    main()
