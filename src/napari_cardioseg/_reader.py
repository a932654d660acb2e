"""npe2 reader: every format of the registry (:mod:`.core.formats`), pixel size as the layer scale.

Single-series TIFFs up to :data:`LAZY_BYTES` are read into memory (with :func:`core.io.read_image`'s checks);
larger TIFFs and every other format open as dask arrays whose blocks are read when napari shows
them; OME-Zarr stores open as multiscale layers. Every channel of every scene becomes a layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .core.formats import find_format, is_readable, open_all
from .core.io import read_image, tiff_series_count
from .core.units import CALIBRATED_KEY

#: TIFFs larger than this (bytes on disk) open as lazy dask layers
LAZY_BYTES = 512 * 2**20

_LABEL_WORDS = ("label", "mask", "scribble", "seg", "mito", "gt")


def _looks_like_labels(data: Any, name: str) -> bool:
    """Signed/32-bit integers, or integer files named like masks, open as Labels."""
    dtype = np.dtype(data.dtype)
    if dtype.kind == "i" or dtype in (np.uint32, np.uint64):
        return True
    return dtype.kind == "u" and any(w in name.lower() for w in _LABEL_WORDS)


def _warn_uncalibrated(path: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(f"{path}: no pixel size in the file; the layer scale is 1 (pixels). Set it before "
                 "measuring: Plugins → CardioSeg → Pixel size.")


def _layers(path: str) -> list[tuple[Any, str, tuple[float, ...], bool, bool]]:
    """Return ``(data, name, scale, calibrated, labels)`` per channel and scene of ``path``."""
    if (find_format(path).name == "TIFF" and os.path.getsize(path) <= LAZY_BYTES
            and tiff_series_count(path) == 1):
        return [(img.data, img.name, img.scale, img.calibrated, False) for img in read_image(path)]
    out = []
    for img in open_all(path):
        data = img.levels if len(img.levels) > 1 else img.data
        out.append((data, img.name, img.scale, img.calibrated, img.labels))
    return out


def reader_function(path: str | list[str]) -> list[tuple]:
    """Read one or more files into napari layer data tuples."""
    paths = [path] if isinstance(path, str) else path
    layers = []
    for p in paths:
        p = str(p)
        images = _layers(p)
        if not images[0][3]:
            _warn_uncalibrated(p)
        for data, name, scale, calibrated, labels_store in images:
            meta: dict[str, Any] = {"name": name, "scale": scale,
                    "metadata": {CALIBRATED_KEY: calibrated, "source": p}}
            if isinstance(data, list):
                meta["multiscale"] = True
            first = data[0] if isinstance(data, list) else data
            kind = "labels" if labels_store or _looks_like_labels(first, name) else "image"
            layers.append((data, meta, kind))
    return layers


def get_reader(path: str | list[str]) -> Callable | None:
    """Return :func:`reader_function` for files of a registered format, else None.

    Vendor formats are claimed even when their optional reader is not installed, so that
    opening one says which package to install.
    """
    paths = [path] if isinstance(path, str) else path
    if not all(is_readable(p) for p in paths):
        return None
    return reader_function
