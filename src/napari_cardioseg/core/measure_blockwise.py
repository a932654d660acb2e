"""Measurement of label volumes that need not fit in memory: one object or one slice at a time.

:func:`measure_blockwise_iter` gives the same tables as
:func:`~napari_cardioseg.core.measure.measure_iter`, reading the labels (a zarr or dask array,
or anything sliceable) piece by piece.

Kinds whose per-object values depend on the object alone (those with a
:attr:`~napari_cardioseg.core.measure.kinds.Kind.context`, e.g. ``shapes``):

1. objects: in ``components`` mode the volume is labelled block by block into a temporary
   Zarr store (:func:`~napari_cardioseg.core.blockwise_labels.label_blockwise`; objects that
   cross block borders are merged, numbered as :func:`skimage.measure.label` numbers them);
   in ``labels`` mode one pass over the blocks collects every label value's bounding box and
   voxel count;
2. each object is read from its bounding box alone, padded with one background voxel on every
   side exactly as the in-memory path crops it, and measured by the same registry functions;
   ``touches_border`` refers to the whole volume;
3. the summary comes from the object rows and sizes the same way as in memory.

At most one block (labelling) or one object's bounding box (measuring) is in memory at a time,
plus the rows of the tables. An object whose bounding box spans the whole volume (a connected
network) is still read whole.

Kinds measured per slice (``zdisk``: the per-image measures and the orientation relative to the
myofibril axis need the whole plane) read a ``ZYX`` stack, its intensity image and cell mask one
slice at a time; a 2D image is read whole.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from scipy import ndimage

from .blockwise_labels import label_blockwise
from .errors import CardiosegError
from .grid import plan_blocks
from .measure import (
    KINDS,
    MeasureResult,
    analysis_options,
    check_image,
    get_kind,
    measure_iter,
    measurements,
    object_row,
    result_tables,
    summary_row,
)
from .measure.kinds import DEFAULT_OPTIONS, Plane
from .measure.objects import OBJECT_MODES, Region, iter_regions, split_objects
from .progress import Progress
from .validate import check_labels, check_spacing

#: voxels per block when the block shape is derived from the chunks (int64 labels: 64 MiB)
BLOCK_VOXELS = 2**23


class _Blocks:
    """Read access to the label volume that refuses negative values and can pick one class."""

    def __init__(self, source: Any, value: int | None = None) -> None:
        self.source = source
        self.value = value
        self.shape = tuple(int(n) for n in source.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(bool) if value is not None else np.dtype(source.dtype)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        block = np.asarray(self.source[index])
        if block.dtype.kind == "i" and block.size and block.min() < 0:
            raise CardiosegError("the labels contain negative values")
        return block == self.value if self.value is not None else block


def default_block(labels: Any) -> tuple[int, ...]:
    """Return the chunk shape of ``labels``, enlarged along the leading axes to ~8 Mvoxel.

    Blocks then cover whole chunks (each chunk is read once per pass).
    """
    shape = tuple(int(n) for n in labels.shape)
    chunks = getattr(labels, "chunksize", None) or getattr(labels, "chunks", None)
    if not chunks or not all(isinstance(c, (int, np.integer)) for c in chunks):
        chunks = tuple(min(n, 128) for n in shape)
    block = [min(int(c), n) for c, n in zip(chunks, shape, strict=True)]
    for axis in range(len(shape)):
        while math.prod(block) * 2 <= BLOCK_VOXELS and block[axis] < shape[axis]:
            block[axis] = min(block[axis] * 2, shape[axis])
    return tuple(block)


def _scan_values(labels: _Blocks, block: Sequence[int]
                 ) -> Generator[Progress, None, dict[int, np.ndarray]]:
    """Bounding box and voxel count per label value: ``{value: [*start, *stop, count]}``."""
    plan = plan_blocks(labels.shape, block)
    ndim = labels.ndim
    found: dict[int, np.ndarray] = {}
    for i, b in enumerate(plan):
        data = labels[b.core]
        origin = np.array([s.start for s in b.core])
        values, inverse, counts = np.unique(data, return_inverse=True, return_counts=True)
        boxes = ndimage.find_objects(inverse.reshape(data.shape).astype(np.int64) + 1)
        for value, box, count in zip(values, boxes, counts, strict=True):
            if value == 0 or box is None:
                continue
            start = origin + [s.start for s in box]
            stop = origin + [s.stop for s in box]
            entry = found.get(int(value))
            if entry is None:
                found[int(value)] = np.array([*start, *stop, count], np.int64)
            else:
                entry[:ndim] = np.minimum(entry[:ndim], start)
                entry[ndim:2 * ndim] = np.maximum(entry[ndim:2 * ndim], stop)
                entry[-1] += count
        yield Progress(i + 1, len(plan), "scan", "reading label values")
    return found


def _present_values(labels: _Blocks, block: Sequence[int]) -> Generator[Progress, None, set[int]]:
    """Nonzero label values present (a cheap pass deciding the ``auto`` object mode)."""
    plan = plan_blocks(labels.shape, block)
    values: set[int] = set()
    for i, b in enumerate(plan):
        data = labels[b.core]
        found = np.flatnonzero(np.bincount(data.ravel())) if data.dtype.kind in "ub" and (
            data.dtype.itemsize <= 2) else np.unique(data)
        values.update(int(v) for v in found if v != 0)
        yield Progress(i + 1, len(plan), "scan", "reading label values")
    return values


def _resolve(mode: str, values: Sequence[int]) -> str:
    """``components`` or ``labels``, as :func:`~.measure.objects.resolve_mode` decides."""
    if mode != "auto":
        return mode
    top = max(values, default=0)
    return "labels" if any(v != top for v in values) else "components"


def _per_axis(block: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``block`` as one size per axis."""
    if isinstance(block, (int, np.integer)):
        return (int(block),) * ndim
    return tuple(int(b) for b in block)


def measure_blockwise_iter(
    labels: Any,
    spacing: Sequence[float] | None = None,
    kind: str = "shapes",
    *,
    image: Any = None,
    cell_mask: Any = None,
    mode: str = "auto",
    connectivity: int | None = None,
    min_size: int | None = None,
    period_range: Sequence[float] | None = None,
    class_value: int | None = None,
    min_length: float | None = None,
    block: int | Sequence[int] | None = None,
    workdir: str | os.PathLike | None = None,
) -> Generator[Progress, None, MeasureResult]:
    """Measure every object of a chunked label volume, one block, object or slice at a time.

    Yields :class:`~napari_cardioseg.core.progress.Progress` and returns a
    :class:`MeasureResult` whose tables equal those of
    :func:`~napari_cardioseg.core.measure.measure_iter` on the same volume. Kinds with a
    per-image ``context`` (``shapes``) are measured object by object; kinds measured per slice
    (``zdisk``) one slice of a stack at a time (a 2D image is read whole: its per-image
    measures need the whole plane).

    Parameters
    ----------
    labels : array-like
        ``YX`` or ``ZYX`` integer mask or label image read lazily by slicing, e.g. a zarr or
        dask array; 0 is background.
    spacing : sequence of float, optional
        Pixel size in µm per axis; None = uncalibrated (columns in px).
    kind : str
        A key of :data:`~napari_cardioseg.core.measure.KINDS`.
    image, cell_mask : array-like, optional
        Intensity image and cell mask for the kinds that use them, ``ZYX`` or ``YX``, read one
        slice at a time.
    mode, connectivity, min_size, period_range, class_value, min_length
        As for :func:`~napari_cardioseg.core.measure.measure_iter`.
    block : int or sequence of int, optional
        Block shape for labelling; default the chunk shape enlarged to about 8 Mvoxel.
    workdir : path-like, optional
        Folder for the temporary object-label store (default the system temporary folder);
        it needs about as much space as the compressed labels.

    Raises
    ------
    CardiosegError
        Bad labels, images, mode, connectivity, sizes or options, as in memory.
    """
    spec = get_kind(kind)
    if not spec.uses_image and (image is not None or cell_mask is not None):
        raise CardiosegError(f"an intensity image or cell mask is not used for {kind} "
                             f"measurements; kinds that use them: "
                             f"{', '.join(k for k, v in KINDS.items() if v.uses_image)}")
    if spec.context is None:
        result = yield from _by_slices(labels, spacing, kind, image=image, cell_mask=cell_mask,
                                       mode=mode, connectivity=connectivity, min_size=min_size,
                                       period_range=period_range, class_value=class_value,
                                       min_length=min_length)
        return result
    result = yield from _by_objects(labels, spacing, kind, mode=mode, connectivity=connectivity,
                                    min_size=min_size, class_value=class_value, block=block,
                                    workdir=workdir)
    return result


def _slice_of(array: Any, z: int, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """Slice ``z`` of a ``ZYX`` (or the whole of a ``YX``) image, checked as in memory."""
    if array is None:
        return None
    plane = np.asarray(array[z] if len(array.shape) == 3 else array)
    return check_image(plane, shape[-2:], what)


def _scan_slices(labels: Any, cell_mask: Any, class_value: int | None, need_values: bool
                 ) -> Generator[Progress, None, set[int]]:
    """Label values present (when needed) and a check that the cell mask is not empty."""
    values: set[int] = set()
    has_cells = cell_mask is None
    nz = labels.shape[0]
    for z in range(nz):
        if need_values:
            values.update(int(v) for v in np.unique(check_labels(np.asarray(labels[z]))))
        if not has_cells:
            has_cells = bool(np.any(np.asarray(cell_mask[z] if len(cell_mask.shape) == 3
                                               else cell_mask) > 0))
        yield Progress(z + 1, nz, "scan", "reading label values")
    if not has_cells:
        raise CardiosegError("the cell mask is empty")
    if class_value is not None and (class_value <= 0 or class_value not in values):
        present = sorted(v for v in values if v > 0)[:20]
        raise CardiosegError(f"class {class_value} is not in the labels; they hold "
                             f"{present or 'no objects'}")
    return values


def _by_slices(
    labels: Any,
    spacing: Sequence[float] | None,
    kind: str,
    *,
    image: Any,
    cell_mask: Any,
    mode: str,
    connectivity: int | None,
    min_size: int | None,
    period_range: Sequence[float] | None,
    class_value: int | None,
    min_length: float | None,
) -> Generator[Progress, None, MeasureResult]:
    """Measure a per-slice kind one slice of a stack at a time (a 2D image whole)."""
    shape = tuple(int(n) for n in labels.shape)
    if len(shape) != 3 or 0 in shape:  # a 2D image is measured whole (errors as in memory)
        result = yield from measure_iter(
            np.asarray(labels), spacing, kind,
            image=None if image is None else np.asarray(image),
            cell_mask=None if cell_mask is None else np.asarray(cell_mask), mode=mode,
            connectivity=connectivity, min_size=min_size, period_range=period_range,
            class_value=class_value, min_length=min_length)
        return MeasureResult(result.objects, result.summary, result.spacing, kind,
                               result.calibrated)
    spec = get_kind(kind)
    for array, what in ((image, "intensity image"), (cell_mask, "cell mask")):
        if array is not None and tuple(array.shape) not in (shape, shape[-2:]):
            raise CardiosegError(f"the {what} has shape {tuple(array.shape)} but the labels "
                                 f"have {shape}")
    calibrated = spacing is not None
    spacing = check_spacing(spacing if spacing is not None else (1.0,) * 3, 3)
    plane_spacing = spacing[-2:]
    options = analysis_options(calibrated, period_range, min_length)
    if class_value is not None and mode not in ("auto", "components"):
        raise CardiosegError(f"one class is split into connected components; objects mode {mode!r} "
                             "does not apply to it")
    if min_size is None:
        min_size = spec.min_size(plane_spacing, calibrated)
    if min_size < 0:
        raise CardiosegError(f"minimum size must be >= 0, got {min_size}")
    if mode not in OBJECT_MODES:
        raise CardiosegError(f"unknown object mode {mode!r}; choose one of {', '.join(OBJECT_MODES)}")
    need_values = class_value is not None or mode == "auto"
    if need_values or cell_mask is not None:
        values = yield from _scan_slices(labels, cell_mask, class_value, need_values)
        if class_value is not None:
            mode = "components"
        elif mode == "auto":
            mode = _resolve(mode, sorted(v for v in values if v != 0))
    obj_measures = measurements(kind, "object", 2)
    available = ("cell_mask",) if cell_mask is not None else ()
    img_measures = measurements(kind, "image", 2, available)
    columns = {m.name: m.column(calibrated) for m in (*obj_measures, *img_measures)}
    described = [m for m in obj_measures if m.summarise]
    obj_rows: list[dict] = []
    summary_rows: list[dict] = []
    used = 0
    for z in range(shape[0]):
        plane = check_labels(np.asarray(labels[z]))
        if class_value is not None:
            plane = (plane == class_value).astype(np.int64)
        objects = split_objects(plane, mode, connectivity or 2, int(min_size))
        if mode == "components":  # unique labels across the stack, as in memory
            objects = np.where(objects > 0, objects + used, 0)
            used = max(used, int(objects.max()))
        mask = _slice_of(cell_mask, z, shape, "cell mask")
        ctx_plane = Plane(iter_regions(objects, plane_spacing), objects, plane_spacing, z, options,
                          _slice_of(image, z, shape, "intensity image"),
                          None if mask is None else mask > 0)
        items, ctx = spec.build(ctx_plane)
        rows = [object_row(item.region.label, item, obj_measures, columns, {"z": z})
                for item in items]
        obj_rows += rows
        summary_rows.append(summary_row(ctx, rows, img_measures, described, columns, {"z": z}))
        yield Progress(z + 1, shape[0], "measure", f"measured slice {z + 1} / {shape[0]}")
    obj_table, summary_table = result_tables(obj_rows, summary_rows, obj_measures, columns,
                                             ["label", "z"])
    return MeasureResult(obj_table, summary_table, spacing, kind, calibrated)


def _by_objects(
    labels: Any,
    spacing: Sequence[float] | None,
    kind: str,
    *,
    mode: str,
    connectivity: int | None,
    min_size: int | None,
    class_value: int | None,
    block: int | Sequence[int] | None,
    workdir: str | os.PathLike | None,
) -> Generator[Progress, None, MeasureResult]:
    """Label blockwise, then measure one object crop at a time (kinds with a ``context``)."""
    spec = get_kind(kind)
    if mode not in OBJECT_MODES:
        raise CardiosegError(f"unknown object mode {mode!r}; choose one of {', '.join(OBJECT_MODES)}")
    shape = tuple(int(n) for n in labels.shape)
    ndim = len(shape)
    if ndim not in (2, 3) or 0 in shape:
        raise CardiosegError(f"the labels must be 2D (YX) or 3D (ZYX), got shape {shape}")
    if np.dtype(labels.dtype).kind not in "uib":
        raise CardiosegError(f"blockwise measurement needs integer labels, got {labels.dtype}")
    calibrated = spacing is not None
    spacing = check_spacing(spacing if spacing is not None else (1.0,) * ndim, ndim)
    if min_size is None:
        min_size = spec.min_size(spacing, calibrated)
    if min_size < 0:
        raise CardiosegError(f"minimum size must be >= 0, got {min_size}")
    connectivity = ndim if connectivity is None else int(connectivity)
    if not 1 <= connectivity <= ndim:
        raise CardiosegError(f"connectivity must be 1..{ndim} for a {ndim}D image")
    if class_value is not None:
        if mode not in ("auto", "components"):
            raise CardiosegError(f"one class is split into connected components; objects mode "
                                 f"{mode!r} does not apply to it")
        source, mode = _Blocks(labels, int(class_value)), "components"
    else:
        source = _Blocks(labels)
    block = _per_axis(block, ndim) if block is not None else default_block(labels)

    instances: Any  # the temporary object-label store, or the label image itself
    with tempfile.TemporaryDirectory(prefix="cardioseg-measure-", dir=workdir) as tmp:
        if mode == "auto":
            mode = _resolve(mode, sorted((yield from _present_values(source, block))))
        if mode == "components":
            store = zarr.open_array(str(Path(tmp) / "objects.zarr"), mode="w", shape=shape,
                                    chunks=block,
                                    dtype=np.uint32 if math.prod(shape) < 2**32 else np.uint64)
            found = yield from label_blockwise(source, store, block=block,
                                               connectivity=connectivity)
            if class_value is not None and not found.count:
                raise CardiosegError(f"class {class_value} is not in the labels")
            ids = np.arange(1, found.count + 1)
            boxes, sizes, instances = found.boxes, found.sizes, store
        else:
            values = yield from _scan_values(source, block)
            order = sorted(values)
            ids = np.array(order, np.int64)
            table = np.array([values[v] for v in order], np.int64).reshape(-1, 2 * ndim + 1)
            boxes = table[:, :2 * ndim].reshape(-1, 2, ndim)
            sizes, instances = table[:, -1], source
        result = yield from _measure_objects(instances, ids, boxes, sizes, spec.name, shape,
                                             spacing, calibrated, int(min_size))
    return result


def _measure_objects(instances: Any, ids: np.ndarray, boxes: np.ndarray, sizes: np.ndarray,
                     kind: str, shape: tuple[int, ...], spacing: tuple[float, ...],
                     calibrated: bool, min_size: int) -> Generator[Progress, None, MeasureResult]:
    """Rows of every object of at least ``min_size`` voxels, then the summary.

    Object ``ids[i]`` is the voxels equal to it in ``instances`` inside the box ``boxes[i]``
    (start and stop per axis) and has ``sizes[i]`` voxels.
    """
    spec = get_kind(kind)
    assert spec.context is not None
    ndim = len(shape)
    obj_measures = measurements(kind, "object", ndim)
    img_measures = measurements(kind, "image", ndim, ())
    columns = {m.name: m.column(calibrated) for m in (*obj_measures, *img_measures)}
    described = [m for m in obj_measures if m.summarise]
    options = DEFAULT_OPTIONS[calibrated]
    voxel = np.prod(spacing)
    keep = np.flatnonzero(sizes >= min_size)
    total = len(keep)
    yield Progress(0, total, "measure", f"measuring {total} objects")
    rows, sizes_um = [], []
    for i in keep:
        label, size = int(ids[i]), int(sizes[i])
        box = tuple(slice(int(a), int(b)) for a, b in zip(*boxes[i], strict=True))
        crop = np.pad(np.asarray(instances[box]) == label, 1)
        offset = tuple(s.start - 1 for s in box)
        border = any(s.start == 0 or s.stop == n for s, n in zip(box, shape, strict=True))
        region = Region(label, crop, offset, spacing, border)
        items, _ = spec.build(Plane([region], crop, spacing, 0, options))
        rows.append(object_row(label, items[0], obj_measures, columns))
        sizes_um.append(float(size * voxel))
        yield Progress(len(rows), total, "measure", f"measured {len(rows)} / {total} objects")
    ctx = spec.context(sizes_um, shape, spacing)
    summary = [summary_row(ctx, rows, img_measures, described, columns)]
    obj_table, summary_table = result_tables(rows, summary, obj_measures, columns, ["label"])
    return MeasureResult(obj_table, summary_table, spacing, kind, calibrated)


def measure_blockwise(labels: Any, spacing: Sequence[float] | None = None,
                      kind: str = "shapes", **kwargs: Any) -> MeasureResult:
    """Run :func:`measure_blockwise_iter` to the end and return its result."""
    from .progress import drain

    return drain(measure_blockwise_iter(labels, spacing, kind, **kwargs))
