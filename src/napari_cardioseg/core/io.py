"""Read TIFF / OME-TIFF / ImageJ stacks with their pixel size (writing is in :mod:`.writes`).

Pixel sizes are micrometres per axis, ordered like the array axes (``YX`` or ``ZYX``).
:func:`read_image` reads every format of the registry in :mod:`.formats` (TIFF here, the others
through their registry rows); :func:`open_tiff` is the TIFF row's lazy opener.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import warnings
import weakref
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile

from .errors import CardiosegError

if TYPE_CHECKING:
    from .formats import Format, LazyImage, Source

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.int32, np.float32, np.float64)
_UNIT_TO_UM = {
    "m": 1e6, "mm": 1e3, "cm": 1e4, "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0,
    "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3,
    "nanometre": 1e-3, "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6, "inch": 25400.0, "in": 25400.0,
}
_UNCALIBRATED_UNITS = ("", "pixel", "pixels", "px")
PIXEL_SIZE_RANGE = (1e-6, 1e6)  # µm: 1 pm to 1 m; anything outside is a broken calibration
IGNORE_PIXEL_SIZE_ENV = "CARDIOSEG_IGNORE_PIXEL_SIZE"
# tifffile logs (instead of raising) when pages are missing; those files must not be read silently
_TRUNCATION_LOGS = ("invalid page offset", "corrupted", "truncated")


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
    channel : str or None
        The channel's name, when the file names its channels or has several.
    """

    data: np.ndarray
    scale: tuple[float, ...]
    name: str
    calibrated: bool
    channel: str | None = None

    @property
    def axes(self) -> str:
        """``"YX"`` or ``"ZYX"``."""
        return "ZYX"[-self.data.ndim :]


def _unit_factor(unit: str | None) -> float | None:
    """µm per ``unit``; None for an unknown unit."""
    if unit is None:
        return 1.0
    unit = unit.strip().replace("\\u00B5", "µ").lower()
    return 1.0 if unit == "" else _UNIT_TO_UM.get(unit)


def _number(value: object) -> float:
    """``value`` as a float, NaN when it is not a number (refused later with the axis named)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _override_hint() -> str:
    return (f"fix the calibration (Fiji: Image > Properties) or set {IGNORE_PIXEL_SIZE_ENV}=1 "
            "to read the file as uncalibrated")


def _ome_pixel_size(ome_xml: str, series: int = 0) -> dict[str, float]:
    """PhysicalSizeX/Y/Z in µm of image ``series`` in OME-XML (each scene has its own).

    Missing axes are left out, bad ones kept as read.
    """
    root = ET.fromstring(ome_xml)
    images = [el for el in root if el.tag.endswith("Image")]
    where = images[series] if 0 <= series < len(images) else root
    pixels = next((el for el in where.iter() if el.tag.endswith("Pixels")), None)
    sizes: dict[str, float] = {}
    if pixels is None:
        return sizes
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}")
        if value is None:
            continue
        unit = pixels.get(f"PhysicalSize{ax}Unit", "µm")
        factor = _unit_factor(unit)
        if factor is None:
            raise CardiosegError(f"unknown length unit {unit!r} for PhysicalSize{ax}; "
                                 + _override_hint())
        sizes[ax] = _number(value) * factor
    return sizes


def _resolution_unit(page: tifffile.TiffPage) -> str | None:
    """Return the length unit of a page's ``ResolutionUnit`` tag (``pixel`` for a screen's dpi)."""
    tag = page.tags.get("ResolutionUnit")
    code = int(tag.value) if tag is not None else None
    if code == 3:
        return "cm"
    if code == 2 and "XResolution" in page.tags:
        num, den = page.tags["XResolution"].value
        return "pixel" if den and num / den in (72, 96) else "inch"
    return None


def _imagej_pixel_size(tif: tifffile.TiffFile) -> dict[str, float]:
    """Pixel size in µm from the ImageJ description and the resolution tags.

    Without a unit (or with ImageJ's ``pixel``) a resolution of 1 means "uncalibrated"; with a
    length unit every resolution, 1 included, is a pixel size. Zero resolutions or spacings are
    kept (as infinite or zero sizes) so that :func:`read_image` refuses them. A calibrated file
    without ``spacing`` has slices one unit apart, as in Fiji. Without a unit in the description,
    the TIFF ``ResolutionUnit`` tag gives it, as ImageJ reads it (cm, or inch; 72 and 96 dots per
    inch are a screen's default, not a calibration, and read as uncalibrated).
    """
    meta = tif.imagej_metadata or {}
    unit = meta.get("unit")
    if not (isinstance(unit, str) and unit.strip()):
        unit = _resolution_unit(tif.pages.first)
    if isinstance(unit, str) and unit.strip().lower() in _UNCALIBRATED_UNITS[1:]:
        return {}
    factor = _unit_factor(unit if isinstance(unit, str) else None)
    if factor is None:
        raise CardiosegError(f"unknown length unit {unit!r} in the ImageJ header; "
                             + _override_hint())
    has_unit = isinstance(unit, str) and unit.strip() != ""
    page = tif.pages.first
    sizes: dict[str, float] = {}
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in page.tags:
            num, den = page.tags[tag].value
            if (num, den) == (1, 1) and not has_unit:
                continue
            sizes[ax] = (den / num if num else math.inf) * factor
    if "spacing" in meta:
        sizes["Z"] = _number(meta["spacing"]) * factor
    elif sizes and has_unit:
        # ImageJ writes ``spacing`` only when the voxel depth is not 1 and reads a missing one as
        # 1 (in the file's unit): so does this reader, giving the depth Fiji shows
        sizes["Z"] = 1.0 * factor
    return sizes


def _check_sizes(path: Path, sizes: dict[str, float], axes: str) -> dict[str, float]:
    """Refuse non-finite, non-positive or implausible pixel sizes of the axes in ``axes``."""
    low, high = PIXEL_SIZE_RANGE
    for ax in axes:
        value = sizes.get(ax)
        if value is None or (math.isfinite(value) and low <= value <= high):
            continue
        if os.environ.get(IGNORE_PIXEL_SIZE_ENV, "") not in ("", "0"):
            warnings.warn(f"{path}: ignoring its pixel size ({ax} = {value:g} µm) because "
                          f"{IGNORE_PIXEL_SIZE_ENV} is set; the image is read as uncalibrated",
                          stacklevel=3)
            return {}
        raise CardiosegError(
            f"{path}: pixel size {ax} = {value:g} µm is not a plausible size (must be a finite "
            f"number in {low:g}..{high:g} µm); " + _override_hint()
        )
    if "Z" in axes and sizes.get("Z") is None and ("X" in sizes or "Y" in sizes):
        in_plane = sizes.get("X", sizes.get("Y"))
        warnings.warn(f"{path}: the file gives the pixel size but no slice spacing; slices are "
                      f"taken as {in_plane:g} µm apart (the in-plane size), so volumes assume "
                      "cubic voxels. Set the Z size in Plugins > CardioSeg > Pixel size, or "
                      "with --pixel-size Z Y X when measuring", UserWarning, stacklevel=3)
    return sizes


def _ome_channel_names(ome_xml: str, series: int) -> list[str] | None:
    """Channel names of image ``series`` in OME-XML; None when unnamed or unreadable."""
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    images = [el for el in root if el.tag.endswith("Image")]
    if not 0 <= series < len(images):
        return None
    names = [el.get("Name", "") for el in images[series].iter() if el.tag.endswith("Channel")]
    return names if names and all(names) else None


def _tiff_channel_names(tif: tifffile.TiffFile, series: int) -> list[str] | None:
    if tif.is_ome and tif.ome_metadata:
        return _ome_channel_names(tif.ome_metadata, series)
    return None


def _tiff_sizes(tif: tifffile.TiffFile, series: int = 0) -> dict[str, float]:
    """Pixel sizes (µm) by axis of image ``series`` from OME or ImageJ metadata; empty without."""
    if tif.is_ome and tif.ome_metadata:
        return _ome_pixel_size(tif.ome_metadata, series)
    if tif.is_imagej:
        return _imagej_pixel_size(tif)
    return {}


def _scale(path: Path, sizes: dict[str, float], spatial: str) -> tuple[tuple[float, ...], bool]:
    """Check ``sizes`` and return the pixel size per axis of ``spatial`` and ``calibrated``."""
    sizes = _check_sizes(path, sizes, "XY" if len(spatial) == 2 else "XYZ")
    x = sizes.get("X", sizes.get("Y", 1.0))
    named = {"Z": sizes.get("Z", x), "Y": sizes.get("Y", x), "X": x}
    return tuple(float(named[a]) for a in spatial), "X" in sizes or "Y" in sizes


class _TruncationLog(logging.Handler):
    """Collect tifffile's log messages about missing pages from the current thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.thread == self.thread and any(w in message.lower() for w in _TRUNCATION_LOGS):
            self.messages.append(message.splitlines()[0])


def _plane_count(series: tifffile.TiffPageSeries) -> int:
    return math.prod(n for n, ax in zip(series.shape, series.axes, strict=True) if ax not in "YXS")


def _describe(series: tifffile.TiffPageSeries) -> str:
    shape = "x".join(str(n) for n in series.shape)
    return f"{shape} {series.dtype} ({series.axes})"


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


def read_image(path: str | os.PathLike, series: int | None = None, *,
               channel: int | str | None = None,
               scene: int | str | None = None) -> list[ImageData]:
    """Read an image file (any format of :mod:`.formats`) into one :class:`ImageData` per channel.

    TIFF, OME-TIFF and ImageJ hyperstacks are read here with tifffile; OME-Zarr, CZI, ND2 and
    LIF through their registry rows (the vendor formats need ``napari-cardioseg[formats]``).

    Parameters
    ----------
    path : path-like
        File (or OME-Zarr store) to read.
    series : int, optional
        Same as ``scene`` (the TIFF word for it).
    channel : int or str, optional
        Read only this channel (index or name); default every channel.
    scene : int or str, optional
        Which scene (image series) of a multi-scene file; a file holding several is refused
        when it is not given (the first one is never taken silently).

    Returns
    -------
    list of ImageData
        One entry per channel (one with ``channel``); ``scale`` comes from the file's metadata
        (OME ``PhysicalSize*``, ImageJ resolution/spacing, NGFF scale, vendor metadata), else
        ones with ``calibrated=False``.

    Raises
    ------
    CardiosegError
        Missing, empty, truncated, corrupt or unreadable files, several scenes without
        ``scene``, a channel or scene out of range, a missing optional reader package,
        implausible pixel sizes, unsupported axes or dtypes.
    """
    from .formats import find_format, open_channels, pick_channel

    if scene is None:
        scene = series
    if find_format(path).name != "TIFF":
        lazy = open_channels(path, scene=scene)
        if channel is not None:
            names = [img.channel or str(i) for i, img in enumerate(lazy)]
            lazy = [lazy[pick_channel(path, names, channel)]]
        out = []
        for img in lazy:
            data = _checked_dtype(Path(path), np.asarray(img.data))
            out.append(ImageData(data, img.scale, img.name, img.calibrated, img.channel))
        return out
    images = _read_tiff(Path(path), _series_index(path, scene))
    if channel is not None:
        names = [img.channel or str(i) for i, img in enumerate(images)]
        images = [images[pick_channel(path, names, channel)]]
    return images


def _series_index(path: str | os.PathLike, scene: int | str | None) -> int | None:
    """Return a TIFF series given as an index or as its number in text (``"1"``)."""
    if scene is None or isinstance(scene, int):
        return scene
    try:
        return int(scene)
    except ValueError:
        raise CardiosegError(f"{path}: a TIFF's scenes (series) are chosen by number, not "
                             f"{scene!r}") from None


def _checked_dtype(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise CardiosegError(f"{path}: unsupported pixel type {array.dtype}")
    return array


def _read_tiff(path: Path, series: int | None) -> list[ImageData]:
    """:func:`read_image` for TIFF files: the whole series in memory, truncation checked."""
    if not path.is_file():
        raise CardiosegError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CardiosegError(f"{path}: the file is empty")
    log = _TruncationLog()
    tiff_log = logging.getLogger("tifffile")
    tiff_log.addHandler(log)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise CardiosegError(f"{path}: the TIFF holds no image")
            if series is None and len(tif.series) > 1:
                listing = "; ".join(f"series {i}: {_describe(s)}" for i, s in enumerate(tif.series))
                raise CardiosegError(
                    f"{path}: the file holds {len(tif.series)} image series ({listing}); choose "
                    "one with --scene N (or save the one to segment as its own file)"
                )
            if series is not None and not 0 <= series < len(tif.series):
                raise CardiosegError(f"{path}: no series {series} (the file has {len(tif.series)})")
            chosen = tif.series[series or 0]
            announced = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
            if isinstance(announced, int) and announced > _plane_count(chosen):
                raise CardiosegError(
                    f"{path}: the ImageJ header announces {announced} images but the file holds "
                    f"{_plane_count(chosen)}; the file is truncated or corrupt"
                )
            array = chosen.asarray()
            axes = chosen.axes
            sizes = _tiff_sizes(tif, series or 0)
            channel_names = _tiff_channel_names(tif, series or 0)
    except CardiosegError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise CardiosegError(f"{path}: {exc}") from exc
    except (tifffile.TiffFileError, ValueError, OSError, ET.ParseError, RuntimeError, zlib.error,
            struct.error, KeyError, IndexError, TypeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CardiosegError(f"{path}: not a readable TIFF ({detail})") from exc
    finally:
        tiff_log.removeHandler(log)
    if log.messages:
        raise CardiosegError(f"{path}: the file is truncated or corrupt ({log.messages[0]})")
    array = _checked_dtype(path, array)
    try:
        channels, spatial = _split_axes(array, axes)
    except CardiosegError as exc:
        raise CardiosegError(f"{path}: {exc}") from exc
    if len(spatial) not in (2, 3):
        raise CardiosegError(f"{path}: expected a 2D or 3D image, found axes {spatial!r}")
    scale, calibrated = _scale(path, sizes, "ZYX" if len(spatial) == 3 else "YX")
    stem = path.name.split(".")[0]
    given: list[str | None] = list(channel_names or [])
    if len(given) != len(channels):
        given = [f"ch{i}" for i in range(len(channels))] if len(channels) > 1 else [None]
    names = [stem] if len(channels) == 1 else [f"{stem} [{n}]" for n in given]
    return [ImageData(c, scale, n, calibrated, cn)
            for c, n, cn in zip(channels, names, given, strict=True)]


def read_single(path: str | os.PathLike, what: str = "image", *,
                channel: int | str | None = None, scene: int | str | None = None,
                only_if_several: bool = False) -> ImageData:
    """Read one channel of one scene (images for models, labels, masks).

    Parameters
    ----------
    path : path-like
        Any format of :mod:`.formats`.
    what : str
        What the file is, for messages (``"image"``, ``"labels"``, ...).
    channel, scene : int or str, optional
        Index or name; required when the file has several channels / scenes.
    only_if_several : bool
        Apply ``channel`` / ``scene`` only to a file that has several (a one-channel label image
        read beside a multichannel intensity image ignores them).

    Raises
    ------
    CardiosegError
        Several channels (or scenes) and none chosen (the message lists their names), a channel
        or scene out of range, and every error of :func:`read_image`.
    """
    try:
        return _read_single(path, channel, scene, only_if_several)
    except CardiosegError as exc:
        if what == "image" or ("channel" not in str(exc) and "scene" not in str(exc)):
            raise
        raise CardiosegError(f"{exc} (reading the {what})") from exc


def _read_single(path: str | os.PathLike, channel: int | str | None, scene: int | str | None,
                 only_if_several: bool) -> ImageData:
    from .formats import find_format, pick_channel

    if find_format(path).name == "TIFF":
        if only_if_several:
            scene = scene if tiff_series_count(path) > 1 else None
        images = read_image(path, scene=scene)
        if only_if_several and len(images) == 1:
            channel = None
        names = [img.channel or str(i) for i, img in enumerate(images)]
        return images[pick_channel(path, names, channel)]
    img = open_single(path, channel=channel, scene=scene, only_if_several=only_if_several)
    data = _checked_dtype(Path(path), np.asarray(img.data))
    return ImageData(data, img.scale, img.name, img.calibrated, img.channel)


def open_single(path: str | os.PathLike, *, channel: int | str | None = None,
                scene: int | str | None = None, only_if_several: bool = False) -> LazyImage:
    """Open one channel of one scene lazily, choosing as :func:`read_single` does.

    ``only_if_several`` applies ``channel`` / ``scene`` only to a file that has several.
    """
    from .formats import open_channels, open_file, pick_channel

    if only_if_several:
        _, handle = open_file(path)
        scene = scene if len(handle.scenes) > 1 else None
    lazy = open_channels(path, scene=scene)
    if only_if_several and len(lazy) == 1:
        channel = None
    names = [img.channel or str(i) for i, img in enumerate(lazy)]
    return lazy[pick_channel(path, names, channel)]


def tiff_series_count(path: str | os.PathLike) -> int:
    """Count the image series of a TIFF (1 when it cannot be read: the reader reports that)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.series)
    except (tifffile.TiffFileError, ValueError, OSError):
        return 1


class _CloseWhenUnused:
    """Close a file once its handle and every store made from it are garbage."""

    def __init__(self, tif: tifffile.TiffFile) -> None:
        self.tif = tif
        self.users = 0

    def add(self, owner: object) -> None:
        self.users += 1
        weakref.finalize(owner, self.release)

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self.tif.close()


@dataclass
class TiffHandle:
    """A TIFF opened for lazy reading (the TIFF row's :class:`formats.FileHandle`)."""

    path: Path
    tif: tifffile.TiffFile
    closer: _CloseWhenUnused

    @property
    def scenes(self) -> list[str]:
        """``series 0``, ``series 1``, ..."""
        return [f"series {i}" for i in range(len(self.tif.series))]

    def scene(self, index: int) -> Source:
        """Series ``index`` as a zarr array (read block by block) with the file's pixel sizes."""
        import zarr

        from .formats import Source

        series = self.tif.series[index]
        store = series.aszarr(level=0)
        self.closer.add(store)
        array = zarr.open_array(store, mode="r")
        return Source([array], series.axes, _tiff_sizes(self.tif, index),
                      _tiff_channel_names(self.tif, index))


def open_tiff(path: Path, fmt: Format | None = None) -> TiffHandle:
    """Open a TIFF lazily; the file stays open while the handle or any array read from it lives.

    Raises
    ------
    CardiosegError
        Not a readable TIFF, or one that holds no image.
    """
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError) as exc:
        raise CardiosegError(f"{path}: not a readable TIFF ({exc})") from exc
    if not tif.series:
        tif.close()
        raise CardiosegError(f"{path}: the TIFF holds no image")
    try:
        _tiff_sizes(tif)  # an unknown unit fails here, not when a layer is drawn
    except (CardiosegError, ET.ParseError) as exc:
        tif.close()
        raise CardiosegError(f"{path}: {exc}") from exc
    handle = TiffHandle(path, tif, _CloseWhenUnused(tif))
    handle.closer.add(handle)
    return handle
