"""Recipe for the shipped ``mito-em`` model: mitochondria in FIB-SEM / SBF-SEM, 2D per slice.

Training data: Lucchi++ (all but the last 25 slices of the crop), 16 of the 20 EM-net cardiac
tiles, microscope-like degraded and rescaled copies of both, and slices of synthetic EM stacks
from :func:`napari_cardioseg.core.synth.organelle_stack`. Validation: the held-out Lucchi slab
and EM-net tiles 4, 9, 14 and 19 at their native pixel sizes, plus a synthetic stack.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..core.augment import AugmentConfig
from ..core.models import ModelCard, load_model, save_model
from . import common, data

NAME = "mito-em"
SEED = 0
SYNTH_TRAIN_SEEDS = tuple(range(100, 106))
SYNTH_VAL_SEED = 7  # a held-out synthetic stack (the sample data uses seed 2, also held out)
LUCCHI_Z_SIGMA = 1.0  # Lucchi++ is 5 nm isotropic: slice_smooth.slice_sigma gives one slice
STAGE1 = 0.8  # share of the time budget spent on real data before synthetic slices join
LR_STAGE2 = 5e-4  # stage 2 (and a continued model): real + synthetic data
AUGMENT = AugmentConfig(scale=0.25, elastic=2.0, elastic_prob=0.3, contrast=0.3, brightness=0.2)

SOURCES = [
    {"name": "Lucchi++ (EPFL CA1 hippocampus FIB-SEM, 5 nm)",
     "citation": "Lucchi et al., IEEE TMI 2012; re-annotation Casser et al., MIDL 2020 "
                 "(arXiv:1812.06024)",
     "terms": "EPFL images, no explicit data licence: research use only; not redistributed",
     "used": "slices 0-139 of a 165x384x512 crop for training, 140-164 for validation"},
    {"name": "EM-net cardiac SBF-SEM tiles (about 13 nm/px, estimated)",
     "citation": "Khadangi, Boudier & Rajagopal, EM-net, bioRxiv 10.1101/2020.02.03.933127",
     "terms": "github.com/akhadangi/EM-net, MIT licence (repository); not redistributed",
     "used": "16 of 20 tiles for training, tiles 4, 9, 14, 19 (one per group) for validation"},
    {"name": "synthetic EM stacks", "citation": "napari_cardioseg.core.synth.organelle_stack",
     "terms": "made by this project (BSD-3-Clause)",
     "used": f"slices of stacks with seeds {list(SYNTH_TRAIN_SEEDS)}"},
]


def _source(source: dict, whole: bool) -> dict:
    """Return the card's entry for one data source, saying which Lucchi++ part was used."""
    if whole and source["name"].startswith("Lucchi"):
        return {**source, "used": "slices 0-139 of the whole 165x768x1024 training volume for "
                                  "training, 140-164 for validation"}
    return source


def real_pool(data_dir: Path, rng: np.random.Generator, exclude: tuple[str, ...] = (),
              whole: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Real training images and masks: originals and degraded, rescaled copies.

    ``exclude`` names data sets ("lucchi", "emnet") left out, e.g. for leave-one-dataset-out
    benchmarks of training from strokes; ``whole`` takes the whole Lucchi++ volume, not its crop.
    """
    lucchi, _ = data.lucchi_split(data_dir, whole=whole)
    emnet, _ = data.emnet_split(data_dir)
    for name, subset in (("lucchi", lucchi), ("emnet", emnet)):
        if name in exclude:
            subset.images, subset.masks = [], []
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    # every Lucchi slice as it is, and every fourth one also rescaled towards SBF-SEM pixel
    # sizes and degraded (neighbouring slices, 5 nm apart, are nearly identical)
    for i, (image, mask) in enumerate(zip(lucchi.images, lucchi.masks, strict=True)):
        images.append(image)
        masks.append(mask)
        if i % 4 == 1:
            img, m = data.degrade(image, mask, rng, zoom=(0.35, 1.1))
            images.append(img)
            masks.append(m)
    for image, mask in zip(emnet.images, emnet.masks, strict=True):
        images.append(image)
        masks.append(mask)
        for _ in range(2):
            img, m = data.degrade(image, mask, rng, zoom=(0.6, 1.6))
            images.append(img)
            masks.append(m)
    return images, masks


def synthetic_pool() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Every other slice of the synthetic training stacks."""
    from ..core.synth import organelle_stack

    images, masks = [], []
    for seed in SYNTH_TRAIN_SEEDS:
        stack = organelle_stack(seed=seed)
        images += list(stack.image[::2])
        masks += list(stack.mask[::2])
    return images, masks


def evaluate(model, card: ModelCard, data_dir: Path, whole: bool = False) -> dict:
    """Dice on the held-out Lucchi slab, the held-out EM-net tiles and a synthetic stack.

    The slab is scored slice by slice as the net sees it, with flips, and smoothed across
    slices as prediction does by default on an isotropic calibrated stack (one slice).

    ``whole``: the slab is the last 25 slices of the whole volume (else of the crop); the four
    EM-net test tiles are scored too when their masks are there.
    """
    _, lucchi = data.lucchi_split(data_dir, whole=whole)
    _, emnet = data.emnet_split(data_dir)
    slab = np.stack(lucchi.images)
    pred = common.predict_mask(slab, model, card)
    lucchi_scores = common.scores(pred, np.stack(lucchi.masks))
    results: dict[str, float | list[float]] = {
        f"lucchi_val_{k}": lucchi_scores[k] for k in ("dice", "jaccard", "precision", "recall")}
    results["lucchi_val_dice_flips"] = common.dice(common.predict_mask(slab, model, card, flips=True),
                                                   np.stack(lucchi.masks))
    smoothed = common.scores(common.predict_mask(slab, model, card, z_sigma=LUCCHI_Z_SIGMA),
                             np.stack(lucchi.masks))  # as `cardioseg predict` runs on the 5 nm file
    results["lucchi_val_jaccard_smoothed"] = smoothed["jaccard"]
    results["lucchi_val_dice_smoothed"] = smoothed["dice"]
    preds = [common.predict_mask(image, model, card) for image in emnet.images]
    results["emnet_val_dice_pooled"] = common.dice(np.stack(preds), np.stack(emnet.masks))
    results["emnet_val_dice_per_tile"] = [
        round(common.dice(p, m), 4) for p, m in zip(preds, emnet.masks, strict=True)]
    results["emnet_val_dice_flips"] = common.dice(
        np.stack([common.predict_mask(image, model, card, flips=True) for image in emnet.images]),
        np.stack(emnet.masks))
    if (data_dir / "emnet_cardiac_sbfsem" / "test_mito.tif").is_file():
        test_images, test_masks = data.emnet_test(data_dir)
        tests = [common.predict_mask(image, model, card) for image in test_images]
        results["emnet_test_dice_pooled"] = common.dice(np.stack(tests), test_masks)
        results["emnet_test_dice_per_tile"] = [
            round(common.dice(p, m), 4) for p, m in zip(tests, test_masks, strict=True)]
    from ..core.synth import organelle_stack

    synth = organelle_stack(seed=SYNTH_VAL_SEED)
    results["synthetic_dice"] = common.dice(common.predict_mask(synth.image, model, card), synth.mask)
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()}


def run(data_dir: Path, minutes: float, out: Path, seed: int = SEED, resume: bool = False,
        exclude: tuple[str, ...] = (), gan_weight: float = 0.0, init: str | None = None,
        whole: bool = False, lr: float | None = None, lr_decay: bool = False) -> Path:
    """Train, validate and save ``mito-em`` into ``out``; returns the card path.

    Stage 1 (real data) is checkpointed in ``out/checkpoints``; ``resume`` starts from that
    checkpoint with stage 2 (real + synthetic data). ``exclude`` leaves real data sets out
    (:func:`real_pool`); they are still validated on. ``gan_weight`` > 0 adds the
    conditional-GAN term (:mod:`core.gan`) in both stages. ``init`` (a model name or card)
    continues that model with stage 2 for the whole budget instead of stage 1 from scratch.
    ``whole`` trains and validates on the whole Lucchi++ volume instead of its crop. ``lr``
    (default :data:`LR_STAGE2`) is stage 2's learning rate; ``lr_decay`` decays it to 0 along a
    half cosine.
    """
    lr = LR_STAGE2 if lr is None else lr
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    images, masks = real_pool(data_dir, rng, exclude, whole)
    common.log(f"stage 1: {len(images)} real images")
    card = ModelCard(
        name=NAME, spec=dict(common.SPEC), class_names=["background", "mitochondrion"],
        normalization=dict(common.NORMALIZATION), pixel_size=[data.LUCCHI_PIXEL_UM] * 2,
    )
    if init is not None:
        model, start_card = load_model(init)
        card.spec = dict(start_card.spec)
        stage1_steps, stage1_seconds, share = 0, 0.0, 1.0
        init_note = (f"continued from {start_card.name} (weights sha256 "
                     f"{start_card.weights_sha256[:12]}; {start_card.training.get('recipe', '')}, "
                     f"steps {start_card.training.get('steps', '')})")
        common.log(f"continuing {init} ({start_card.weights_sha256[:12]}); no stage 1")
    else:
        model, card, stage1_steps, stage1_seconds = common.first_stage(
            images, masks, card, out / "checkpoints" / f"{NAME}-stage1", resume=resume,
            seconds=minutes * 60 * STAGE1, seed=seed, lr=2e-3, augment=AUGMENT,
            gan_weight=gan_weight)
        share = 1 - STAGE1
        init_note = ""
    synth_images, synth_masks = synthetic_pool()
    common.log(f"stage 2: {len(images)} real + {len(synth_images)} synthetic images")
    counts = {"real_and_degraded": len(images), "synthetic_slices": len(synth_images)}
    result, metrics = common.second_stage(
        images + synth_images, masks + synth_masks, card, model, seconds=minutes * 60 * share,
        seed=seed + 1, lr=lr, augment=AUGMENT, lr_decay=lr_decay,
        validate=lambda m, c: evaluate(m, c, data_dir, whole), gan_weight=gan_weight)
    steps = [stage1_steps, len(result.losses)]
    card = result.card
    card.description = (
        "Mitochondria in FIB-SEM / SBF-SEM images (2D, applied slice by slice). Trained at 5-13 nm "
        "per pixel with rescaling 0.35-1.6x; fine-tune with strokes for other tissues or pixel sizes."
    )
    card.metrics = metrics
    card.license = "weights BSD-3-Clause; trained on research-use data (see training.data)"
    card.training = {
        "data": [_source(s, whole) for s in SOURCES
                 if not any(s["name"].lower().replace("-", "").startswith(n) for n in exclude)],
        "pool": counts,
        "recipe": f"python -m napari_cardioseg.recipes mito --minutes {minutes:g}"
                  + (" --lucchi whole" if whole else "")
                  + (f" --init {init}" if init else "")
                  + "".join(f" --exclude {name}" for name in exclude)
                  + (f" --gan-weight {gan_weight:g}" if gan_weight > 0 else "")
                  + (f" --lr {lr:g}" if lr != LR_STAGE2 else "")
                  + (" --lr-decay" if lr_decay else ""),
        "seed": seed,
        **({"init": init_note} if init_note else {}),
        "steps": {"stage 1 (real data, lr 2e-3)": steps[0],
                  f"stage 2 (real + synthetic, lr {lr:g}{', cosine decay' if lr_decay else ''})":
                      steps[1]},
        "augmentation": "trainer (flips, rotations, ±25 % zoom, elastic, contrast, brightness) + "
                        "recipe (rescale 0.35-1.6x, blur, gamma, Gaussian noise)",
        **common.training_record(stage1_seconds, result, start, resume),
    }
    path = save_model(result.model, card, out / NAME, fp16=True)
    common.log(f"saved {path}")
    return path
