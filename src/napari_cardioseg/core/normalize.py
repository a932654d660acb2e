"""Intensity normalisation stored with a model and applied identically everywhere.

:func:`fit_normalization` turns a recipe (``percentile``, ``minmax``, ``zscore``, ``fixed``) into
concrete numbers computed once on the whole image; :func:`apply_normalization` applies them to
any part of it, so a tile normalised alone equals the same tile cut from the normalised image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import CardiosegError

METHODS = ("percentile", "minmax", "zscore", "fixed")
MAX_SAMPLES = 1 << 22  # values looked at when fitting (strided subsample of bigger images)


def _sample(image: Any) -> np.ndarray:
    """Finite values of ``image`` (a regular strided subsample when it is large), as float64."""
    size = math.prod(image.shape)
    if size == 0:
        raise CardiosegError("cannot normalise an empty image")
    step = max(1, math.ceil((size / MAX_SAMPLES) ** (1.0 / len(image.shape))))
    values = np.asarray(image[(slice(None, None, step),) * len(image.shape)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise CardiosegError("the image has no finite pixel values (all NaN or infinite)")
    return values


def check_normalization(norm: dict) -> str:
    """Validate a recipe or fitted dict and return its method."""
    method = norm.get("method") if isinstance(norm, dict) else None
    if method not in METHODS:
        raise CardiosegError(
            f"normalisation method must be one of {', '.join(METHODS)}, got {method!r}"
        )
    if method == "percentile":
        low, high = float(norm.get("low", 1.0)), float(norm.get("high", 99.8))
        if not 0.0 <= low < high <= 100.0:
            raise CardiosegError(f"percentiles need 0 <= low < high <= 100, got {low}, {high}")
    if method == "fixed":
        low, high = norm.get("min"), norm.get("max")
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise CardiosegError(f"fixed normalisation needs numbers min < max, got {low}, {high}")
    return method


def fit_normalization(image: Any, norm: dict) -> dict:
    """Concrete normalisation numbers for ``image`` (ignoring NaN/inf).

    Parameters
    ----------
    image : array-like
        The whole image (NumPy array, memmap, zarr or dask array); only a strided subsample of at
        most ``MAX_SAMPLES`` values is read.
    norm : dict
        ``{"method": "percentile", "low": 1.0, "high": 99.8}``, ``{"method": "minmax"}``,
        ``{"method": "zscore"}`` or ``{"method": "fixed", "min": a, "max": b}``.

    Returns
    -------
    dict
        ``{"method": "fixed", "min": a, "max": b}`` or ``{"method": "zscore", "mean": m,
        "std": s}``, with the recipe's method kept under ``"fitted_from"``.
    """
    method = check_normalization(norm)
    if method == "fixed":
        return {"method": "fixed", "min": float(norm["min"]), "max": float(norm["max"]),
                "fitted_from": "fixed"}
    values = _sample(image)
    if method == "zscore":
        return {"method": "zscore", "mean": float(values.mean()), "std": float(values.std()),
                "fitted_from": "zscore"}
    if method == "minmax":
        low, high = float(values.min()), float(values.max())
    else:
        low, high = (float(v) for v in np.percentile(
            values, [float(norm.get("low", 1.0)), float(norm.get("high", 99.8))]))
    return {"method": "fixed", "min": low, "max": high, "fitted_from": method}


def apply_normalization(array: Any, fitted: dict) -> np.ndarray:
    """Normalise ``array`` with numbers from :func:`fit_normalization` (float32; NaN/inf → 0).

    ``fixed`` maps ``[min, max]`` to ``[0, 1]`` (no clipping); ``zscore`` gives zero mean and unit
    standard deviation. A constant image (zero range or deviation) is only shifted.
    """
    method = fitted.get("method") if isinstance(fitted, dict) else None
    if method == "fixed":
        offset, scale = fitted["min"], fitted["max"] - fitted["min"]
    elif method == "zscore":
        offset, scale = fitted["mean"], fitted["std"]
    else:
        raise CardiosegError(f"not a fitted normalisation: {fitted!r} (use fit_normalization)")
    scale = scale if scale > 0 else 1.0
    out = np.asarray(array, dtype=np.float32) - np.float32(offset)
    out *= np.float32(1.0 / scale)
    if not np.isfinite(out).all():
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return out
