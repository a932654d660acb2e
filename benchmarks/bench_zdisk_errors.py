"""Where zdisk-fluo's errors lie on held-out synthetic images: band edges or whole Z-disks?

Not a test; needs nothing outside the package. ``zdisk-fluo`` (or ``--model``) predicts the 16
validation images of its recipe (seeds 9000-9015, never trained on), as the recipe's evaluation
does. Per image and pooled: Dice, false positives and false negatives, the share of them within
one pixel of the true band's edge (the mask dilated by one pixel minus the mask eroded by one),
the Dice the same prediction would get if those edge pixels were forgiven, and the share of true
Z-disks (connected components) missed entirely and of predicted ones touching no true disk. Also
printed: the image parameters that matter (photons per bright disk, pixel size, disk thickness in
pixels). ``--photons N`` replaces every image's photon count and read noise (N photons per bright
disk, no read noise), everything else unchanged: with a large N, what is left is the model's own
edge placement, not the noise. Run: ``python benchmarks/bench_zdisk_errors.py [--model NAME]
[--threads 2] [--photons N]``.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_cardioseg.core.models import load_model
from napari_cardioseg.core.synth import ZdiskParams, zdisk_image
from napari_cardioseg.recipes import common, zdisk


def components_missed(truth: np.ndarray, pred: np.ndarray) -> float:
    """Share of the connected components of ``truth`` that ``pred`` does not touch."""
    labels, count = ndi.label(truth)
    if count == 0:
        return 0.0
    touched = ndi.maximum(pred, labels, np.arange(1, count + 1))
    return float(np.mean(np.asarray(touched) == 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zdisk-fluo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photons", type=float, default=None,
                        help="photons per bright disk for every image, no read noise (default: "
                             "each image's own)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_model(args.model)
    totals = np.zeros(5)  # tp, fp, fp at the edge, fn, fn at the edge
    print(f"{args.model} on seeds {zdisk.VAL_SEEDS.start}-{zdisk.VAL_SEEDS.stop - 1}")
    for seed in zdisk.VAL_SEEDS:
        params = ZdiskParams.sample(np.random.default_rng(seed))
        if args.photons is not None:
            params = dataclasses.replace(params, photons=args.photons, read_noise=0.0)
        sample = zdisk_image(zdisk.SHAPE, params, seed=seed,
                             dtype=np.uint8 if seed % 2 else np.uint16)  # as the recipe makes it
        truth = sample.mask.astype(bool)
        pred = common.predict_mask(sample.image, model, card).astype(bool)
        edge = ndi.binary_dilation(truth) & ~ndi.binary_erosion(truth)
        fp, fn = pred & ~truth, truth & ~pred
        counts = np.array([(pred & truth).sum(), fp.sum(), (fp & edge).sum(), fn.sum(),
                           (fn & edge).sum()], dtype=float)
        totals += counts
        tp, n_fp, fp_edge, n_fn, fn_edge = counts
        forgiven = 2 * tp / (2 * tp + (n_fp - fp_edge) + (n_fn - fn_edge))
        print(f"  {seed}  Dice {2 * tp / (2 * tp + n_fp + n_fn):.3f}  FP {n_fp:5.0f} "
              f"({fp_edge / max(n_fp, 1):.0%} at the edge)  FN {n_fn:5.0f} "
              f"({fn_edge / max(n_fn, 1):.0%})  edge forgiven {forgiven:.3f}  disks missed "
              f"{components_missed(truth, pred):.2f}  spurious {components_missed(pred, truth):.2f}  "
              f"photons {params.photons:6.1f}  pixel {params.pixel_size:.3f} µm  disk "
              f"{params.disk_thickness / params.pixel_size:.1f} px")
    tp, n_fp, fp_edge, n_fn, fn_edge = totals
    print(f"pooled: Dice {2 * tp / (2 * tp + n_fp + n_fn):.4f}; errors at the band edge "
          f"{(fp_edge + fn_edge) / (n_fp + n_fn):.0%} (FP {fp_edge / n_fp:.0%}, FN "
          f"{fn_edge / n_fn:.0%}); Dice with edge errors forgiven "
          f"{2 * tp / (2 * tp + (n_fp - fp_edge) + (n_fn - fn_edge)):.4f}")


if __name__ == "__main__":
    main()
