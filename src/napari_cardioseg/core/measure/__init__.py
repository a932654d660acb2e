"""Measurements in physical units (or in pixels when the image has no pixel size).

The analyses are registered in :data:`kinds.KINDS` and their columns in
:data:`registry.MEASUREMENTS` (name with unit suffix, unit, description, function);
:func:`measure_iter` splits the labels into objects and fills the per-object and summary tables
from the two registries, without knowing any kind by name.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CardiosegError
from ..progress import Progress, drain
from ..table import Table
from ..validate import check_labels, check_spacing
from .kinds import DEFAULT_OPTIONS, KINDS, Kind, Options, Plane
from .objects import iter_regions, resolve_mode, split_objects, warn_if_classes
from .registry import MEASUREMENTS, Measurement, measurements
from .summary import summarise


@dataclass
class MeasureResult:
    """Per-object table, summary table and the object label image that was measured.

    ``spacing`` is the pixel size in µm, or ones when ``calibrated`` is False (then every
    column is in pixels). ``labels`` is None for a blockwise measurement
    (:mod:`core.measure_blockwise`), which never holds the whole object image.
    """

    objects: Table
    summary: Table
    spacing: tuple[float, ...]
    kind: str
    calibrated: bool = True
    labels: np.ndarray | None = None

    @property
    def unit(self) -> str:
        """``"µm"`` or ``"px"``."""
        return "µm" if self.calibrated else "px"


def get_kind(name: str) -> Kind:
    """Return the registered kind ``name``; an unknown name raises with the list of kinds."""
    if name not in KINDS:
        raise CardiosegError(f"unknown measurement kind {name!r}; choose one of {', '.join(KINDS)}")
    return KINDS[name]


def list_columns(kind: str, calibrated: bool = True) -> list[tuple[str, str, str, str]]:
    """``(column, unit, level and dimensions, description)`` of every column of ``kind``."""
    get_kind(kind)
    out = []
    for m in MEASUREMENTS:
        if m.kind == kind:
            where = f"{m.level} {'/'.join(f'{n}D' for n in m.ndim)}"
            if m.requires:
                where += f" (needs {m.requires.replace('_', ' ')})"
            out.append((m.column(calibrated), m.unit_for(calibrated), where,
                        m.description_for(calibrated)))
    return out


def check_image(array: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """Check an intensity image or cell mask against the labels' ``shape`` and broadcast it.

    A ``YX`` array is accepted for a ``ZYX`` stack (the same for every slice).
    """
    if array is None:
        return None
    array = np.asarray(array)
    if array.shape != shape and array.shape != shape[-2:]:
        raise CardiosegError(f"the {what} has shape {array.shape} but the labels have {shape}")
    if array.dtype.kind not in "uifb":
        raise CardiosegError(f"the {what} has unsupported pixel type {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise CardiosegError(f"the {what} contains NaN or infinite values")
    return np.broadcast_to(array, shape)


def _one_class(labels: np.ndarray, value: int, mode: str) -> tuple[np.ndarray, str]:
    """Return the mask of one class and the object mode for it (always connected components)."""
    if mode not in ("auto", "components"):
        raise CardiosegError(f"one class is split into connected components; objects mode {mode!r} "
                             "does not apply to it")
    mask = labels == value
    if value <= 0 or not mask.any():
        present = [int(v) for v in np.unique(labels) if v > 0][:20]
        raise CardiosegError(f"class {value} is not in the labels; they hold {present or 'no objects'}")
    return mask.astype(np.uint8), "components"


def analysis_options(calibrated: bool, period_range: Sequence[float] | None,
                     min_length: float | None) -> Options:
    """Check the period range and minimum Z-disk length; None takes the default."""
    default = DEFAULT_OPTIONS[calibrated]
    lo, hi = (float(v) for v in (period_range if period_range is not None
                                 else default.period_range))
    if not (np.isfinite(hi) and 0 < lo < hi):
        raise CardiosegError(f"the period range must be 0 < min < max, got {(lo, hi)}")
    length = default.min_length if min_length is None else float(min_length)
    if not (np.isfinite(length) and length >= 0):
        raise CardiosegError(f"the minimum Z-disk length must be >= 0, got {min_length}")
    return Options((lo, hi), length)


def _table(rows: list[dict], names: list[str], ints: Sequence[str]) -> Table:
    table = Table.from_rows(rows, names)
    for col in ints:  # from the rows, not the float column: ids over 2**53 stay exact
        table.columns[col] = np.array([int(r[col]) for r in rows], dtype=np.int64)
    return table


def measure_iter(
    labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    kind: str = "shapes",
    image: np.ndarray | None = None,
    cell_mask: np.ndarray | None = None,
    mode: str = "auto",
    connectivity: int | None = None,
    min_size: int | None = None,
    period_range: Sequence[float] | None = None,
    class_value: int | None = None,
    min_length: float | None = None,
) -> Generator[Progress, None, MeasureResult]:
    """Measure every object.

    Yields :class:`~napari_cardioseg.core.progress.Progress` and returns a :class:`MeasureResult`.

    Parameters
    ----------
    labels : numpy.ndarray
        Mask or label image, ``YX`` or ``ZYX`` (Z-disk stacks are measured slice by slice).
        Label ids may be huge (up to ``2**63 - 1``); they are kept in the ``label`` column.
    spacing : sequence of float, optional
        Pixel size in µm per axis. None = uncalibrated: pixel units, and every column is named
        and labelled in px / px² / px³ instead of µm.
    kind : str
        A key of :data:`KINDS` (``"zdisk"``, ``"shapes"``).
    image, cell_mask : numpy.ndarray, optional
        Intensity image (for the Fourier period and the periodicity profile) and cell mask
        (restricts the image-level Z-disk measures and adds the cell features); Z-disks only.
    mode, connectivity
        How objects are formed, see :func:`objects.split_objects`; ``connectivity`` defaults
        to the full neighbourhood (8 in 2D, 26 in 3D).
    min_size : int, optional
        Objects with fewer pixels are dropped; default the kind's (for shapes about a 0.2 µm
        sphere, or 27 voxels / 9 pixels when uncalibrated; none for Z-disks).
    period_range : (float, float), optional
        Shortest and longest sarcomere length searched; default 1-4 µm (5-50 px uncalibrated).
    class_value : int, optional
        Measure only this class of a semantic (multi-class) label image, split into connected
        components: e.g. 2 for the second class of a prediction.
    min_length : float, optional
        Z-disk objects shorter than this are not counted; default 0.3 µm (3 px uncalibrated).
    """
    spec = get_kind(kind)
    labels = check_labels(labels)
    calibrated = spacing is not None
    spacing = check_spacing(spacing if spacing is not None else (1.0,) * labels.ndim, labels.ndim)
    options = analysis_options(calibrated, period_range, min_length)
    if class_value is not None:
        labels, mode = _one_class(labels, int(class_value), mode)
    if not spec.uses_image and (image is not None or cell_mask is not None):
        raise CardiosegError(f"an intensity image or cell mask is not used for {kind} "
                             f"measurements; kinds that use them: "
                             f"{', '.join(k for k, v in KINDS.items() if v.uses_image)}")
    image = check_image(image, labels.shape, "intensity image")
    cell_mask = check_image(cell_mask, labels.shape, "cell mask")
    if cell_mask is not None:
        cell_mask = cell_mask > 0
        if not cell_mask.any():
            raise CardiosegError("the cell mask is empty")
    stack = spec.per_slice and labels.ndim == 3
    planes = [(z, np.s_[z]) for z in range(labels.shape[0])] if stack else [(0, np.s_[...])]
    ndim = 2 if stack else labels.ndim
    plane_spacing = spacing[-ndim:]
    if min_size is None:
        min_size = spec.min_size(plane_spacing, calibrated)
    if min_size < 0:
        raise CardiosegError(f"minimum size must be >= 0, got {min_size}")
    resolved = resolve_mode(labels, mode)
    if mode == "auto" and resolved == "labels":
        warn_if_classes(labels, connectivity or labels.ndim)
    mode = resolved
    objects_image = np.zeros(labels.shape, np.int64)  # not the dtype of a one-class uint8 mask
    found: list[tuple[int, Any, list]] = []
    used = 0
    for z, idx in planes:
        plane_objects = split_objects(labels[idx], mode, connectivity or ndim, int(min_size))
        if mode == "components" and stack:  # unique labels across the stack
            plane_objects = np.where(plane_objects > 0, plane_objects + used, 0)
            used = max(used, int(plane_objects.max()))
        objects_image[idx] = plane_objects
        found.append((z, idx, iter_regions(plane_objects, plane_spacing)))
    total = sum(len(r) for _, _, r in found)
    yield Progress(0, total, "measure", f"measuring {total} objects")
    available = ("cell_mask",) if cell_mask is not None else ()
    obj_measures = measurements(kind, "object", ndim)
    img_measures = measurements(kind, "image", ndim, available)
    columns = {m.name: m.column(calibrated) for m in (*obj_measures, *img_measures)}
    described = [m for m in obj_measures if m.summarise]
    id_cols = ["label", "z"] if stack else ["label"]
    obj_rows, summary_rows, done = [], [], 0
    for z, idx, regions in found:
        plane = Plane(regions, objects_image[idx], plane_spacing, z, options,
                      None if image is None else image[idx],
                      None if cell_mask is None else cell_mask[idx])
        items, ctx = spec.build(plane)
        ids = {"z": z} if stack else {}
        rows = [object_row(item.region.label, item, obj_measures, columns, ids) for item in items]
        done += len(regions)
        yield Progress(done, total, "measure", f"measured {done} / {total} objects")
        obj_rows += rows
        summary_rows.append(summary_row(ctx, rows, img_measures, described, columns, ids))
    obj_table, summary_table = result_tables(obj_rows, summary_rows, obj_measures, columns, id_cols)
    return MeasureResult(obj_table, summary_table, spacing, kind, calibrated, objects_image)


def object_row(label: int, item: Any, obj_measures: Sequence[Measurement],
               columns: dict[str, str], ids: dict[str, int] | None = None) -> dict[str, Any]:
    """One row of the per-object table: ``label``, the ``ids`` (e.g. ``z``), every measure."""
    row: dict[str, Any] = {"label": label, **(ids or {})}
    row.update({columns[m.name]: m.func(item) for m in obj_measures})
    return row


def summary_row(ctx: Any, rows: Sequence[dict[str, Any]], img_measures: Sequence[Measurement],
                described: Sequence[Measurement], columns: dict[str, str],
                ids: dict[str, int] | None = None) -> dict[str, Any]:
    """One row of the summary: the per-image measures of ``ctx`` and statistics of ``rows``."""
    summary: dict[str, Any] = {**(ids or {}),
                               **{columns[m.name]: m.func(ctx) for m in img_measures}}
    summary.update(summarise({columns[m.name]: np.array([r[columns[m.name]] for r in rows],
                                                        dtype=float) for m in described},
                             axial={columns[m.name] for m in described if m.axial}))
    return summary


def result_tables(obj_rows: list[dict], summary_rows: list[dict],
                  obj_measures: Sequence[Measurement], columns: dict[str, str],
                  id_cols: Sequence[str]) -> tuple[Table, Table]:
    """Build the per-object and the summary table from their rows (id columns as integers)."""
    obj_table = _table(obj_rows, [*id_cols, *(columns[m.name] for m in obj_measures)],
                       [*id_cols, *(c for c in columns.values() if c == "touches_border")])
    summary_table = _table(summary_rows, list(summary_rows[0]), ["z"] if "z" in id_cols else [])
    return obj_table, summary_table


def measure(labels: np.ndarray, spacing: Sequence[float] | None = None, kind: str = "shapes",
            **kwargs: Any) -> MeasureResult:
    """Run :func:`measure_iter` to the end and return its result."""
    return drain(measure_iter(labels, spacing, kind, **kwargs))


__all__ = [
    "KINDS", "MEASUREMENTS", "Kind", "MeasureResult", "Measurement", "analysis_options",
    "check_image", "get_kind", "list_columns",
    "measure", "measure_iter", "measurements", "object_row", "result_tables", "summary_row",
]
