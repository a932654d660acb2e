"""npe2 writers: Labels and Image layers to TIFF with the layer scale as pixel size."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.errors import CardiosegError
from .core.units import is_calibrated
from .core.writes import write_tiff


def _write(path: str, data: Any, meta: dict) -> list[str]:
    """Write the layer's pixel size only when its scale is one (never an uncalibrated 1 µm).

    A multiscale layer is written at full resolution; RGB images are refused (not a stack).
    """
    if meta.get("rgb"):
        raise CardiosegError(f"{meta.get('name', 'the layer')!r} is an RGB image; this writer "
                             "saves greyscale images and labels (Layers > Split RGB first)")
    scale = meta.get("scale")
    array = np.asarray(data[0] if meta.get("multiscale") else data)
    spatial = tuple(scale)[-array.ndim :] if scale is not None else None
    if spatial is not None and not is_calibrated(meta.get("metadata") or {}, spatial):
        spatial = None
    write_tiff(path, array, spatial)
    return [path]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer (dtype kept; int64 narrowed to int32) with its calibration."""
    return _write(path, data, meta)


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer with its calibration."""
    return _write(path, data, meta)
