"""Checks shared by every face: greyscale images, label images and pixel sizes.

Each check returns the validated value or raises :class:`~.errors.CardiosegError` with a one-line
message that names what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import CardiosegError


def as_grey(data: np.ndarray, what: str = "image") -> np.ndarray:
    """Check that ``data`` is a 2D or 3D greyscale array of a supported numeric dtype.

    Raises
    ------
    CardiosegError
        For RGB(A) arrays, other dimensionalities, empty arrays and non-numeric dtypes.
    """
    data = np.asarray(data) if not hasattr(data, "shape") else data
    if data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[0] > 4:
        raise CardiosegError(
            f"the {what} looks like RGB{'A' if data.shape[-1] == 4 else ''} "
            f"(shape {tuple(data.shape)}); convert it to greyscale or split the channels"
        )
    if data.ndim not in (2, 3):
        raise CardiosegError(
            f"the {what} must be 2D (YX) or 3D (ZYX), got {data.ndim}D shape {tuple(data.shape)}"
        )
    if 0 in data.shape:
        raise CardiosegError(f"the {what} is empty (shape {tuple(data.shape)})")
    if np.dtype(data.dtype).kind not in "uifb":
        raise CardiosegError(f"the {what} has unsupported pixel type {data.dtype}")
    return data


def check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Validate a pixel size (µm per axis) for an ``ndim``-dimensional image."""
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim:
        raise CardiosegError(f"pixel size {spacing} has {len(spacing)} values for a {ndim}D image")
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise CardiosegError(f"pixel sizes must be positive numbers, got {spacing}")
    return spacing


def check_labels(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """Check that ``labels`` is a 2D/3D integer (or boolean) image and return it as int64."""
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] in (3, 4) and labels.shape[0] > 4:
        raise CardiosegError(f"the {what} look like an RGB image (shape {labels.shape})")
    if labels.ndim not in (2, 3):
        raise CardiosegError(f"the {what} must be 2D (YX) or 3D (ZYX), got shape {labels.shape}")
    if 0 in labels.shape:
        raise CardiosegError(f"the {what} are empty (shape {labels.shape})")
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)):
            raise CardiosegError(f"the {what} contain NaN or infinite values")
        if np.any(labels != np.round(labels)):
            raise CardiosegError(f"the {what} must hold whole numbers (a mask or label image)")
    elif labels.dtype.kind not in "uib":
        raise CardiosegError(f"the {what} have unsupported pixel type {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise CardiosegError(f"the {what} contain negative values")
    return labels.astype(np.int64)
