"""The live preview while training: which region to predict, and its labels and uncertainty."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np
import torch

from . import models as _models
from .blocks import fixed_normalization_card
from .nets import spec_ndim
from .predict import (
    predict_generator,
    predict_probabilities,
    probabilities_to_labels,
    probabilities_to_uncertainty,
)
from .progress import Progress
from .train_init import default_class_names

Region = tuple[slice, ...]
PREVIEW_MAX = (32, 512, 512)  # largest preview region (Z, Y, X)
_IDENTITY = {"method": "fixed", "min": 0.0, "max": 1.0}  # images are normalised once, up front


def preview_region(request: Region | None, shape: Sequence[int], net_ndim: int) -> Region | None:
    """Clip ``request`` to an image of ``shape`` and to :data:`PREVIEW_MAX`.

    A 2D net on a stack gets one slice. Returns None when nothing is left.
    """
    if request is None:
        return None
    limits = PREVIEW_MAX[-len(shape):]
    if net_ndim == 2 and len(shape) == 3:
        limits = (1, *limits[1:])
    region = []
    for sl, n, limit in zip(request, shape, limits, strict=True):
        start, stop, _ = sl.indices(n)
        if stop - start > limit:
            start = (start + stop - limit) // 2
            stop = start + limit
        if stop <= start:
            return None
        region.append(slice(start, stop))
    return tuple(region)


def preview_prediction(model: torch.nn.Module, spec: dict, normalized: np.ndarray,
                       device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Labels and uncertainty (float32, 0..1) of an already normalised crop, by the sliding window."""
    card = _models.ModelCard("preview", spec, default_class_names(int(spec["classes"])),
                             dict(_IDENTITY), None)
    prob = predict_probabilities(normalized, model, card, device=device)
    return probabilities_to_labels(prob), probabilities_to_uncertainty(prob)


def preview_labels(model: torch.nn.Module, spec: dict, normalized: np.ndarray,
                   device: torch.device) -> np.ndarray:
    """Predicted labels of an already normalised crop, by the sliding-window predictor."""
    return preview_prediction(model, spec, normalized, device)[0]


def view_prediction_steps(image: Any, request: Region, model: torch.nn.Module,
                          card: _models.ModelCard, device: str = "auto",
                          ) -> Generator[Progress, None, tuple[Region, np.ndarray, np.ndarray] | None]:
    """Predict the region in view with a model outside training (e.g. after Undo).

    ``request`` is clipped as training previews are (:func:`preview_region`) and normalised with
    the numbers fitted on the whole ``image``, as :func:`predict.predict_generator` does for it.
    Returns the region, labels and uncertainty (float32, 0..1); None when nothing is in view.
    """
    region = preview_region(request, image.shape, spec_ndim(card.spec))
    if region is None:
        return None
    fixed = fixed_normalization_card(card, image)
    prob = yield from predict_generator(np.asarray(image[region]), model, fixed, device=device)
    return region, probabilities_to_labels(prob), probabilities_to_uncertainty(prob)
