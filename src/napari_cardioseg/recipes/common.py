"""What both recipes share: dense training through the project's trainer, prediction, Dice."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..core import metrics
from ..core.augment import AugmentConfig
from ..core.models import ModelCard, load_model
from ..core.nets import build_model
from ..core.predict import predict_probabilities, probabilities_to_labels
from ..core.train import TrainConfig, TrainResult, TrainSession

#: light CPU architecture: MobileNetV2 U-Net with 4 encoder stages (2.7 M parameters, 5.4 MB fp16)
SPEC = {"arch": "unet-mobilenet_v2", "in_channels": 1, "classes": 2, "encoder_depth": 4}
NORMALIZATION = {"method": "percentile", "low": 1.0, "high": 99.8}
PATCH, BATCH = 256, 4  # training windows: 4 of 256x256 per step


def log(message: str) -> None:
    """Print a time-stamped line at once."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_dense(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], card: ModelCard, *,
    seconds: float, seed: int, patch: int, batch: int, lr: float, augment: AugmentConfig,
    model: torch.nn.Module | None = None, gan_weight: float = 0.0, lr_decay: bool = False,
) -> TrainResult:
    """Train on full masks (scribbles = mask + 1) with the project's trainer.

    Without ``model`` a fresh ``card.spec`` model is built here (so registry options such as
    ``encoder_depth`` apply); either way it reaches
    :class:`~napari_cardioseg.core.train.TrainSession` as an in-memory ``init``.
    """
    torch.manual_seed(seed)
    model = build_model(card.spec) if model is None else model
    scribbles = [np.asarray(m, dtype=np.uint8) + 1 for m in masks]
    config = TrainConfig(
        init=(model, card), time_budget=seconds, device="cpu", seed=seed, patch_size=patch,
        batch=batch, lr=lr, augment=augment,
        keep_norm_stats=False,  # dense labels: batch-norm statistics are learned, as from scratch
        refresh_every=1e9,  # dense labels never change: index them once
        threads=torch.get_num_threads(),  # the recipe's --threads, not the GUI's half of the cores
        gan_weight=gan_weight, lr_decay=lr_decay,
    )
    session = TrainSession(list(images), scribbles, config)
    last = time.perf_counter()
    for progress in session.run():
        if time.perf_counter() - last > 60 or progress.done == 1:
            last = time.perf_counter()
            recent = session.losses[-50:]
            log(f"step {progress.done}  loss {np.mean(recent):.4f}  {progress.elapsed:.0f}/{seconds:.0f} s")
    return session.best()


def first_stage(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], card: ModelCard, checkpoint: Path, *,
    resume: bool, seconds: float, seed: int, lr: float, augment: AugmentConfig,
    gan_weight: float = 0.0,
) -> tuple[torch.nn.Module, ModelCard, int, float]:
    """Stage 1 of a recipe (fresh weights, high learning rate), saved to ``checkpoint``.

    With ``resume`` and an existing checkpoint, training is skipped and the checkpoint is loaded.
    Returns the model, its card, the steps and the seconds of stage 1.
    """
    if resume and checkpoint.with_suffix(".json").is_file():
        model, card = load_model(checkpoint.with_suffix(".json"))
        log(f"resuming from {checkpoint} ({card.training['steps']} steps)")
    else:
        result = train_dense(images, masks, card, seconds=seconds, seed=seed, patch=PATCH, batch=BATCH,
                             lr=lr, augment=augment, gan_weight=gan_weight)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        result.save(checkpoint)
        model, card = result.model, result.card
    return model, card, int(card.training["steps"]), float(card.training["seconds"])


def second_stage(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], card: ModelCard, model: torch.nn.Module, *,
    seconds: float, seed: int, lr: float, augment: AugmentConfig,
    validate: Callable[[torch.nn.Module, ModelCard], dict], gan_weight: float = 0.0,
    lr_decay: bool = False,
) -> tuple[TrainResult, dict]:
    """Stage 2 of a recipe (continues ``model`` at a lower learning rate), then ``validate``.

    Returns the training result and the validation metrics.
    """
    result = train_dense(images, masks, card, seconds=seconds, seed=seed, patch=PATCH, batch=BATCH, lr=lr,
                         augment=augment, model=model, gan_weight=gan_weight, lr_decay=lr_decay)
    log(f"stage 2: {len(result.losses)} steps; validating")
    metrics = validate(result.model, result.card)
    log(f"validation: {metrics}")
    return result, metrics


def training_record(stage1_seconds: float, result: TrainResult, started: float, resumed: bool) -> dict:
    """Return the model-card training fields both recipes share: windows, optimiser, time and device.

    ``started`` is this run's ``time.perf_counter()`` at its start; a resumed run adds the
    stage-1 training time, which an earlier run spent.
    """
    elapsed = time.perf_counter() - started
    return {
        "patch_size": PATCH,
        "batch": BATCH,
        "optimizer": "AdamW, masked cross-entropy + Dice (core.train), best smoothed loss kept",
        "seconds_training": round(stage1_seconds + result.card.training["seconds"]),
        "seconds_total": round(elapsed + stage1_seconds if resumed else elapsed),
        "device": device_note(),
    }


def predict_mask(image: np.ndarray, model: torch.nn.Module, card: ModelCard,
                 flips: bool = False, z_sigma: float = 0.0) -> np.ndarray:
    """0/1 foreground mask of a 2D image or a stack (slice by slice).

    Optionally flip-averaged, and smoothed across slices (``z_sigma``, see
    :mod:`..core.slice_smooth`).
    """
    prob = predict_probabilities(image, model, card, tile=512, overlap=0.25, batch=2, device="cpu",
                                 flips=flips, z_sigma=z_sigma)
    return probabilities_to_labels(prob)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Foreground Dice, Jaccard, precision, recall and specificity of two 0/1 arrays."""
    return metrics.scores(metrics.confusion(np.asarray(pred) > 0, np.asarray(truth) > 0, True))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground Dice of two 0/1 arrays."""
    return scores(pred, truth)["dice"]


def device_note() -> str:
    """Where the training ran, for the model card."""
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores), {torch.get_num_threads()} torch threads; no GPU"
