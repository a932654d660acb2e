"""The live preview while training: which region to predict, and its labels and uncertainty."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import models as _models
from .predict import predict_probabilities, probabilities_to_labels, probabilities_to_uncertainty
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
