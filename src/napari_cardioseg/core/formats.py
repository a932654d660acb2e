"""File formats: one registry row per format, and the one place where any input is opened lazily.

Every reader of the package (:func:`io.read_image`, the streaming input of ``cardioseg predict``,
the batch runs and the napari reader) finds a file's format here by its suffix (:func:`find_format`)
and opens it through the row's opener. A row names the format, its suffixes, the opener (imported
only when a file of that format is opened) and, for vendor formats, the optional pip package that
reads them (installed with ``pip install 'napari-cardioseg[formats]'``).

An opener returns a :class:`FileHandle`: the file's scenes (image series) and, for one scene, a
:class:`Source` with lazy arrays (every channel, every resolution level), their axes and the pixel
sizes the file states. :func:`open_image` then picks a channel and gives a :class:`LazyImage`:
a ``YX`` or ``ZYX`` dask array and its pixel size in µm per axis, ``None`` where the file has none
(a calibration is never invented).

To add a format: write ``open_NAME(path, fmt) -> FileHandle`` (in its own module, or
:func:`open_bioio` when a bioio plugin reads it) and add one :class:`Format` row to
:data:`FORMATS`; ``napari.yaml``'s reader patterns must list the new suffixes (a test checks).
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .errors import CardiosegError

FORMATS_EXTRA = "pip install 'napari-cardioseg[formats]'"

Selection = int | str | None


@dataclass(frozen=True)
class Format:
    """One file format that the package reads.

    Attributes
    ----------
    name : str
        Shown in messages, e.g. ``"CZI"``.
    suffixes : tuple of str
        Lower-case file name endings, e.g. ``(".czi",)``.
    opener : str
        ``"module:function"`` (module relative to this package's ``core``) taking
        ``(path, format)`` and returning a :class:`FileHandle`; imported on first use.
    package : str or None
        The pip package that reads the format when it is not a dependency of the package.
    module : str or None
        The import name of ``package`` (checked before opening, for a clear error).
    folder : bool
        Files of this format are folders (OME-Zarr stores).
    """

    name: str
    suffixes: tuple[str, ...]
    opener: str
    package: str | None = None
    module: str | None = None
    folder: bool = False


FORMATS: tuple[Format, ...] = (
    Format("TIFF", (".tif", ".tiff", ".ome.tif", ".ome.tiff"), ".io:open_tiff"),
    Format("OME-Zarr", (".zarr", ".ome.zarr"), ".zarr_io:open_zarr", folder=True),
    Format("CZI", (".czi",), ".formats:open_bioio", "bioio-czi", "bioio_czi"),
    Format("ND2", (".nd2",), ".formats:open_bioio", "bioio-nd2", "bioio_nd2"),
    Format("LIF", (".lif",), ".formats:open_bioio", "bioio-lif", "bioio_lif"),
)


def suffixes(folders: bool = True) -> tuple[str, ...]:
    """Every suffix the registry reads (without folder formats when ``folders`` is False)."""
    return tuple(s for f in FORMATS if folders or not f.folder for s in f.suffixes)


def _match(path: str | os.PathLike) -> tuple[Format, str] | None:
    name = str(path).rstrip("/\\").lower()
    best: tuple[Format, str] | None = None
    for fmt in FORMATS:
        for suffix in fmt.suffixes:
            if name.endswith(suffix) and (best is None or len(suffix) > len(best[1])):
                best = (fmt, suffix)
    return best


def is_readable(path: str | os.PathLike) -> bool:
    """Tell whether ``path``'s suffix belongs to a registered format (installed or not)."""
    return _match(path) is not None


def find_format(path: str | os.PathLike) -> Format:
    """Return the registry row of ``path``'s suffix.

    Raises
    ------
    CardiosegError
        An unknown suffix; the message lists the formats and their suffixes.
    """
    found = _match(path)
    if found is None:
        known = "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in FORMATS)
        raise CardiosegError(f"{path}: unknown file format; readable formats: {known}")
    return found[0]


def require(fmt: Format, path: str | os.PathLike = "") -> Any:
    """Import the optional package ``fmt`` needs (None for built-in formats).

    Raises
    ------
    CardiosegError
        The package is not installed; the message names it and the extra that installs it.
    """
    if fmt.module is None:
        return None
    try:
        return importlib.import_module(fmt.module)
    except ImportError as exc:
        found = _match(path) if path else None
        suffix = found[1] if found else fmt.suffixes[0]
        raise CardiosegError(f"reading {suffix} ({fmt.name}) needs {fmt.package}: {FORMATS_EXTRA}"
                             ) from exc


# ---- what an opener returns ---------------------------------------------------------------


@dataclass
class Source:
    """One scene of a file, opened lazily: every channel and every resolution level.

    Attributes
    ----------
    levels : list
        Lazy (dask) arrays, full resolution first, each with the axes ``axes``.
    axes : str
        Upper-case axis letters of the arrays, from ``TCSZYX`` (``S``: RGB samples).
    sizes : dict of str to float
        Pixel size in µm of the spatial axes the file states (``"X"``, ``"Y"``, ``"Z"``); an axis
        without one is left out. Checked for plausibility when a channel is picked.
    channel_names : list of str or None
        One name per entry of the ``C`` axis, when the file names its channels.
    labels : bool
        The file says it holds labels (an OME-Zarr ``image-label``).
    complete : bool or None
        For stores written block by block: whether the run that wrote it finished.
    """

    levels: list[Any]
    axes: str
    sizes: dict[str, float] = field(default_factory=dict)
    channel_names: list[str] | None = None
    labels: bool = False
    complete: bool | None = None


class FileHandle(Protocol):
    """An opened file: its scene names, and each scene as a :class:`Source`."""

    @property
    def scenes(self) -> list[str]:
        """One name per scene (image series), at least one."""
        ...

    def scene(self, index: int) -> Source:
        """Open scene ``index`` (0-based, in range) lazily."""
        ...


@dataclass
class OneScene:
    """A :class:`FileHandle` for files that hold a single image."""

    source: Source
    name: str = "0"

    @property
    def scenes(self) -> list[str]:
        """The one scene."""
        return [self.name]

    def scene(self, index: int) -> Source:
        """Return the source (``index`` is 0)."""
        return self.source


@dataclass
class LazyImage:
    """One channel of one scene, lazily: a ``YX`` or ``ZYX`` array and its pixel size.

    Attributes
    ----------
    data : dask.array.Array
        The full-resolution array.
    pixel_size : tuple of (float or None)
        µm per axis of ``data``; None for an axis whose size the file does not state.
    name : str
        Layer name: the file stem, plus scene and channel when the file has several.
    channel : str or None
        The channel's name (None when the file has one unnamed channel).
    scene : str or None
        The scene's name (None when the file has one scene).
    levels : list
        Every resolution level of this channel, ``data`` first.
    labels : bool
        The file says it holds labels.
    complete : bool or None
        See :attr:`Source.complete`.
    """

    data: Any
    pixel_size: tuple[float | None, ...]
    name: str
    channel: str | None = None
    scene: str | None = None
    levels: list[Any] = field(default_factory=list)
    labels: bool = False
    complete: bool | None = None

    @property
    def axes(self) -> str:
        """``"YX"`` or ``"ZYX"``."""
        return "ZYX"[-self.data.ndim:]

    @property
    def calibrated(self) -> bool:
        """True when the file states an in-plane pixel size."""
        return any(s is not None for s in self.pixel_size[-2:])

    @property
    def scale(self) -> tuple[float, ...]:
        """Pixel size for display: unstated axes take the in-plane size, all ones uncalibrated.

        The same rule as :func:`io.read_image`; use :attr:`pixel_size` to know what the file states.
        """
        return display_scale(dict(zip(self.axes, self.pixel_size, strict=True)), self.axes)


def display_scale(sizes: dict[str, float | None], spatial: str) -> tuple[float, ...]:
    """µm per axis of ``spatial`` from stated ``sizes``: missing axes take X (or Y), else 1."""
    x = sizes.get("X") or sizes.get("Y") or 1.0
    named = {"Z": sizes.get("Z") or x, "Y": sizes.get("Y") or x, "X": x}
    return tuple(float(named[a]) for a in spatial)


# ---- choosing a scene and a channel -------------------------------------------------------


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i} {n!r}" for i, n in enumerate(names))


def _pick(path: str | os.PathLike, names: Sequence[str], wanted: Selection, what: str,
          flag: str) -> int:
    """Index of ``wanted`` (an index, a name, or an index as text) among ``names``."""
    count = len(names)
    if wanted is None:
        if count == 1:
            return 0
        raise CardiosegError(f"{path}: the file has {count} {what}s ({_listing(names)}); choose "
                             f"one with {flag} (index or name)")
    if isinstance(wanted, str):
        if wanted in names:
            return list(names).index(wanted)
        try:
            index = int(wanted)
        except ValueError:
            raise CardiosegError(f"{path}: no {what} named {wanted!r}; the file has {count} "
                                 f"{what}{'s' if count != 1 else ''}: {_listing(names)}") from None
    else:
        index = int(wanted)
    if not 0 <= index < count:
        raise CardiosegError(f"{path}: no {what} {index}; the file has {count} "
                             f"{what}{'s' if count != 1 else ''}: {_listing(names)}")
    return index


def pick_scene(path: str | os.PathLike, names: Sequence[str], scene: Selection) -> int:
    """Index of the scene ``scene`` (index or name) in ``names``; None is allowed for one scene.

    Raises
    ------
    CardiosegError
        Several scenes and none chosen (the message lists them), or no such scene.
    """
    return _pick(path, names, scene, "scene", "--scene")


def pick_channel(path: str | os.PathLike, names: Sequence[str], channel: Selection) -> int:
    """Index of the channel ``channel`` (index or name) in ``names``; None is allowed for one.

    Raises
    ------
    CardiosegError
        Several channels and none chosen (the message lists their names), or no such channel.
    """
    return _pick(path, names, channel, "channel", "--channel")


def _stem(path: str | os.PathLike) -> str:
    return Path(str(path).rstrip("/\\")).name.split(".")[0]


def _normalise(path: str | os.PathLike, source: Source) -> tuple[list[Any], str]:
    """Drop singleton non-spatial axes; RGB samples become channels; refuse other axes."""
    axes = source.axes.upper().replace("Q", "Z").replace("I", "Z")
    shape = source.levels[0].shape
    if len(axes) != len(shape):
        raise CardiosegError(f"{path}: axes {source.axes!r} do not fit the shape {tuple(shape)}")
    keep = [a in "YX" or n > 1 for a, n in zip(axes, shape, strict=True)]
    kept = "".join(a for a, k in zip(axes, keep, strict=True) if k)
    index = tuple(slice(None) if k else 0 for k in keep)
    levels = [level[index] for level in source.levels]
    if "S" in kept:
        if "C" in kept:
            raise CardiosegError(f"{path}: RGB images with several channels are not supported; "
                                 "save one channel")
        kept = kept.replace("S", "C")
    for ax in kept:
        if ax == "T":
            raise CardiosegError(f"{path}: axis 'T' (time, {shape[axes.index('T')]} points) is not "
                                 "supported; save a single time point")
        if ax not in "CZYX":
            raise CardiosegError(f"{path}: axis {ax!r} is not supported; save a 2D or 3D stack")
    if kept.count("Z") > 1 or kept.count("C") > 1:
        raise CardiosegError(f"{path}: cannot read axes {source.axes!r} as a 2D or 3D stack")
    if "C" in kept and kept.index("C") != 0:  # channels first (RGB samples come last)
        order = [kept.index("C"), *(i for i, a in enumerate(kept) if a != "C")]
        levels = [level.transpose(order) for level in levels]
        kept = "C" + kept.replace("C", "")
    if not kept.endswith("YX"):
        raise CardiosegError(f"{path}: cannot read axes {source.axes!r} as a 2D or 3D stack")
    return levels, kept


def _lazy(array: Any) -> Any:
    """``array`` as a dask array (zarr arrays keep their chunks)."""
    import dask.array as da
    import zarr

    if isinstance(array, da.Array):
        return array
    if isinstance(array, zarr.Array):
        return da.from_zarr(array)
    return da.asarray(array)


def _channels_of(path: str | os.PathLike, source: Source, scene_name: str | None
                 ) -> list[LazyImage]:
    """Every channel of ``source`` as a :class:`LazyImage` (pixel sizes checked)."""
    from .io import _check_sizes

    source.levels = [_lazy(level) for level in source.levels]
    levels, axes = _normalise(path, source)
    spatial = axes.replace("C", "")
    sizes = _check_sizes(Path(path), source.sizes, "XY" if len(spatial) == 2 else "XYZ")
    pixel_size = tuple(sizes.get(a) for a in spatial)
    count = levels[0].shape[0] if "C" in axes else 1
    names = _channel_names(source.channel_names, count)
    stem = _stem(path)
    if scene_name is not None:
        stem = f"{stem} [{scene_name}]"
    out = []
    for c in range(count):
        per_level = [level[c] if "C" in axes else level for level in levels]
        name = stem if count == 1 else f"{stem} [{names[c]}]"
        channel = names[c] if (count > 1 or source.channel_names) else None
        out.append(LazyImage(per_level[0], pixel_size, name, channel, scene_name, per_level,
                             source.labels, source.complete))
    return out


def _channel_names(given: Sequence[str] | None, count: int) -> list[str]:
    """Return the file's channel names, else ``ch0``, ``ch1``, ... (also when they are not unique)."""
    names = [str(n) for n in given] if given else []
    if len(names) != count or len(set(names)) != count or any(not n for n in names):
        names = [f"ch{i}" for i in range(count)]
    return names


# ---- the entry points ---------------------------------------------------------------------


def open_file(path: str | os.PathLike) -> tuple[Format, FileHandle]:
    """Find ``path``'s format, check that it exists and its reader is installed, and open it."""
    fmt = find_format(path)
    p = Path(path)
    if fmt.folder:
        if not p.is_dir():
            raise CardiosegError(f"{p}: no such {fmt.name} store")
    else:
        if not p.is_file():
            raise CardiosegError(f"{p}: no such file")
        if p.stat().st_size == 0:
            raise CardiosegError(f"{p}: the file is empty")
    require(fmt, p)
    module, _, function = fmt.opener.partition(":")
    opener: Callable[[Path, Format], FileHandle] = getattr(
        importlib.import_module(module, __package__), function)
    return fmt, opener(p, fmt)


def open_image(path: str | os.PathLike, *, channel: Selection = None,
               scene: Selection = None) -> LazyImage:
    """Open one channel of one scene of any registered format lazily.

    Parameters
    ----------
    path : path-like
        File (or OME-Zarr store).
    channel, scene : int or str, optional
        Index or name; may be omitted only when the file has one channel / one scene.

    Returns
    -------
    LazyImage
        ``YX`` or ``ZYX`` dask array and its pixel size (None per axis the file does not state).

    Raises
    ------
    CardiosegError
        Unknown suffix, missing file, missing optional reader package, several channels or
        scenes and none chosen, a channel or scene out of range, unsupported axes or pixel sizes.
    """
    images = open_channels(path, scene=scene)
    names = [img.channel or str(i) for i, img in enumerate(images)]
    return images[pick_channel(path, names, channel)]


def open_channels(path: str | os.PathLike, *, scene: Selection = None) -> list[LazyImage]:
    """Every channel of one scene (``scene`` may be omitted for files with one scene)."""
    _, handle = open_file(path)
    names = list(handle.scenes)
    index = pick_scene(path, names, scene)
    return _channels_of(path, handle.scene(index), names[index] if len(names) > 1 else None)


def open_all(path: str | os.PathLike) -> list[LazyImage]:
    """Every channel of every scene, lazily (what the napari reader shows)."""
    _, handle = open_file(path)
    names = list(handle.scenes)
    out: list[LazyImage] = []
    for index, name in enumerate(names):
        out.extend(_channels_of(path, handle.scene(index), name if len(names) > 1 else None))
    return out


# ---- bioio plugins (CZI, ND2, LIF) ----------------------------------------------------------


@dataclass
class BioioFile:
    """A vendor file opened with a bioio plugin's ``Reader`` (the bioio-base reader API)."""

    path: Path
    reader: Any
    fmt: Format

    @property
    def scenes(self) -> list[str]:
        """The reader's scene ids."""
        return [str(s) for s in self.reader.scenes] or ["0"]

    def scene(self, index: int) -> Source:
        """Switch the reader to scene ``index`` and return its lazy data (all channels)."""
        try:
            if len(self.reader.scenes) > 1:
                self.reader.set_scene(index)
            data = self.reader.dask_data
            axes = str(self.reader.dims.order)
            if "M" in axes and data.shape[axes.index("M")] > 1:  # tiles: read them stitched
                data = self.reader.mosaic_dask_data
                axes = axes.replace("M", "")
            names = self.reader.channel_names
            physical = self.reader.physical_pixel_sizes
        except Exception as exc:  # the plugins raise their own types for unreadable metadata
            raise CardiosegError(f"{self.path}: not a readable {self.fmt.name} file "
                                 f"({_first_line(exc)})") from exc
        sizes: dict[str, float] = {}
        for ax in "ZYX":
            value = getattr(physical, ax, None)
            if value is not None and _number(value) != 0.0:  # bioio-czi says 0 for "not stated"
                sizes[ax] = _number(value)
        return Source([data], axes, sizes, [str(n) for n in names] if names else None)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_bioio(path: Path, fmt: Format) -> BioioFile:
    """Open ``path`` with the ``Reader`` of the bioio plugin named by ``fmt.module``."""
    plugin = require(fmt, path)
    try:
        reader = plugin.Reader(path)
    except Exception as exc:  # the plugins raise their own types for unreadable files
        raise CardiosegError(f"{path}: not a readable {fmt.name} file ({_first_line(exc)})"
                             ) from exc
    return BioioFile(path, reader, fmt)
