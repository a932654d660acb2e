"""npe2 writers: Labels and Image layers to TIFF with the layer scale as pixel size."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.writes import write_tiff


def _write(path: str, data: Any, meta: dict) -> list[str]:
    scale = meta.get("scale")
    array = np.asarray(data)
    spatial = tuple(scale)[-array.ndim :] if scale is not None else None
    write_tiff(path, array, spatial)
    return [path]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write a Labels layer (dtype kept; int64 narrowed to int32) with its calibration."""
    return _write(path, data, meta)


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Write an Image layer with its calibration."""
    return _write(path, data, meta)
