"""Intensity normalisation stored with a model and applied identically everywhere.

:func:`fit_normalization` turns a recipe (``percentile``, ``minmax``, ``zscore``, ``fixed``) into
concrete numbers computed once on the whole image; :func:`apply_normalization` applies them to
any part of it, so a tile normalised alone equals the same tile cut from the normalised image.

Any recipe may say ``"invert": true``: the image is negated before fitting and applying (dark
objects become bright), for a model used on data of the opposite contrast (e.g. EM recorded
with back-scattered instead of transmitted electrons).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import CardiosegError

METHODS = ("percentile", "minmax", "zscore", "fixed")
MAX_SAMPLES = 1 << 22  # values looked at when fitting (strided subsample of bigger images)
_LIMIT = 2.0 ** 500  # beyond this (or below its inverse), statistics use values scaled by 2**k
_F32_MAX = float(np.finfo(np.float32).max)


def _power_of_two_scale(magnitude: float) -> float:
    """1 for ordinary magnitudes, else a power of two near ``magnitude`` (exact to divide by).

    Huge values overflow in differences and squares, tiny ones underflow in squares.
    """
    if not math.isfinite(magnitude) or magnitude == 0 or 1.0 / _LIMIT <= magnitude <= _LIMIT:
        return 1.0
    return math.ldexp(1.0, math.frexp(magnitude)[1] - 1)


def _finite_number(norm: dict, key: str, default: float | None = None) -> float:
    value = norm.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CardiosegError(f"normalisation {key!r} must be a finite number, got {value!r}")
    return float(value)


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
        low, high = _finite_number(norm, "low", 1.0), _finite_number(norm, "high", 99.8)
        if not 0.0 <= low < high <= 100.0:
            raise CardiosegError(f"percentiles need 0 <= low < high <= 100, got {low}, {high}")
    if method == "fixed":
        low, high = _finite_number(norm, "min"), _finite_number(norm, "max")
        if not low < high:
            raise CardiosegError(f"fixed normalisation needs numbers min < max, got {low}, {high}")
    if not isinstance(norm.get("invert", False), bool):
        raise CardiosegError(f"normalisation 'invert' must be true or false, got {norm['invert']!r}")
    return method


def inverted(norm: dict) -> bool:
    """Tell whether a recipe or fitted dict negates the image (``"invert": true``)."""
    return bool(norm.get("invert", False))


def with_invert(norm: dict, invert: bool) -> dict:
    """Return a copy of ``norm`` that negates the image when ``invert`` (the key left out when not)."""
    out = {k: v for k, v in norm.items() if k != "invert"}
    if invert:
        out["invert"] = True
    return out


def fit_normalization(image: Any, norm: dict) -> dict:
    """Concrete normalisation numbers for ``image`` (ignoring NaN/inf).

    Parameters
    ----------
    image : array-like
        The whole image (NumPy array, memmap, zarr or dask array); only a strided subsample of at
        most ``MAX_SAMPLES`` values is read.
    norm : dict
        ``{"method": "percentile", "low": 1.0, "high": 99.8}``, ``{"method": "minmax"}``,
        ``{"method": "zscore"}`` or ``{"method": "fixed", "min": a, "max": b}``, each optionally
        with ``"invert": True``.

    Returns
    -------
    dict
        ``{"method": "fixed", "min": a, "max": b}`` or ``{"method": "zscore", "mean": m,
        "std": s}``, with the recipe's method kept under ``"fitted_from"`` (and ``"invert":
        True`` kept: the numbers are then those of the negated image).
    """
    method = check_normalization(norm)
    flag = {"invert": True} if inverted(norm) else {}
    if method == "fixed":
        return {"method": "fixed", "min": float(norm["min"]), "max": float(norm["max"]),
                "fitted_from": "fixed", **flag}
    values = _sample(image)
    if flag:
        np.negative(values, out=values)
    # values near the float64 limits (±1.8e308, 1e-308) overflow or underflow in differences
    # and squares: compute the statistics on values divided by a power of two (exact) and scale
    # the results back
    s = _power_of_two_scale(float(np.abs(values).max()))
    if s != 1.0:
        values = values / s
    if method == "zscore":
        return {"method": "zscore", "mean": float(values.mean()) * s,
                "std": float(values.std()) * s, "fitted_from": "zscore", **flag}
    if method == "minmax":
        low, high = float(values.min()), float(values.max())
    else:
        low, high = (float(v) for v in np.percentile(
            values, [float(norm.get("low", 1.0)), float(norm.get("high", 99.8))]))
    return {"method": "fixed", "min": low * s, "max": high * s, "fitted_from": method, **flag}


def apply_normalization(array: Any, fitted: dict) -> np.ndarray:
    """Normalise ``array`` with numbers from :func:`fit_normalization` (float32; NaN/inf → 0).

    ``fixed`` maps ``[min, max]`` to ``[0, 1]`` (no clipping); ``zscore`` gives zero mean and unit
    standard deviation; with ``"invert": True`` both apply to the negated array. A constant image
    (zero range or deviation) is only shifted. The arithmetic
    is float64 (divided by a power of two for values near its limit), so images at any finite
    magnitude give the same result as the same image scaled down; results beyond the float32
    range saturate at its limits.
    """
    method = fitted.get("method") if isinstance(fitted, dict) else None
    if method == "fixed":
        low, high = fitted["min"], fitted["max"]
        s = _power_of_two_scale(max(abs(low), abs(high)))
        offset, spread = low / s, high / s - low / s
    elif method == "zscore":
        s = _power_of_two_scale(max(abs(fitted["mean"]), fitted["std"]))
        offset, spread = fitted["mean"] / s, fitted["std"] / s
    else:
        raise CardiosegError(f"not a fitted normalisation: {fitted!r} (use fit_normalization)")
    spread = spread if spread > 0 else 1.0 / s
    source = np.asarray(array)
    out = source.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if inverted(fitted):
            np.negative(out, out=out)
        if s != 1.0:
            out /= s
        out -= offset
        out /= spread
    bad = ~np.isfinite(source) if source.dtype.kind == "f" else None
    np.clip(out, -_F32_MAX, _F32_MAX, out=out)
    out = out.astype(np.float32)
    if bad is not None and bad.any():
        out[bad] = 0.0
    return out
