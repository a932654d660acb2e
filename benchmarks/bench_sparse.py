"""Training from strokes on data the model has not seen: a simulated user in rounds.

Not a test. Needs ``../shared/data`` (Lucchi++, EM-net cardiac tiles) and scikit-learn.

Protocol (printed with every run): for each scenario, a stack of 2D slices of one data set that the
pretrained model never trained on. Round 0: the simulated user
(:mod:`napari_cardioseg.core.strokes`) paints ``--per-class`` short strokes per class on each
stroked slice. Each round then trains ``--round-steps`` steps (continuing from the previous round's
model, as pressing Train again does), predicts the stroked slices and paints ``--corrections`` new
strokes on the largest false-positive and false-negative components of each, eroded by ``--margin``
pixels first (default 2: a person corrects plain errors, not a 1-2 px sliver along an edge; 0 gives
the protocol of earlier runs). Foreground Dice is measured on the unstroked slices after every
round, next to the model before any stroke (zero-shot) and an ilastik-style random forest (100 trees
on ``skimage.feature.multiscale_basic_features``) given the same strokes. In round 0 the current
weights are also scored at ``--probe-steps`` to find the first preview that beats zero-shot. Steps
and training seconds are both reported (seconds exclude the benchmark's own evaluations; they depend
on the machine's load).

Scenarios: ``emnet`` (EM-net cardiac tiles 4, 9, 14, 19 and the four test tiles, held out from
``mito-em``; strokes on three tiles, Dice on five), ``lucchi-shift`` (Lucchi++ slices 140-164 of
the full volume, 512x512 window, contrast inverted, gamma 0.6, Gaussian blur 1; strokes on two
slices, Dice on four), ``emnet-shift`` (``emnet`` with that appearance shift; meant for a model
trained without EM-net) and ``sample-shift`` (the plugin's EM sample, inverted and blurred). A
round whose model sees the contrast inverted from its start model's is marked in the table.

Usage: ``python benchmarks/bench_sparse.py --init mito-em [--scenarios emnet lucchi-shift]
[--rounds 4] [--round-steps 60] [--prior 1.0] [--encoder-lr-scale 0.1] [--holdout 0.2]
[--dilate 1] [--probe-head] [--round-teacher] [--[no-]renew-norm-stats]``

``--probe-head`` fits the head to the strokes before every round (``TrainConfig.probe_head``,
:mod:`napari_cardioseg.core.probe_head`); its step-0 model is scored as probe step 0.
``--round-teacher`` makes each round's start model the prior's teacher, as the Train widget does
(default: the init model in every round). Results: README, "What the numbers say".
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

sys.modules.setdefault("triton", None)

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from skimage.feature import multiscale_basic_features  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402

from napari_cardioseg.core.adapt import dilate_strokes  # noqa: E402
from napari_cardioseg.core.augment import AugmentConfig  # noqa: E402
from napari_cardioseg.core.models import load_model  # noqa: E402
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization  # noqa: E402
from napari_cardioseg.core.strokes import correction_strokes, first_strokes  # noqa: E402
from napari_cardioseg.core.train import TrainSession  # noqa: E402
from napari_cardioseg.recipes.common import dice  # noqa: E402

DATA = Path(os.environ.get("CARDIOSEG_DATA", "/work/shared/data"))
STRONG_AUGMENT = AugmentConfig(scale=0.25, elastic=2.0, elastic_prob=0.3, contrast=0.4,
                               brightness=0.3)


def shift(stack: np.ndarray, gamma: float = 0.6, blur: float = 1.0) -> np.ndarray:
    """Appearance shift: contrast inverted, then gamma, then Gaussian blur (per slice), uint8."""
    x = 1.0 - stack.astype(np.float32) / 255.0
    x = x ** gamma
    x = ndi.gaussian_filter(x, (0, blur, blur))
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def scenario(name: str, data: Path) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    """Image stack, 0/1 truth, stroked slices and evaluation slices of one scenario."""
    if name in ("emnet", "emnet-shift"):
        folder = data / "emnet_cardiac_sbfsem"
        train = tifffile.imread(folder / "train_image.tif")
        train_mask = tifffile.imread(folder / "train_mito.tif")
        tiles = (4, 9, 14, 19)
        image = np.concatenate([train[list(tiles)], tifffile.imread(folder / "test_image_unlabeled.tif")])
        truth = np.concatenate([train_mask[list(tiles)], tifffile.imread(folder / "test_mito.tif")])
        if name == "emnet-shift":
            image = shift(image)
        return image, truth > 0, (0, 1, 4), (2, 3, 5, 6, 7)
    if name == "lucchi-shift":
        folder = data / "lucchi_pp_train"
        part = tifffile.imread(folder / "train_image_part3.tif")  # slices 110-164
        window = (slice(128, 640), slice(256, 768))
        image = shift(part[30:][(slice(None), *window)])
        truth = tifffile.imread(folder / "train_mito.tif")[140:][(slice(None), *window)] > 0
        return image, truth, (5, 15), (0, 10, 20, 24)
    if name == "sample-shift":
        from napari_cardioseg._sample_data import EM_SEED, EM_SHAPE, EM_VOXEL
        from napari_cardioseg.core.synth import organelle_stack

        stack = organelle_stack(EM_SHAPE, EM_VOXEL, seed=EM_SEED)
        return shift(stack.image, gamma=1.0), stack.labels > 0, (4, 16, 28), (0, 8, 12, 20, 24)
    raise ValueError(name)


@torch.no_grad()
def predict(model, card, image: np.ndarray, slices) -> dict[int, np.ndarray]:
    """0/1 predictions of the given slices (whole slices, padded to a multiple of 32)."""
    fitted = fit_normalization(image, card.normalization)
    model.eval()
    out = {}
    for z in slices:
        x = torch.from_numpy(apply_normalization(image[z], fitted))
        h, w = x.shape
        x = torch.nn.functional.pad(x[None, None], (0, -w % 32, 0, -h % 32), mode="reflect")
        out[z] = model(x)[0, :, :h, :w].argmax(0).numpy() == 1
    return out


def mean_dice(preds: dict[int, np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([dice(p, truth[z]) for z, p in preds.items()]))


class Forest:
    """ilastik-style pixel classifier; features are computed once per slice."""

    def __init__(self, image: np.ndarray, slices, threads: int) -> None:
        self.features = {z: multiscale_basic_features(image[z].astype(np.float32)) for z in slices}
        self.threads = threads

    def dice(self, scribbles: np.ndarray, stroked, truth: np.ndarray, slices) -> float:
        x = np.concatenate([self.features[z][scribbles[z] > 0] for z in stroked])
        y = np.concatenate([scribbles[z][scribbles[z] > 0] for z in stroked])
        forest = RandomForestClassifier(100, n_jobs=self.threads, random_state=0).fit(x, y)
        scores = []
        for z in slices:
            f = self.features[z]
            pred = forest.predict(f.reshape(-1, f.shape[-1])).reshape(f.shape[:2]) == 2
            scores.append(dice(pred, truth[z]))
        return float(np.mean(scores))


def run(name: str, args: argparse.Namespace) -> None:
    image, truth, stroked, slices = scenario(name, args.data)
    rng = np.random.default_rng(args.seed)
    model, card = load_model(args.init)
    teacher = model
    zero_shot = mean_dice(predict(model, card, image, slices), truth)
    forest = Forest(image, (*stroked, *slices), args.threads)
    scribbles = np.zeros(image.shape, np.uint8)
    for z in stroked:
        scribbles[z] = first_strokes(truth[z], rng, args.per_class, args.length)
    options = {"prior_weight": args.prior, "encoder_lr_scale": args.encoder_lr_scale,
               "holdout": args.holdout,
               "probe_head": {"on": True, "off": False, "auto": None}[args.probe_head],
               "threads": args.threads, "device": "cpu", "lr_decay": args.lr_decay}
    if args.renew_norm_stats is not None:
        options["renew_norm_stats"] = args.renew_norm_stats
    if args.lr is not None:
        options["lr"] = args.lr
    if args.augment == "strong":
        options["augment"] = STRONG_AUGMENT
    print(f"\n## {name}: image {image.shape}, strokes on slices {stroked}, Dice on slices {slices}")
    print(f"init {args.init}: zero-shot Dice {zero_shot:.3f}")
    print("| round | painted px bg / fg | steps (total) | train s (total) | net Dice | forest Dice "
          "| net - max(zero-shot, forest) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    total_steps, total_seconds, first_better, held_scores = 0, 0.0, None, []
    for round_ in range(args.rounds):
        if round_ > 0:
            preds = predict(model, card, image, stroked)
            for z in stroked:
                scribbles[z] |= correction_strokes(preds[z], truth[z], scribbles[z], rng,
                                                   args.corrections, args.length,
                                                   margin=args.margin)
        train_scribbles = dilate_strokes(scribbles, args.dilate)
        probe = {"probe_head": False} if round_ > 0 and args.probe_rounds == "first" else {}
        if round_ > 0 and args.later_blend is not None:
            probe["blend"] = args.later_blend
        session = TrainSession([image], [train_scribbles], init=(model, card), steps=args.round_steps,
                               seed=args.seed + round_,
                               prior_model=None if args.round_teacher else teacher,
                               **{**options, **probe})
        spent_eval = 0.0
        for progress in session.run():
            if round_ == 0 and first_better is None and progress.done in args.probe_steps:
                t = time.perf_counter()
                # the session may have inverted the contrast (polarity check)
                seen = dataclasses.replace(card, normalization=session.normalization)
                d = mean_dice(predict(session.model, seen, image, slices), truth)
                if d > zero_shot:
                    first_better = (progress.done, progress.elapsed - spent_eval, d)
                spent_eval += time.perf_counter() - t
        seconds = session.elapsed - spent_eval
        result = session.best()
        held_scores.append(" ".join(f"{step}:{score:.3f}" for step, score in session.holdout_scores))
        model, card = result.model, result.card
        total_steps += len(session.losses)
        total_seconds += seconds
        net = mean_dice(predict(model, card, image, slices), truth)
        rf = forest.dice(scribbles, stroked, truth, slices)
        counts = [int(np.sum(scribbles == v)) for v in (1, 2)]
        flipped = " (contrast inverted)" if session.contrast_inverted else ""
        print(f"| {round_} | {counts[0]} / {counts[1]} | {len(session.losses)} ({total_steps}) | "
              f"{seconds:.0f} ({total_seconds:.0f}) | {net:.3f}{flipped} | {rf:.3f} | "
              f"{net - max(zero_shot, rf):+.3f} |", flush=True)
    if args.holdout > 0:
        for round_, scores in enumerate(held_scores):
            print(f"round {round_} held-out stroke accuracy (step:score): {scores}")
    if first_better is None:
        print(f"no probe in round 0 (steps {args.probe_steps}) beat zero-shot")
    else:
        print(f"first probe beating zero-shot: step {first_better[0]}, {first_better[1]:.1f} s "
              f"of training, Dice {first_better[2]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--init", default="mito-em", help="pretrained model name or file")
    parser.add_argument("--scenarios", nargs="+", default=["emnet", "lucchi-shift", "sample-shift"],
                        choices=["emnet", "emnet-shift", "lucchi-shift", "sample-shift"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--round-steps", type=int, default=60)
    parser.add_argument("--per-class", type=int, default=6, help="first strokes per class and slice")
    parser.add_argument("--corrections", type=int, default=4,
                        help="correction strokes per kind (FP, FN) and slice after each round")
    parser.add_argument("--length", type=int, default=15, help="stroke length in pixels")
    parser.add_argument("--margin", type=int, default=2,
                        help="erode wrong regions by this many px before choosing correction "
                        "strokes (0: the protocol before, which also stroked 1-2 px edge slivers)")
    parser.add_argument("--probe-steps", type=int, nargs="+", default=[0, 1, 3, 5, 10, 20, 40],
                        help="round-0 steps scored against zero-shot (0: the probed head)")
    parser.add_argument("--prior", type=float, default=0.0, help="distillation weight (0 = off)")
    parser.add_argument("--encoder-lr-scale", type=float, default=1.0)
    parser.add_argument("--holdout", type=float, default=0.0,
                        help="share of strokes held out to pick each round's state (0 = off)")
    parser.add_argument("--dilate", type=int, default=0, help="stroke dilation radius (px)")
    parser.add_argument("--probe-head", nargs="?", const="on", default="off",
                        choices=["on", "off", "auto"],
                        help="fit the head to the strokes first (on), or only when the start "
                        "model's stroke accuracy is low (auto, the product's default)")
    parser.add_argument("--probe-rounds", choices=["all", "first"], default="all",
                        help="with --probe-head: probe before every round, or only round 0")
    parser.add_argument("--round-teacher", action="store_true",
                        help="the prior's teacher is each round's start model (after the probe), "
                             "as in the Train widget; default: the init model in every round")
    parser.add_argument("--augment", choices=["default", "strong"], default="default")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lr-decay", action="store_true",
                        help="cosine decay of the learning rate to 0 within each round")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--renew-norm-stats", action=argparse.BooleanOptionalAction, default=None,
                        help="re-estimate batch-norm statistics on the images first (default: "
                             "the product's choice)")
    parser.add_argument("--later-blend", type=float, default=None,
                        help="share of each later round's change kept (default: the product's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no data folder {args.data}")
    torch.set_num_threads(args.threads)
    print(__doc__.split("Scenarios:")[0].strip())
    print(f"settings: {vars(args)}")
    for name in args.scenarios:
        run(name, args)


if __name__ == "__main__":
    main()
