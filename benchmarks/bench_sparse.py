"""Sparse-label training vs an ilastik-style random forest, from the same simulated strokes.

Not a test. Needs ``../shared/data`` (Lucchi++ crop, EM-net cardiac tiles) and scikit-learn.
A simulated user draws about a dozen short strokes per class on a few slices (pieces of the
object skeletons, short lines in the background); the net trains under a CPU time budget and
is evaluated (foreground Dice) at 30, 60 and 120 s on slices without strokes; a random forest
(100 trees) on ``skimage.feature.multiscale_basic_features`` learns from the same strokes.

With ``--init mito-em`` the net is fine-tuned from the shipped model instead of trained from scratch;
strokes and evaluation then use only data the shipped model never saw in training (the held-out Lucchi
slab, slices 140–164, and the held-out EM-net tiles 4, 9, 14, 19), and the model's Dice before any
stroke (zero-shot) is printed too.

Usage: ``python benchmarks/bench_sparse.py [--budgets 30 60 120] [--init mito-em] [--data ../shared/data]``
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.modules.setdefault("triton", None)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.ndimage import binary_erosion  # noqa: E402
from skimage.feature import multiscale_basic_features  # noqa: E402
from skimage.morphology import disk, skeletonize  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

from napari_cardioseg.core.device import train_threads  # noqa: E402
from napari_cardioseg.core.io import read_single  # noqa: E402
from napari_cardioseg.core.models import load_model  # noqa: E402
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization  # noqa: E402
from napari_cardioseg.core.train import TrainSession  # noqa: E402
from napari_cardioseg.recipes.common import dice  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {
    # name: (image, mask, stroked slices, evaluation slices)
    "lucchi": ("lucchi_pp_train/train_crop_image.tif", "lucchi_pp_train/train_crop_mito.tif",
               (20, 80, 140), (5, 50, 110, 160)),
    "emnet": ("emnet_cardiac_sbfsem/train_image.tif", "emnet_cardiac_sbfsem/train_mito.tif",
              (0, 5, 10), (15, 16, 17, 18, 19)),
}
HELD_OUT = {  # slices / tiles the shipped mito-em never trained on (see recipes/data.py)
    "lucchi": (145, 155), "emnet": (4,),
}
HELD_OUT_EVAL = {"lucchi": (142, 150, 160, 164), "emnet": (9, 14, 19)}


def strokes(mask: np.ndarray, rng: np.random.Generator, per_class: int = 12,
            length: int = 15) -> np.ndarray:
    """Scribbles for one slice: skeleton pieces inside objects (2), short background lines (1)."""
    out = np.zeros(mask.shape, np.uint8)
    skeleton = np.argwhere(skeletonize(binary_erosion(mask, disk(2).astype(bool))))
    for y, x in skeleton[rng.choice(len(skeleton), min(per_class, len(skeleton)), replace=False)]:
        near = np.abs(skeleton - (y, x)).max(axis=1) <= length // 2
        out[tuple(skeleton[near].T)] = 2
    inside = binary_erosion(~mask, disk(3).astype(bool))
    free = np.argwhere(inside)
    for y, x in free[rng.choice(len(free), per_class, replace=False)]:
        angle = rng.uniform(0, np.pi)
        t = np.arange(-(length // 2), length // 2 + 1)
        ys = np.clip(np.round(y + t * np.sin(angle)).astype(int), 0, mask.shape[0] - 1)
        xs = np.clip(np.round(x + t * np.cos(angle)).astype(int), 0, mask.shape[1] - 1)
        keep = inside[ys, xs]
        out[ys[keep], xs[keep]] = 1
    return out


@torch.no_grad()
def net_dice(model, card, image, truth, slices) -> float:
    fitted = fit_normalization(image, card.normalization)
    model.eval()
    scores = []
    for z in slices:
        x = torch.from_numpy(apply_normalization(image[z], fitted))
        h, w = x.shape
        x = torch.nn.functional.pad(x[None, None], (0, -w % 32, 0, -h % 32), mode="reflect")
        pred = model(x)[0, :, :h, :w].argmax(0).numpy() == 1
        scores.append(dice(pred, truth[z]))
    return float(np.mean(scores))


def forest_dice(image, scribbles, truth, stroked, slices) -> tuple[float, float]:
    start = time.perf_counter()
    feats = [multiscale_basic_features(image[z].astype(np.float32)) for z in stroked]
    x = np.concatenate([f[scribbles[z] > 0] for f, z in zip(feats, stroked, strict=True)])
    y = np.concatenate([scribbles[z][scribbles[z] > 0] for z in stroked])
    forest = RandomForestClassifier(100, n_jobs=train_threads(), random_state=0).fit(x, y)
    fit_time = time.perf_counter() - start
    scores = []
    for z in slices:
        f = multiscale_basic_features(image[z].astype(np.float32))
        pred = forest.predict(f.reshape(-1, f.shape[-1])).reshape(image.shape[1:]) == 2
        scores.append(dice(pred, truth[z]))
    return float(np.mean(scores)), fit_time


def run(name: str, data: Path, budgets: list[float], seed: int, init: str | None = None) -> None:
    image_file, mask_file, stroked, slices = DATASETS[name]
    if init is not None:
        stroked, slices = HELD_OUT[name], HELD_OUT_EVAL[name]
    image = read_single(data / image_file).data
    truth = read_single(data / mask_file).data > 0
    rng = np.random.default_rng(seed)
    scribbles = np.zeros(image.shape, np.uint8)
    for z in stroked:
        scribbles[z] = strokes(truth[z], rng)
    counts = {v: int(np.sum(scribbles == v)) for v in (1, 2)}
    rf, rf_time = forest_dice(image, scribbles, truth, stroked, slices)
    zero_shot = None
    if init is not None:
        zero_shot = net_dice(*load_model(init), image, truth, slices)
    t0 = time.perf_counter()
    session = TrainSession([image], [scribbles], init=init, time_budget=max(budgets), seed=seed,
                           preview=(slice(slices[0], slices[0] + 1), slice(0, 256),
                                    slice(0, 256)), preview_every=1e9)
    first_preview = None
    snapshots = {}
    pending = sorted(budgets)
    for progress in session.run():
        if first_preview is None and progress.preview is not None:
            first_preview = time.perf_counter() - t0
        while pending and progress.elapsed >= pending[0]:
            snapshots[pending.pop(0)] = (copy.deepcopy(session.best()), progress.step)
    result = session.best()
    for budget in pending:
        snapshots[budget] = (result, len(session.losses))
    print(f"\n## {name}: image {image.shape}, strokes on slices {stroked} "
          f"({counts[1]} background px, {counts[2]} mitochondria px), Dice on slices {slices}")
    print(f"first preview after {first_preview:.2f} s (incl. model build and normalisation); "
          f"patch {session.patch}, batch {session.batch}, {train_threads()} torch threads")
    print(f"random forest (100 trees, multiscale_basic_features): Dice {rf:.3f} "
          f"(fit {rf_time:.1f} s)")
    if zero_shot is not None:
        print(f"{init} before any stroke (zero-shot): Dice {zero_shot:.3f}")
    print("| budget (s) | steps | net Dice | RF Dice | net - RF |")
    print("|---:|---:|---:|---:|---:|")
    for budget in sorted(budgets):
        res, steps = snapshots[budget]
        d = net_dice(res.model, res.card, image, truth, slices)
        print(f"| {budget:g} | {steps} | {d:.3f} | {rf:.3f} | {d - rf:+.3f} |")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--budgets", type=float, nargs="+", default=[30.0, 60.0, 120.0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", default=None, help="fine-tune this model (e.g. mito-em) instead")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data folder {args.data}")
    for name in args.datasets:
        run(name, args.data, args.budgets, args.seed, args.init)


if __name__ == "__main__":
    main()
