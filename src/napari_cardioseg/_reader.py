"""npe2 reader: TIFF / OME-TIFF / ImageJ files with their pixel size as the layer scale."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core.io import read_image
from .core.units import CALIBRATED_KEY

_SUFFIXES = (".tif", ".tiff")


_LABEL_WORDS = ("label", "mask", "scribble", "seg", "mito", "gt")


def _looks_like_labels(data: np.ndarray, name: str) -> bool:
    """Signed/32-bit integers, or integer files named like masks, open as Labels."""
    if data.dtype.kind == "i" or data.dtype in (np.uint32, np.uint64):
        return True
    return data.dtype.kind == "u" and any(w in name.lower() for w in _LABEL_WORDS)


def reader_function(path: str | list[str]) -> list[tuple]:
    """Read one or more files into napari layer data tuples."""
    paths = [path] if isinstance(path, str) else path
    layers = []
    for p in paths:
        images = read_image(p)
        if not images[0].calibrated:
            from napari.utils.notifications import show_warning

            show_warning(f"{p}: no pixel size in the file; the layer scale is 1 (pixels). Set it before "
                         "measuring: Plugins → CardioSeg → Pixel size.")
        for img in images:
            meta = {"name": img.name, "scale": img.scale,
                    "metadata": {CALIBRATED_KEY: img.calibrated, "source": str(p)}}
            kind = "labels" if _looks_like_labels(img.data, img.name) else "image"
            layers.append((img.data, meta, kind))
    return layers


def get_reader(path: str | list[str]) -> Callable | None:
    """Return :func:`reader_function` for TIFF paths, else None."""
    paths = [path] if isinstance(path, str) else path
    if not all(str(p).lower().endswith(_SUFFIXES) for p in paths):
        return None
    return reader_function
