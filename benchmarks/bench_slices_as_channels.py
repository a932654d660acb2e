"""2.5D against 2D for mito-em: does a net that sees neighbouring slices as channels win?

Not a test. Needs ``../shared/data`` (the whole Lucchi++ training volume). Protocol: ``mito-em``
is fine-tuned for ``--minutes`` on the slices it was trained on (0-139 of the whole volume) in
two arms with the same recipe, seed and steps per second: ``--slices 3`` (the net reads slices
z-1, z, z+1 as three channels; its first convolution starts with mito-em's kernel on the centre
channel and zeros on the neighbours, so step 0 is exactly mito-em) and ``--slices 1`` (the same
fine-tuning of the 2D net: the control, which tells what the extra slices add beyond more
training). Windows 4 × 256², random rotations, flips, Z order and gamma / contrast jitter,
AdamW at ``--lr``, cross-entropy + Dice. Every ``--eval-every`` minutes and at the end, Jaccard on
the held-out slab (slices 140-164, never trained on; whole slices, the slab's own normalisation,
edge slices repeat at the slab's ends) with slices independent and smoothed across slices
(σ = 1 slice, as prediction does on this isotropic stack). The slab is only scored, never used to
pick a checkpoint: the figure to compare is the last one. Run the two arms side by side with
``--threads 1`` each: ``python benchmarks/bench_slices_as_channels.py --slices 3`` and ``--slices 1``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from napari_cardioseg.core.models import load_model
from napari_cardioseg.core.nets import build_model
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.recipes import data

PATCH, BATCH = 256, 4


def slices_as_channels(model: torch.nn.Module, spec: dict, slices: int) -> torch.nn.Module:
    """A copy of 2D ``model`` reading ``slices`` channels, equal to it when they are zero but one."""
    wide = build_model({**spec, "in_channels": slices})
    state = wide.state_dict()
    for name, weight in model.state_dict().items():
        if state[name].shape == weight.shape:
            state[name] = weight.clone()
        else:  # the first convolution: the 2D kernel on the centre slice
            state[name] = torch.zeros_like(state[name])
            state[name][:, slices // 2] = weight[:, 0]
    wide.load_state_dict(state)
    return wide


def neighbours(volume: np.ndarray, z: int, radius: int) -> np.ndarray:
    """Slices ``z - radius .. z + radius`` of ``volume``, the end slices repeated past its ends."""
    return volume[np.clip(np.arange(z - radius, z + radius + 1), 0, len(volume) - 1)]


def jaccard(prob: np.ndarray, truth: np.ndarray) -> float:
    pred = prob > 0.5
    return float((pred & truth).sum() / max((pred | truth).sum(), 1))


@torch.no_grad()
def evaluate(model: torch.nn.Module, slab: np.ndarray, truth: np.ndarray, radius: int) -> dict:
    """Jaccard on the slab, slices independent and smoothed across slices by one slice."""
    model.eval()
    prob = np.stack([model(torch.from_numpy(np.ascontiguousarray(neighbours(slab, z, radius)))[None])
                     .softmax(1)[0, 1].numpy() for z in range(len(slab))])
    model.train()
    smoothed = ndi.gaussian_filter1d(prob, 1.0, axis=0, mode="reflect", truncate=3.0)
    return {"independent": round(jaccard(prob, truth), 4),
            "smoothed": round(jaccard(smoothed, truth), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=3, help="odd: slices read per output slice")
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-every", type=float, default=10.0, help="minutes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    args = parser.parse_args()
    if args.slices < 1 or args.slices % 2 == 0:
        parser.error("--slices must be odd")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    radius = args.slices // 2
    base, card = load_model("mito-em")
    model = base if args.slices == 1 else slices_as_channels(base, card.spec, args.slices)
    folder = data.default_data_dir() if args.data is None else Path(args.data)
    train, held = data.lucchi_split(folder, whole=True)
    volume, masks = np.stack(train.images), np.stack(train.masks)
    volume = apply_normalization(volume, fit_normalization(volume, card.normalization))
    slab = np.stack(held.images)
    slab = apply_normalization(slab, fit_normalization(slab, card.normalization))
    truth = np.stack(held.masks) > 0

    def windows() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(BATCH):
            z = rng.integers(len(volume))
            y0, x0 = (rng.integers(n - PATCH) for n in volume.shape[1:])
            x = neighbours(volume, z, radius)[:, y0:y0 + PATCH, x0:x0 + PATCH]
            y = masks[z, y0:y0 + PATCH, x0:x0 + PATCH]
            turns = rng.integers(4)
            x, y = np.rot90(x, turns, (1, 2)), np.rot90(y, turns)
            if rng.random() < 0.5:
                x, y = x[:, :, ::-1], y[:, ::-1]
            if rng.random() < 0.5:
                x = x[::-1]  # Z order
            gamma, gain, shift = np.exp(rng.normal(0, 0.15)), rng.normal(1, 0.1), rng.normal(0, 0.1)
            xs.append(np.sign(x) * np.abs(x) ** gamma * gain + shift)
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(ys)).long()

    print(f"{args.slices} slice(s) as channels, {args.minutes:g} min, lr {args.lr:g}; "
          f"step 0 {evaluate(model, slab, truth, radius)}", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    model.train()
    start, step, next_eval = time.perf_counter(), 0, args.eval_every * 60
    losses: list[float] = []
    while (elapsed := time.perf_counter() - start) < args.minutes * 60:
        x, y = windows()
        logits = model(x)
        fg, target = logits.softmax(1)[:, 1], (y == 1).float()
        dice = 1 - (2 * (fg * target).sum() + 1) / (fg.sum() + target.sum() + 1)
        loss = F.cross_entropy(logits, y) + dice
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(loss.item())
        if step % 50 == 0:
            print(f"step {step} loss {np.mean(losses[-50:]):.4f}", flush=True)
        if elapsed > next_eval:
            print(f"step {step} ({elapsed / 60:.0f} min) {evaluate(model, slab, truth, radius)}",
                  flush=True)
            next_eval += args.eval_every * 60
    print(f"final step {step} {evaluate(model, slab, truth, radius)}", flush=True)


if __name__ == "__main__":
    main()
