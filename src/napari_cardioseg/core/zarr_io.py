"""OME-Zarr (NGFF 0.4) stores for volumes larger than memory: write block by block, read lazily.

A store written here is a Zarr v2 group with one array per resolution level (``0``, ``1``, ...),
NGFF ``multiscales`` metadata (axes with units, a ``scale`` transform in micrometres per level)
and a ``cardioseg`` attribute: ``{"complete": false, "run": {...}}`` while it is being filled.
Each finished block leaves a marker file under ``.cardioseg/done``; only when every block and the
downsampled levels are written does ``complete`` become true, so an interrupted run never looks
finished and a rerun with the same ``run`` description resumes from the finished blocks.

Levels halve ``Y`` and ``X`` (like most NGFF writers): labels by taking every second pixel (no
invented label values), probabilities by the mean of each 2×2 group.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import warnings
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from .errors import CardiosegError
from .progress import Progress
from .validate import check_spacing

if TYPE_CHECKING:
    from .formats import Format, OneScene

NGFF_VERSION = "0.4"
ZARR_SUFFIXES = (".zarr", ".ome.zarr")
#: NGFF (UDUNITS-2) length units and their size in micrometres
NGFF_UNITS_UM = {"meter": 1e6, "centimeter": 1e4, "millimeter": 1e3, "micrometer": 1.0,
                 "nanometer": 1e-3, "angstrom": 1e-4, "picometer": 1e-6}
#: length units written in the wild instead of NGFF's (UDUNITS) names
_UNIT_ALIASES = {"µm": "micrometer", "μm": "micrometer", "um": "micrometer", "micron": "micrometer",
                 "nm": "nanometer", "mm": "millimeter", "m": "meter", "cm": "centimeter",
                 "Å": "angstrom", "pm": "picometer"}
_DONE = (".cardioseg", "done")
_MIN_LEVEL_EDGE = 256  # stop adding levels once Y and X are at most this


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Tell whether ``path`` names a Zarr store by its suffix (``.zarr`` / ``.ome.zarr``)."""
    return str(path).rstrip("/\\").lower().endswith(ZARR_SUFFIXES)


def level_shapes(shape: Sequence[int], levels: int | None = None) -> list[tuple[int, ...]]:
    """Shapes of the resolution levels: each halves (rounding up) the last two axes.

    ``levels=None`` adds levels until ``Y`` and ``X`` are at most 256 pixels (6 levels at most).
    """
    shapes = [tuple(int(n) for n in shape)]
    wanted = 6 if levels is None else int(levels)
    while len(shapes) < wanted:
        last = shapes[-1]
        if levels is None and max(last[-2:]) <= _MIN_LEVEL_EDGE:
            break
        if levels is not None and max(last[-2:]) == 1:
            raise CardiosegError(f"cannot make {levels} levels from shape {tuple(shape)}")
        shapes.append((*last[:-2], *(math.ceil(n / 2) for n in last[-2:])))
    return shapes


def _axes_metadata(axes: str, calibrated: bool = True) -> list[dict]:
    """NGFF axes; spatial axes carry ``micrometer`` only when the pixel size is known."""
    out: list[dict] = []
    for ax in axes.lower():
        if ax == "c":
            out.append({"name": "c", "type": "channel"})
        else:
            out.append({"name": ax, "type": "space",
                        **({"unit": "micrometer"} if calibrated else {})})
    return out


def create_ome_zarr(
    path: str | os.PathLike,
    shape: Sequence[int],
    dtype: Any,
    scale: Sequence[float],
    *,
    chunks: Sequence[int],
    axes: str | None = None,
    levels: int | None = None,
    name: str = "",
    labels: bool = True,
    run: dict | None = None,
    calibrated: bool = True,
) -> zarr.Group:
    """Create an empty, incomplete multiscale store at ``path`` (replacing what is there).

    Parameters
    ----------
    path : path-like
        Store folder (``.zarr``). An existing folder is replaced only when it is a Zarr store.
    shape, dtype : sequence of int, dtype
        Level-0 array; a leading ``C`` axis (probabilities) is allowed when ``axes`` says so.
    scale : sequence of float
        Pixel size in µm per spatial axis of level 0 (ones when not ``calibrated``).
    chunks : sequence of int
        Chunk shape of every level (clipped to the level's shape).
    axes : str, optional
        ``"YX"``, ``"ZYX"``, ``"CYX"`` or ``"CZYX"``; default the spatial axes of ``shape``.
    levels : int, optional
        Number of resolution levels (default: see :func:`level_shapes`).
    labels : bool
        Label image (downsampled by striding, NGFF ``image-label``) or intensities (by mean).
    run : dict, optional
        JSON description of the run filling the store, compared by :func:`open_incomplete`.
    calibrated : bool
        False: the axes get no unit, so the store reads back uncalibrated (no invented µm).
    """
    shape = tuple(int(n) for n in shape)
    axes = (axes or "ZYX"[-len(shape):]).upper()
    spatial = axes.replace("C", "")
    if len(axes) != len(shape) or axes not in ("YX", "ZYX", "CYX", "CZYX"):
        raise CardiosegError(f"axes {axes!r} do not fit a store of shape {shape}")
    scale = check_spacing(scale, len(spatial))
    if len(chunks) != len(shape) or any(int(c) < 1 for c in chunks):
        raise CardiosegError(f"chunks {tuple(chunks)} do not fit a store of shape {shape}")
    path = Path(path)
    if path.exists():
        if not (path / ".zgroup").is_file() and not (path / "zarr.json").is_file():
            raise CardiosegError(f"{path} exists and is not a Zarr store; not replacing it")
        shutil.rmtree(path)
    if not path.parent.is_dir():
        raise CardiosegError(f"{path}: the folder {path.parent} does not exist")
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    # mark incomplete before any data exists, so a crash at any point later is visible
    group.attrs["cardioseg"] = {"complete": False, "labels": bool(labels), "run": run or {}}
    datasets: list[dict[str, Any]] = []
    for k, level_shape in enumerate(level_shapes(shape, levels)):
        group.create_array(str(k), shape=level_shape, dtype=dtype, fill_value=0,
                           chunks=tuple(min(int(c), n) for c, n in zip(chunks, level_shape,
                                                                      strict=True)))
        factor = (1.0,) * (len(spatial) - 2) + (2.0 ** k,) * 2
        level_scale = [s * f for s, f in zip(scale, factor, strict=True)]
        if "C" in axes:
            level_scale = [1.0, *level_scale]
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": level_scale}]})
    group.attrs["multiscales"] = [{"version": NGFF_VERSION, "name": name,
                                   "axes": _axes_metadata(axes, calibrated), "datasets": datasets,
                                   "type": "nearest" if labels else "mean"}]
    if labels:
        group.attrs["image-label"] = {"version": NGFF_VERSION}
    return group


def _attr(group: zarr.Group, key: str) -> Any:
    """Return the JSON attribute ``key`` of ``group`` (None when absent); callers check its shape."""
    return group.attrs.get(key)


def _array(group: zarr.Group, key: str, what: str = "the store") -> zarr.Array:
    """Return the array ``key`` of ``group``; a sub-group there is a :class:`CardiosegError`."""
    array = group[key]
    if not isinstance(array, zarr.Array):
        raise CardiosegError(f"{what}: level {key} is a group, not an array")
    return array


def _done_dir(path: str | os.PathLike) -> Path:
    return Path(path).joinpath(*_DONE)


def _marker(index: Sequence[int]) -> str:
    return ".".join(str(int(i)) for i in index)


def mark_block_done(path: str | os.PathLike, index: Sequence[int]) -> None:
    """Record that block ``index`` is fully written (call after its data is stored)."""
    folder = _done_dir(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _marker(index)).touch()


def done_blocks(path: str | os.PathLike) -> set[tuple[int, ...]]:
    """Return the indices of the blocks marked done in the store at ``path``."""
    folder = _done_dir(path)
    if not folder.is_dir():
        return set()
    done = set()
    for entry in folder.iterdir():
        try:
            done.add(tuple(int(i) for i in entry.name.split(".")))
        except ValueError:
            continue
    return done


def open_incomplete(path: str | os.PathLike, run: dict) -> zarr.Group | None:
    """Open the store at ``path`` for writing if a run with exactly the same ``run`` made it.

    The earlier run may be unfinished or finished; None when there is no such store (start afresh).
    """
    path = Path(path)
    if not (path / ".zgroup").is_file():
        return None
    try:
        group = zarr.open_group(str(path), mode="r+", zarr_format=2)
    except (OSError, ValueError, KeyError):
        return None
    info = _attr(group, "cardioseg")
    if not isinstance(info, dict) or info.get("run") != run:
        return None
    return group


def mark_complete(group: zarr.Group) -> None:
    """Set the store's ``complete`` flag (after every block and level is written)."""
    info = dict(_attr(group, "cardioseg"))
    info["complete"] = True
    group.attrs["cardioseg"] = info


def _downsample(block: np.ndarray, labels: bool) -> np.ndarray:
    """Halve the last two axes: every second pixel for labels, the 2×2 mean otherwise."""
    if labels:
        return block[..., ::2, ::2]
    pad = [(0, 0)] * (block.ndim - 2) + [(0, n % 2) for n in block.shape[-2:]]
    data = np.pad(block.astype(np.float32), pad, mode="edge")
    mean = 0.25 * (data[..., 0::2, 0::2] + data[..., 1::2, 0::2]
                   + data[..., 0::2, 1::2] + data[..., 1::2, 1::2])
    if np.dtype(block.dtype).kind in "ui":
        mean = np.rint(mean)
    return mean.astype(block.dtype)


def _chunk_regions(shape: Sequence[int], chunks: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    grid = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    for origin in np.ndindex(*(len(g) for g in grid)):
        yield tuple(slice(g[i], min(g[i] + c, n))
                    for g, i, c, n in zip(grid, origin, chunks, shape, strict=True))


def _level_jobs(group: zarr.Group) -> list[tuple[zarr.Array, zarr.Array]]:
    paths = [d["path"] for d in _attr(group, "multiscales")[0]["datasets"]]
    return [(_array(group, a), _array(group, b)) for a, b in itertools.pairwise(paths)]


def level_chunk_count(group: zarr.Group) -> int:
    """How many chunks :func:`build_levels` writes (its progress total)."""
    return sum(math.prod(math.ceil(n / c) for n, c in zip(dst.shape, dst.chunks, strict=True))
               for _, dst in _level_jobs(group))


def build_levels(group: zarr.Group) -> Generator[Progress, None, None]:
    """Fill levels 1, 2, ... from level 0, one chunk of the target level at a time."""
    info = _attr(group, "cardioseg")
    jobs = _level_jobs(group)
    total = level_chunk_count(group)
    done = 0
    yield Progress(done, total, "levels", "downsampling for viewing")
    for src, dst in jobs:
        for region in _chunk_regions(dst.shape, dst.chunks):
            source = (*region[:-2], *(slice(2 * r.start, 2 * r.stop) for r in region[-2:]))
            dst[region] = _downsample(np.asarray(src[source]), bool(info.get("labels", True)))
            done += 1
            yield Progress(done, total, "levels", "downsampling for viewing")


@dataclass
class OmeZarr:
    """A multiscale image read lazily from an OME-Zarr store.

    Attributes
    ----------
    levels : list of zarr.Array
        Resolution levels, full resolution first (nothing is loaded until indexed).
    axes : str
        Upper-case axis names, e.g. ``"ZYX"`` or ``"CZYX"``.
    scale : tuple of float
        Pixel size in µm per spatial axis of level 0 (ones when not calibrated).
    calibrated : bool
        False when the store gave no length unit for the spatial axes.
    complete : bool or None
        Whether a cardioseg run finished writing it; None for stores made by other programs.
    level_scales : list of tuple of float
        Pixel size in µm per spatial axis of every level.
    """

    levels: list[Any]
    axes: str
    scale: tuple[float, ...]
    calibrated: bool
    complete: bool | None
    level_scales: list[tuple[float, ...]] = field(default_factory=list)

    @property
    def data(self) -> Any:
        """The full-resolution level."""
        return self.levels[0]


def _scale_of(dataset: dict, what: str, required: bool = True) -> list[float] | None:
    """Return the ``scale`` of a dataset (or of the whole multiscale, then not required)."""
    for transform in dataset.get("coordinateTransformations", []):
        if transform.get("type") == "scale":
            return [float(s) for s in transform["scale"]]
    if required:
        raise CardiosegError(f"{what}: a level has no scale transform")
    return None


def _unit_factor(path: Path, axis: dict) -> float | None:
    """µm per unit of ``axis``; None (and a warning for a unit that is not a length) when unknown."""
    unit = str(axis.get("unit", ""))
    unit = _UNIT_ALIASES.get(unit, unit.lower())
    if unit and unit not in NGFF_UNITS_UM:
        warnings.warn(f"{path}: axis {axis.get('name')!r} has the unit {unit!r}, not a length unit "
                      "known here; the store is read as uncalibrated", UserWarning, stacklevel=3)
    return NGFF_UNITS_UM.get(unit)


def read_ome_zarr(path: str | os.PathLike) -> OmeZarr:
    """Open an OME-Zarr (NGFF 0.4, or 0.5 in Zarr v3) multiscale image lazily, with its pixel size in µm.

    A scale given for the whole multiscale multiplies each level's.

    Raises
    ------
    CardiosegError
        When ``path`` is not a Zarr store, has no ``multiscales`` metadata, or axes other than
        ``t``/``c``/``z``/``y``/``x``.
    """
    path = Path(path)
    if not path.is_dir():
        raise CardiosegError(f"{path}: no such Zarr store")
    try:
        group = zarr.open_group(str(path), mode="r")
    except (OSError, ValueError, KeyError, zarr.errors.GroupNotFoundError) as exc:
        raise CardiosegError(f"{path}: not a readable Zarr group ({exc})") from exc
    ome = _attr(group, "ome")  # NGFF 0.5 keeps its metadata under "ome"
    multiscales = _attr(group, "multiscales") or (ome.get("multiscales") if isinstance(ome, dict)
                                                  else None)
    if not multiscales:
        raise CardiosegError(f"{path}: no OME-Zarr 'multiscales' metadata")
    meta = multiscales[0]
    axes_meta = [a if isinstance(a, dict) else {"name": a} for a in meta.get("axes", [])]
    axes = "".join(str(a.get("name", "")).upper() for a in axes_meta)
    if not axes or any(a not in "TCZYX" for a in axes) or "Y" not in axes or "X" not in axes:
        raise CardiosegError(f"{path}: unsupported OME-Zarr axes {axes!r}")
    known = [_unit_factor(path, a) for a in axes_meta if str(a.get("name", "")).upper() in "ZYX"]
    calibrated = all(f is not None for f in known)
    factors = [f if f is not None else 1.0 for f in known]
    whole = _scale_of(meta, str(path), required=False) or [1.0] * len(axes)
    spatial = [i for i, a in enumerate(axes) if a in "ZYX"]
    levels, level_scales = [], []
    for dataset in meta.get("datasets", []):
        array = _array(group, dataset["path"], str(path))
        if array.ndim != len(axes):
            raise CardiosegError(f"{path}: level {dataset['path']} has {array.ndim} axes, "
                                 f"the metadata names {len(axes)}")
        values = [v * w for v, w in zip(_scale_of(dataset, str(path)) or [], whole, strict=True)]
        levels.append(array)
        level_scales.append(tuple(values[i] * f for i, f in zip(spatial, factors, strict=True)))
    if not levels:
        raise CardiosegError(f"{path}: the multiscales metadata lists no datasets")
    info = _attr(group, "cardioseg")
    complete = bool(info.get("complete")) if isinstance(info, dict) else None
    return OmeZarr(levels, axes, level_scales[0], calibrated, complete, level_scales)


def is_label_store(path: str | os.PathLike) -> bool:
    """Tell whether the store says it holds labels (NGFF ``image-label`` or a cardioseg run)."""
    attrs = zarr.open_group(str(path), mode="r").attrs
    info = attrs.get("cardioseg")
    return "image-label" in attrs or (isinstance(info, dict) and bool(info.get("labels")))


def open_zarr(path: Path, fmt: Format | None = None) -> OneScene:
    """Open a store for the OME-Zarr row: every level lazily, the pixel size only when calibrated."""
    from .formats import OneScene, Source

    store = read_ome_zarr(path)
    spatial = "".join(a for a in store.axes if a in "ZYX")
    sizes = dict(zip(spatial, store.scale, strict=True)) if store.calibrated else {}
    return OneScene(Source(list(store.levels), store.axes, sizes, None, is_label_store(path),
                           store.complete))


def write_ome_zarr(
    path: str | os.PathLike,
    data: np.ndarray,
    scale: Sequence[float],
    *,
    chunks: Sequence[int] | None = None,
    axes: str | None = None,
    levels: int | None = None,
    labels: bool = True,
    name: str = "",
    calibrated: bool = True,
) -> Path:
    """Write an in-memory array (labels, probabilities or an image) as a complete OME-Zarr.

    ``calibrated`` False writes no length unit (see :func:`create_ome_zarr`).
    """
    data = np.asarray(data)
    axes = (axes or "ZYX"[-data.ndim:]).upper()
    chunks = chunks or tuple(1 if a == "C" else min(n, 128)
                             for a, n in zip(axes, data.shape, strict=False))
    group = create_ome_zarr(path, data.shape, data.dtype, scale, chunks=chunks, axes=axes,
                            levels=levels, labels=labels, name=name, calibrated=calibrated)
    _array(group, "0")[...] = data
    for _ in build_levels(group):
        pass
    mark_complete(group)
    return Path(path)


def probabilities_dtype(name: str) -> np.dtype:
    """``uint8`` (0-255 for 0-1) or ``float16`` storage for probabilities."""
    if name not in ("uint8", "float16"):
        raise CardiosegError(f"probabilities are stored as uint8 or float16, not {name!r}")
    return np.dtype(name)


def encode_probabilities(prob: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Probabilities in [0, 1] as ``dtype``: uint8 scales by 255 and rounds; float16 casts."""
    if np.dtype(dtype) == np.uint8:
        return np.rint(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.asarray(prob, dtype=np.float16)
