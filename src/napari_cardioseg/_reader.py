"""npe2 reader: TIFF / OME-TIFF / ImageJ files and OME-Zarr stores, pixel size as the layer scale.

Files up to :data:`LAZY_BYTES` are read into memory; larger TIFFs open as dask arrays whose
blocks are read when napari shows them. OME-Zarr stores open lazily as multiscale layers.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .core.errors import CardiosegError
from .core.io import read_image
from .core.units import CALIBRATED_KEY
from .core.zarr_io import is_zarr_path

_SUFFIXES = (".tif", ".tiff")
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


def _channels(array: Any, axes: str, path: str) -> tuple[list[Any], str]:
    """Drop singleton non-spatial axes of a (lazy) array and split its channels."""
    keep = tuple(0 if (n == 1 and a not in "YX") else slice(None)
                 for a, n in zip(axes, array.shape, strict=True))
    array = array[keep]
    axes = "".join(a for a, k in zip(axes, keep, strict=True) if k != 0)
    axes = axes.replace("S", "C").replace("Q", "Z").replace("I", "Z")
    if any(a not in "CZYX" for a in axes) or axes.count("Z") > 1 or axes.count("C") > 1:
        raise CardiosegError(f"{path}: cannot open axes {axes!r} as a 2D or 3D image")
    if "C" not in axes:
        return [array], axes
    c = axes.index("C")
    index: list[int | slice] = [slice(None)] * array.ndim
    channels = []
    for i in range(array.shape[c]):
        index[c] = i
        channels.append(array[tuple(index)])
    return channels, axes.replace("C", "")


def _lazy_tiff(path: str) -> list[tuple]:
    """Open a large TIFF as dask arrays (one per channel), read block by block when shown."""
    import dask.array as da
    import tifffile
    import zarr

    from .core.io import tiff_pixel_size

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise CardiosegError(f"{path}: not a readable TIFF ({exc})") from exc
    try:
        if not tif.series:
            raise CardiosegError(f"{path}: the TIFF holds no image")
        axes = tif.series[0].axes
        store = tif.series[0].aszarr(level=0)
    except BaseException:
        tif.close()
        raise
    weakref.finalize(store, tif.close)  # the file stays open as long as the layer's data
    array = da.from_zarr(zarr.open_array(store, mode="r"))
    channels, spatial = _channels(array, axes, path)
    scale, calibrated = tiff_pixel_size(tif, path, spatial)  # the file is still open (store)
    stem = Path(path).name.split(".")[0]
    names = [stem] if len(channels) == 1 else [f"{stem} [ch{i}]" for i in range(len(channels))]
    return [(c, n, scale, calibrated) for c, n in zip(channels, names, strict=True)]


def _ome_zarr(path: str) -> list[tuple]:
    """Open an OME-Zarr store as a multiscale layer (one per channel), every level lazy."""
    import dask.array as da

    from .core.zarr_io import read_ome_zarr

    store = read_ome_zarr(path)
    levels = [_channels(da.from_zarr(level), store.axes, path) for level in store.levels]
    count = len(levels[0][0])
    stem = Path(path.rstrip("/\\")).name.split(".")[0]
    out = []
    for i in range(count):
        data = [channels[i] for channels, _ in levels]
        name = stem if count == 1 else f"{stem} [ch{i}]"
        out.append((data if len(data) > 1 else data[0], name, store.scale, store.calibrated))
    return out


def _is_label_store(path: str) -> bool:
    import zarr

    attrs = zarr.open_group(path, mode="r").attrs
    info = attrs.get("cardioseg")
    return "image-label" in attrs or (isinstance(info, dict) and bool(info.get("labels")))


def reader_function(path: str | list[str]) -> list[tuple]:
    """Read one or more files into napari layer data tuples."""
    paths = [path] if isinstance(path, str) else path
    layers = []
    for p in paths:
        p = str(p)
        labels_store = False
        if is_zarr_path(p):
            images = _ome_zarr(p)
            labels_store = _is_label_store(p)
        elif os.path.getsize(p) > LAZY_BYTES:
            images = _lazy_tiff(p)
        else:
            images = [(img.data, img.name, img.scale, img.calibrated) for img in read_image(p)]
        if not images[0][3]:
            _warn_uncalibrated(p)
        for data, name, scale, calibrated in images:
            meta = {"name": name, "scale": scale,
                    "metadata": {CALIBRATED_KEY: calibrated, "source": p}}
            if isinstance(data, list):
                meta["multiscale"] = True
            first = data[0] if isinstance(data, list) else data
            kind = "labels" if labels_store or _looks_like_labels(first, name) else "image"
            layers.append((data, meta, kind))
    return layers


def get_reader(path: str | list[str]) -> Callable | None:
    """Return :func:`reader_function` for TIFF files and OME-Zarr stores, else None."""
    paths = [path] if isinstance(path, str) else path
    if not all(str(p).lower().endswith(_SUFFIXES) or is_zarr_path(p) for p in paths):
        return None
    return reader_function
