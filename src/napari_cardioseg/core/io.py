"""Read and write TIFF / OME-TIFF / ImageJ stacks with their pixel size; atomic writes.

Pixel sizes are micrometres per axis, ordered like the array axes (``YX`` or ``ZYX``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .errors import CardiosegError

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int32, np.float32, np.float64)
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_UNIT_TO_UM = {
    "m": 1e6, "mm": 1e3, "cm": 1e4, "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0,
    "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3,
    "nanometre": 1e-3, "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6,
}


@dataclass
class ImageData:
    """One spatial image read from a file.

    Attributes
    ----------
    data : numpy.ndarray
        ``YX`` or ``ZYX`` array.
    scale : tuple of float
        Pixel size in µm per axis of ``data``.
    name : str
        Layer name (file stem, plus the channel index for multichannel files).
    calibrated : bool
        False when the file carried no pixel size and ``scale`` is all ones.
    """

    data: np.ndarray
    scale: tuple[float, ...]
    name: str
    calibrated: bool

    @property
    def axes(self) -> str:
        """``"YX"`` or ``"ZYX"``."""
        return "ZYX"[-self.data.ndim :]


def _unit_factor(unit: str | None) -> float | None:
    if unit is None or unit == "":
        return 1.0
    unit = unit.strip().replace("\\u00B5", "µ").lower()
    return _UNIT_TO_UM.get(unit)


def _ome_pixel_size(ome_xml: str) -> dict[str, float]:
    """PhysicalSizeX/Y/Z in µm from OME-XML (missing axes are left out)."""
    root = ET.fromstring(ome_xml)
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    sizes: dict[str, float] = {}
    if pixels is None:
        return sizes
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}")
        if value is None:
            continue
        factor = _unit_factor(pixels.get(f"PhysicalSize{ax}Unit", "µm"))
        if factor is not None and float(value) > 0:
            sizes[ax] = float(value) * factor
    return sizes


def _imagej_pixel_size(tif: tifffile.TiffFile) -> dict[str, float]:
    """Pixel size in µm from the ImageJ description and the resolution tags."""
    meta = tif.imagej_metadata or {}
    factor = _unit_factor(meta.get("unit"))
    if factor is None:
        return {}
    page = tif.pages.first
    sizes: dict[str, float] = {}
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in page.tags:
            num, den = page.tags[tag].value
            if num > 0 and den > 0 and (num, den) != (1, 1):
                sizes[ax] = den / num * factor
    if "spacing" in meta and float(meta["spacing"]) > 0:
        sizes["Z"] = float(meta["spacing"]) * factor
    return sizes


def _split_axes(array: np.ndarray, axes: str) -> tuple[list[np.ndarray], str]:
    """Drop singleton axes, split channels, and return spatial arrays plus their axes."""
    keep = [i for i, ax in enumerate(axes) if array.shape[i] > 1 or ax in "YX"]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    axes = axes.replace("S", "C") if "C" not in axes else axes
    for ax in axes:
        if ax not in "CZYXQI":
            raise CardiosegError(
                f"axis {ax!r} (size {array.shape[axes.index(ax)]}) is not supported; "
                "save a single time point / a 2D or 3D stack"
            )
    axes = axes.replace("Q", "Z").replace("I", "Z")
    if axes.count("Z") > 1:
        raise CardiosegError(f"cannot interpret file axes {axes!r} as a 2D or 3D stack")
    if "C" in axes:
        c = axes.index("C")
        channels = [np.take(array, i, axis=c) for i in range(array.shape[c])]
        return channels, axes.replace("C", "")
    return [array], axes


def read_image(path: str | os.PathLike) -> list[ImageData]:
    """Read a TIFF, OME-TIFF or ImageJ hyperstack into one :class:`ImageData` per channel.

    Parameters
    ----------
    path : path-like
        File to read.

    Returns
    -------
    list of ImageData
        One entry per channel; ``scale`` comes from OME ``PhysicalSize*`` or the ImageJ
        resolution/spacing, else ones with ``calibrated=False``.

    Raises
    ------
    CardiosegError
        Missing, empty or unreadable files, unsupported axes or dtypes.
    """
    path = Path(path)
    if not path.is_file():
        raise CardiosegError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CardiosegError(f"{path}: the file is empty")
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise CardiosegError(f"{path}: the TIFF holds no image")
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
            if tif.is_ome and tif.ome_metadata:
                sizes = _ome_pixel_size(tif.ome_metadata)
            elif tif.is_imagej:
                sizes = _imagej_pixel_size(tif)
            else:
                sizes = {}
    except CardiosegError:
        raise
    except (tifffile.TiffFileError, ValueError, OSError, ET.ParseError) as exc:
        raise CardiosegError(f"{path}: not a readable TIFF ({exc})") from exc
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise CardiosegError(f"{path}: unsupported pixel type {array.dtype}")
    channels, spatial = _split_axes(array, axes)
    if len(spatial) not in (2, 3):
        raise CardiosegError(f"{path}: expected a 2D or 3D image, found axes {spatial!r}")
    calibrated = "X" in sizes or "Y" in sizes
    x = sizes.get("X", sizes.get("Y", 1.0))
    y = sizes.get("Y", x)
    scale = (sizes.get("Z", x), y, x) if len(spatial) == 3 else (y, x)
    stem = path.name.split(".")[0]
    names = [stem] if len(channels) == 1 else [f"{stem} [ch{i}]" for i in range(len(channels))]
    return [ImageData(c, tuple(float(s) for s in scale), n, calibrated)
            for c, n in zip(channels, names, strict=True)]


def read_single(path: str | os.PathLike, what: str = "image") -> ImageData:
    """Read a file that must hold exactly one channel (images for models, labels, masks)."""
    images = read_image(path)
    if len(images) != 1:
        raise CardiosegError(
            f"{path}: the {what} has {len(images)} channels; save one channel (greyscale)"
        )
    return images[0]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it over ``path`` only on success.

    A failure (disk full, permission denied, an exception in the body) leaves any existing
    file at ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise CardiosegError(f"{path}: the folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; use normal permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        raise CardiosegError(f"could not write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def write_tiff(
    path: str | os.PathLike,
    data: np.ndarray,
    scale: Sequence[float] | None = None,
) -> Path:
    """Write a ``YX`` or ``ZYX`` array to a calibrated TIFF, atomically.

    uint8, uint16 and float32 go to an ImageJ hyperstack (Fiji reads the calibration);
    other dtypes (int32, float64, ...) go to OME-TIFF, which keeps them exactly. Both carry
    the pixel size, which :func:`read_image` reads back, and are zlib (deflate) compressed.

    Parameters
    ----------
    path : path-like
        Destination ``.tif``/``.tiff``.
    data : numpy.ndarray
        2D or 3D array.
    scale : sequence of float, optional
        Pixel size in µm per axis; ones when omitted.
    """
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise CardiosegError(f"can only write 2D or 3D arrays, got shape {data.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype == np.int64:
        if data.size and (data.min() < np.iinfo(np.int32).min or data.max() > np.iinfo(np.int32).max):
            raise CardiosegError("label values exceed the int32 range and cannot be saved")
        data = data.astype(np.int32)
    scale = tuple(float(s) for s in (scale if scale is not None else (1.0,) * data.ndim))
    if len(scale) != data.ndim:
        raise CardiosegError(f"scale {scale} does not match a {data.ndim}D array")
    if any(not np.isfinite(s) or s <= 0 for s in scale):
        raise CardiosegError(f"pixel sizes must be positive numbers, got {scale}")
    axes = "ZYX"[-data.ndim :]
    y, x = scale[-2], scale[-1]
    with atomic_path(path) as tmp:
        if data.dtype.type in _IMAGEJ_DTYPES:
            metadata = {"axes": axes, "unit": "um"}
            if data.ndim == 3:
                metadata["spacing"] = scale[0]
            tifffile.imwrite(tmp, data, imagej=True, resolution=(1.0 / x, 1.0 / y),
                             metadata=metadata, compression="zlib")
        else:
            metadata = {
                "axes": axes,
                "PhysicalSizeX": x, "PhysicalSizeXUnit": "µm",
                "PhysicalSizeY": y, "PhysicalSizeYUnit": "µm",
            }
            if data.ndim == 3:
                metadata.update(PhysicalSizeZ=scale[0], PhysicalSizeZUnit="µm")
            tifffile.imwrite(tmp, data, ome=True, metadata=metadata, compression="zlib")
    return Path(path)
