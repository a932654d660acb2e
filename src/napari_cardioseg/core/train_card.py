"""The model card written for a model trained from scribbles."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .models import ModelCard
from .train_config import METHOD, TrainConfig
from .train_init import StartModel


def loss_summary(losses: Sequence[float], best_smoothed: float) -> dict:
    """First, last and lowest loss, the best smoothed loss and 20 points of the curve."""
    if not losses:
        return {}
    picks = np.linspace(0, len(losses) - 1, min(len(losses), 20)).round().astype(int)
    return {"first": losses[0], "last": losses[-1], "min": min(losses),
            "best_smoothed": best_smoothed, "curve": [losses[i] for i in picks]}


def training_card(
    config: TrainConfig, start: StartModel, *, image_shapes: Sequence[Sequence[int]],
    counts: dict[int, int], losses: Sequence[float], best_smoothed: float, seconds: float,
    patch: Sequence[int], batch: int, receptive_field: Sequence[int], probe: dict | None = None,
    normalization: dict | None = None, polarity: dict | None = None, blend: float = 1.0,
    norm_stats: str | None = None,
) -> ModelCard:
    """Build a card for the trained model: the start model's identity, the run's record and its data.

    Parameters
    ----------
    config, start : TrainConfig, StartModel
        The run's options and where it started.
    image_shapes : sequence of shapes
        The training images' shapes.
    counts : dict
        Painted pixels per scribble value (1 background, 2 first class, ...).
    losses : sequence of float
        Loss per step.
    best_smoothed : float
        The smoothed loss of the kept weights.
    seconds : float
        Training time.
    patch, batch
        Training window and windows per step.
    receptive_field : sequence of int
        The net's receptive field in pixels per axis.
    probe : dict, optional
        What the linear probe of the head did (:class:`core.probe_head.ProbeFit` as a dict),
        recorded as ``training["probe_head"]``.
    normalization : dict, optional
        The recipe the run normalised with (default: the start model's).
    polarity : dict, optional
        The polarity check (:class:`core.polarity.PolarityCheck` as a dict with ``inverted``),
        recorded as ``training["polarity"]``.
    blend : float
        Share of the run's change kept (``TrainConfig.blend``), recorded when below 1.
    norm_stats : str, optional
        What became of the batch-norm statistics when they were renewed
        (``TrainConfig.renew_norm_stats``), recorded as ``training["norm_stats"]``.
    """
    names = start.class_names
    training = {
        "method": METHOD,
        "image_shapes": [list(shape) for shape in image_shapes],
        "labelled_pixels": {
            names[v - 1] if v <= len(names) else f"label {v}": n for v, n in counts.items()
        },
        "steps": len(losses),
        "seconds": round(seconds, 2),
        "init": start.init_name,
        "seed": config.seed,
        "patch_size": list(patch),
        "batch": batch,
        "freeze_encoder": config.freeze_encoder,
        "loss": loss_summary(losses, best_smoothed),
    }
    if blend < 1.0:  # WiSE-FT: the returned weights moved only this share of the way
        training["blend"] = blend
    if config.lr_decay:
        training["lr_decay"] = "cosine to 0"
    if norm_stats is not None:
        training["norm_stats"] = norm_stats
    if config.gan_weight > 0:  # pix2pix-style conditional GAN (core.gan)
        training["gan_weight"] = config.gan_weight
    if polarity is not None:
        training["polarity"] = polarity
    if probe is not None:
        training["probe_head"] = {k: list(v) if isinstance(v, tuple) else v
                                  for k, v in probe.items()}
    base = start.base_card
    pixel_size = list(config.pixel_size) if config.pixel_size is not None else (
        base.pixel_size if base is not None else None)
    return ModelCard(
        name=base.name if base is not None else f"scribbles-{start.spec['arch']}",
        spec=dict(start.spec),
        class_names=list(names),
        normalization=start.normalization if normalization is None else normalization,
        pixel_size=pixel_size,
        description="Trained from scribbles in napari-cardioseg"
        + (f", starting from {start.init_name}" if start.init_name else ""),
        training=training,
        license=base.license if base is not None else "",
        receptive_field=[int(v) for v in receptive_field],
    )
