"""Recipe for the shipped ``zdisk-fluo`` model: Z-disks in fluorescence images, 2D per slice.

No public Z-disk masks exist, so the model learns from synthetic images with exact ground truth
(:func:`napari_cardioseg.core.synth.zdisk_image` with randomised parameters). Validation: Dice
on synthetic images with other seeds, and on the real single-cell image (no masks) the sarcomere
length measured from the predicted mask against the image's own Fourier period.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.augment import AugmentConfig
from ..core.measure import measure
from ..core.measure.zdisk import fft_period
from ..core.models import ModelCard, load_model, save_model
from ..core.nets import scratch_spec
from ..core.synth import ZdiskParams, zdisk_image
from . import common, data

NAME = "zdisk-fluo"
SEED = 0
N_TRAIN = 300
TRAIN_SEEDS = range(1000, 1000 + N_TRAIN)
VAL_SEEDS = range(9000, 9016)
INIT_SEEDS = range(1000, 1000 + 2 * N_TRAIN)  # a continued run trains on twice the images
INIT_LR = 1e-3  # stage 1 of a continued run: below a fresh start's 2e-3
SHAPE = (320, 320)
PERIOD_RANGE = (1.0, 2.6)  # µm: one sarcomere, below the second harmonic of a 1.5-2.3 µm period
STAGE1 = 0.7  # share of the time budget at the higher learning rate
AUGMENT = AugmentConfig(scale=0.15, elastic=2.0, elastic_prob=0.3, contrast=0.3, brightness=0.2)


def synthetic_set(seeds: range) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """Images, masks and pixel sizes of randomised synthetic Z-disk images."""
    images, masks, sizes = [], [], []
    for seed in seeds:
        params = ZdiskParams.sample(np.random.default_rng(seed))
        dtype = np.uint8 if seed % 2 else np.uint16
        sample = zdisk_image(SHAPE, params, seed=seed, dtype=dtype)
        images.append(sample.image)
        masks.append(sample.mask)
        sizes.append(float(sample.pixel_size))
    return images, masks, sizes


def real_check(model, card: ModelCard, data_dir: Path) -> dict:
    """Sarcomere length from the predicted mask vs the real image's Fourier period (µm)."""
    image, cell, pixel = data.zdisk_real(data_dir)
    spacing = (pixel, pixel)
    reference = fft_period(image, spacing, cell, PERIOD_RANGE)[0]
    pred = common.predict_mask(image, model, card) * cell
    summary = measure(pred, spacing, "zdisk", cell_mask=cell, period_range=PERIOD_RANGE).summary
    from_fft = float(summary["sarcomere_length_fft_um"][0])
    from_spacing = float(summary["sarcomere_length_spacing_um"][0])
    return {
        "real_image_fourier_period_um": round(reference, 4),
        "real_mask_sarcomere_length_fft_um": round(from_fft, 4),
        "real_mask_sarcomere_length_spacing_um": round(from_spacing, 4),
        "real_fft_relative_error": round(abs(from_fft - reference) / reference, 4),
        "real_spacing_relative_error": round(abs(from_spacing - reference) / reference, 4),
        "real_zdisk_count": int(summary["count"][0]),
    }


def evaluate(model, card: ModelCard, data_dir: Path | None) -> dict:
    """Dice on held-out synthetic images; the real-image check when ``data_dir`` has the data."""
    images, masks, _ = synthetic_set(VAL_SEEDS)
    preds = [common.predict_mask(image, model, card) for image in images]
    per_image = [common.dice(p, m) for p, m in zip(preds, masks, strict=True)]
    flipped = [common.predict_mask(image, model, card, flips=True) for image in images]
    truth = np.concatenate([m.ravel() for m in masks])
    pooled = common.scores(np.concatenate([p.ravel() for p in preds]), truth)
    results = {
        "synthetic_val_dice_pooled": round(pooled["dice"], 4),
        "synthetic_val_precision": round(pooled["precision"], 4),
        "synthetic_val_recall": round(pooled["recall"], 4),
        "synthetic_val_dice_mean": round(float(np.mean(per_image)), 4),
        "synthetic_val_dice_pooled_flips": round(
            common.dice(np.concatenate([p.ravel() for p in flipped]), truth), 4),
        "synthetic_val_seeds": [VAL_SEEDS.start, VAL_SEEDS.stop - 1],
    }
    if data_dir is not None and (data_dir / "zdisk_fluor").is_dir():
        results.update(real_check(model, card, data_dir))
    return results


def run(data_dir: Path, minutes: float, out: Path, seed: int = SEED, resume: bool = False,
        init: str | None = None, arch: str | None = None) -> Path:
    """Train, validate and save ``zdisk-fluo`` into ``out``; returns the card path.

    Stage 1 (learning rate 2e-3) is checkpointed in ``out/checkpoints``; ``resume`` starts from that
    checkpoint with stage 2 (the same images at 3e-4, which settles the disks' edges). ``init`` (a
    model name or card) continues that model instead: stage 1 at the lower rate ``INIT_LR``, on
    twice as many synthetic images, so a longer run sees more variety, then stage 2 as usual.
    ``arch`` trains that registry architecture from scratch with its scratch options
    (:func:`core.nets.scratch_spec`) instead of the recipe's smp U-Net.
    """
    start = time.perf_counter()
    spec = dict(common.SPEC) if arch is None else scratch_spec(arch, 2)  # a bad name fails first
    seeds = TRAIN_SEEDS if init is None else INIT_SEEDS
    images, masks, sizes = synthetic_set(seeds)
    common.log(f"{len(images)} synthetic images made in {time.perf_counter() - start:.0f} s")
    card = ModelCard(
        name=NAME, spec=spec, class_names=["background", "z-disk"],
        normalization=dict(common.NORMALIZATION), pixel_size=[float(np.median(sizes))] * 2,
    )
    init_note = ""
    if init is not None:
        model, start_card = load_model(init)
        card.spec = dict(start_card.spec)
        init_note = (f"continued from {start_card.name} (weights sha256 "
                     f"{start_card.weights_sha256[:12]}; {start_card.training.get('recipe', '')}, "
                     f"steps {start_card.training.get('steps', '')})")
        common.log(f"continuing {init} ({start_card.weights_sha256[:12]}) at lr {INIT_LR:g}")
        first = common.train_dense(images, masks, card, seconds=minutes * 60 * STAGE1, seed=seed,
                                   patch=common.PATCH, batch=common.BATCH, lr=INIT_LR,
                                   augment=AUGMENT, model=model)
        model, stage1_steps = first.model, len(first.losses)
        stage1_seconds = float(first.card.training["seconds"])
    else:
        model, card, stage1_steps, stage1_seconds = common.first_stage(
            images, masks, card, out / "checkpoints" / f"{NAME}-stage1", resume=resume,
            seconds=minutes * 60 * STAGE1, seed=seed, lr=2e-3, augment=AUGMENT)
    result, metrics = common.second_stage(
        images, masks, card, model, seconds=minutes * 60 * (1 - STAGE1), seed=seed + 1, lr=3e-4,
        augment=AUGMENT, validate=lambda m, c: evaluate(m, c, data_dir))
    steps = [stage1_steps, len(result.losses)]
    card = result.card
    card.description = (
        "Z-disks in fluorescence / confocal / Airyscan images (2D, applied slice by slice), "
        f"trained on synthetic images at {min(sizes):.3f}-{max(sizes):.3f} µm per pixel; "
        "fine-tune with strokes when your staining or optics differ."
    )
    card.metrics = metrics
    card.license = "BSD-3-Clause (weights and synthetic training data made by this project)"
    card.training = {
        "data": [{"name": "synthetic Z-disk images",
                  "citation": "napari_cardioseg.core.synth.zdisk_image with ZdiskParams.sample(rng(seed))",
                  "terms": "made by this project (BSD-3-Clause)",
                  "used": f"{SHAPE[0]}x{SHAPE[1]} px, uint8/uint16; seeds {seeds.start}-"
                          f"{seeds.stop - 1} for training, "
                          f"{VAL_SEEDS.start}-{VAL_SEEDS.stop - 1} for validation"},
                 {"name": "real hiPSC cardiomyocyte (sarcgraph-image sample, MIT)",
                  "citation": "github.com/saeedmhz/sarcgraph-image, sample_data",
                  "terms": "research use; validation of the sarcomere length only, not trained on",
                  "used": "check only"}],
        "recipe": f"python -m napari_cardioseg.recipes zdisk --minutes {minutes:g}"
                  + (f" --init {init}" if init else "") + (f" --arch {arch}" if arch else ""),
        "seed": seed,
        **({"init": init_note} if init_note else {}),
        "steps": {f"stage 1 (lr {INIT_LR if init else 2e-3:g})": steps[0], "stage 2 (lr 3e-4)": steps[1]},
        "augmentation": "generator randomisation + trainer (flips, rotations, ±15 % zoom, elastic, "
                        "contrast, brightness)",
        **common.training_record(stage1_seconds, result, start, resume),
    }
    path = save_model(result.model, card, out / NAME, fp16=True)
    common.log(f"saved {path}")
    return path
