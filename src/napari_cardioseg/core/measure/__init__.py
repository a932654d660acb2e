"""Measurements in physical units: one registry, and the generator that fills the tables.

Every column of the per-object and summary tables comes from :data:`MEASUREMENTS`, a list of
:class:`Measurement` (name with unit suffix, unit, description, function). ``kind`` says which
analysis uses it (``zdisk``, ``shapes``, or ``cell`` = Z-disk analysis with a cell mask),
``level`` whether the function takes one object or one image (slice).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..errors import CardiosegError
from ..progress import drain
from ..table import Table
from ..validate import check_labels, check_spacing
from . import cell, shapes, zdisk
from .objects import Region, iter_regions, resolve_mode, split_objects
from .summary import summarise

KINDS = ("zdisk", "shapes")


@dataclass(frozen=True)
class Measurement:
    """One table column: ``func(obj_or_image) -> float`` in ``unit``."""

    name: str
    unit: str
    description: str
    func: Callable[[Any], float]
    kind: str
    level: str
    ndim: tuple[int, ...] = (2, 3)


def _m(name: str, unit: str, func: Callable, kind: str, level: str,
       ndim: tuple[int, ...] = (2, 3), description: str | None = None) -> Measurement:
    text = description or (func.__doc__ or "").strip().splitlines()[0]
    return Measurement(name, unit, text, func, kind, level, ndim)


def _axis_measures(ndim: int) -> list[Measurement]:
    out = []
    for i, ax in enumerate("zyx"[-ndim:]):
        out.append(_m(f"centroid_{ax}_um", "µm", partial(shapes.centroid, axis=i), "shapes",
                      "object", (ndim,), f"centroid {ax} (µm from the image origin)"))
    for i, ax in enumerate("zyx"[-ndim:]):
        out += [
            _m(f"bbox_{ax}0_um", "µm", partial(shapes.bbox_start, axis=i), "shapes", "object",
               (ndim,), f"bounding box lower edge along {ax} (µm)"),
            _m(f"bbox_{ax}1_um", "µm", partial(shapes.bbox_stop, axis=i), "shapes", "object",
               (ndim,), f"bounding box upper edge along {ax} (µm)"),
        ]
    return out


MEASUREMENTS: tuple[Measurement, ...] = (
    _m("length_um", "µm", zdisk.length, "zdisk", "object"),
    _m("width_um", "µm", zdisk.width, "zdisk", "object"),
    _m("orientation_deg", "°", zdisk.orientation, "zdisk", "object"),
    _m("orientation_rel_deg", "°", zdisk.relative_orientation, "zdisk", "object"),
    _m("straightness", "", zdisk.straightness, "zdisk", "object"),
    _m("area_um2", "µm²", zdisk.area, "zdisk", "object"),
    _m("centroid_y_um", "µm", zdisk.centroid_y, "zdisk", "object"),
    _m("centroid_x_um", "µm", zdisk.centroid_x, "zdisk", "object"),
    _m("count", "", zdisk.count, "zdisk", "image"),
    _m("density_per_um2", "1/µm²", zdisk.density, "zdisk", "image"),
    _m("area_fraction", "", zdisk.area_fraction, "zdisk", "image"),
    _m("zdisk_orientation_deg", "°", zdisk.dominant_orientation, "zdisk", "image"),
    _m("myofibril_axis_deg", "°", zdisk.myofibril_axis, "zdisk", "image"),
    _m("order_parameter", "", zdisk.order_parameter, "zdisk", "image"),
    _m("sarcomere_length_spacing_um", "µm", zdisk.sarcomere_length_spacing, "zdisk", "image"),
    _m("sarcomere_length_fft_um", "µm", zdisk.sarcomere_length_fft, "zdisk", "image"),
    _m("cell_area_um2", "µm²", cell.cell_area, "cell", "image"),
    _m("cell_aspect_ratio", "", cell.cell_aspect_ratio, "cell", "image"),
    _m("max_cv", "", cell.max_cv, "cell", "image"),
    _m("peak_height", "", cell.peak_height, "cell", "image"),
    _m("peak_distance_um", "µm", cell.peak_distance, "cell", "image"),
    _m("volume_um3", "µm³", shapes.volume, "shapes", "object", (3,)),
    _m("surface_area_um2", "µm²", shapes.surface_area, "shapes", "object", (3,)),
    _m("sa_to_volume_per_um", "1/µm", shapes.boundary_ratio, "shapes", "object", (3,)),
    _m("sphericity", "", shapes.sphericity, "shapes", "object", (3,)),
    _m("compactness", "", shapes.compactness, "shapes", "object", (3,)),
    _m("area_um2", "µm²", shapes.area, "shapes", "object", (2,)),
    _m("perimeter_um", "µm", shapes.perimeter, "shapes", "object", (2,)),
    _m("perimeter_to_area_per_um", "1/µm", shapes.boundary_ratio, "shapes", "object", (2,)),
    _m("circularity", "", shapes.circularity, "shapes", "object", (2,)),
    _m("elongation", "", shapes.elongation, "shapes", "object"),
    _m("flatness", "", shapes.flatness, "shapes", "object", (3,)),
    _m("feret_max_um", "µm", shapes.feret_max, "shapes", "object"),
    *_axis_measures(3),
    *_axis_measures(2),
    _m("count", "", shapes.count, "shapes", "image"),
    _m("total_volume_um3", "µm³", shapes.total_size, "shapes", "image", (3,)),
    _m("volume_fraction", "", shapes.size_fraction, "shapes", "image", (3,)),
    _m("density_per_um3", "1/µm³", shapes.number_density, "shapes", "image", (3,)),
    _m("total_area_um2", "µm²", shapes.total_size, "shapes", "image", (2,)),
    _m("area_fraction", "", shapes.size_fraction, "shapes", "image", (2,)),
    _m("density_per_um2", "1/µm²", shapes.number_density, "shapes", "image", (2,)),
)

#: per-object columns that locate an object rather than describe it (not summarised)
LOCATION_PREFIXES = ("centroid_", "bbox_")


def measurements(kind: str, level: str, ndim: int) -> list[Measurement]:
    """Registry entries for an analysis ``kind`` (``zdisk`` / ``shapes`` / ``cell``)."""
    return [m for m in MEASUREMENTS if m.kind == kind and m.level == level and ndim in m.ndim]


@dataclass
class Progress:
    """Progress token yielded while measuring."""

    done: int
    total: int
    message: str = ""


@dataclass
class MeasureResult:
    """Per-object table, summary table and the object label image that was measured."""

    objects: Table
    summary: Table
    labels: np.ndarray
    spacing: tuple[float, ...]
    kind: str


def _check_image(array: np.ndarray | None, shape: tuple[int, ...], what: str) -> np.ndarray | None:
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


def _planes(labels: np.ndarray, kind: str) -> list[tuple[int, Any]]:
    """``(z, index)`` of each part measured on its own: Z-disk stacks slice by slice."""
    if kind == "zdisk" and labels.ndim == 3:
        return [(z, np.s_[z]) for z in range(labels.shape[0])]
    return [(0, np.s_[...])]


def _one_class(labels: np.ndarray, value: int, mode: str) -> tuple[np.ndarray, str]:
    """The mask of one class and the object mode for it (always connected components)."""
    if mode not in ("auto", "components"):
        raise CardiosegError(f"one class is split into connected components; objects mode {mode!r} "
                             "does not apply to it")
    mask = labels == value
    if value <= 0 or not mask.any():
        present = [int(v) for v in np.unique(labels) if v > 0][:20]
        raise CardiosegError(f"class {value} is not in the labels; they hold {present or 'no objects'}")
    return mask.astype(np.uint8), "components"


def measure_iter(
    labels: np.ndarray,
    spacing: Sequence[float],
    kind: str = "shapes",
    image: np.ndarray | None = None,
    cell_mask: np.ndarray | None = None,
    mode: str = "auto",
    connectivity: int | None = None,
    min_size: int = 0,
    period_range: tuple[float, float] = (1.0, 4.0),
    class_value: int | None = None,
) -> Generator[Progress, None, MeasureResult]:
    """Measure every object; yields :class:`Progress`, returns a :class:`MeasureResult`.

    Parameters
    ----------
    labels : numpy.ndarray
        Mask or label image, ``YX`` or ``ZYX`` (Z-disk stacks are measured slice by slice).
    spacing : sequence of float
        Pixel size in µm per axis.
    kind : {"zdisk", "shapes"}
        Which measurements.
    image, cell_mask : numpy.ndarray, optional
        Intensity image (for the Fourier period and the periodicity profile) and cell mask
        (restricts the image-level Z-disk measures and adds the cell features); Z-disks only.
    mode, connectivity, min_size
        How objects are formed, see :func:`objects.split_objects`; ``connectivity`` defaults
        to the full neighbourhood (8 in 2D, 26 in 3D).
    period_range : (float, float)
        Shortest and longest sarcomere length searched (µm).
    class_value : int, optional
        Measure only this class of a semantic (multi-class) label image, split into connected
        components: e.g. 2 for the second class of a prediction.
    """
    if kind not in KINDS:
        raise CardiosegError(f"unknown measurement kind {kind!r}; choose one of {', '.join(KINDS)}")
    labels = check_labels(labels)
    spacing = check_spacing(spacing, labels.ndim)
    if class_value is not None:
        labels, mode = _one_class(labels, int(class_value), mode)
    if kind == "shapes" and (image is not None or cell_mask is not None):
        raise CardiosegError("an intensity image or cell mask is only used for Z-disk measurements")
    if not 0 < period_range[0] < period_range[1]:
        raise CardiosegError(f"the period range must be 0 < min < max, got {period_range}")
    image = _check_image(image, labels.shape, "intensity image")
    cell_mask = _check_image(cell_mask, labels.shape, "cell mask")
    if cell_mask is not None:
        cell_mask = cell_mask > 0
        if not cell_mask.any():
            raise CardiosegError("the cell mask is empty")
    planes = _planes(labels, kind)
    stack = len(planes) > 1
    ndim = labels[planes[0][1]].ndim
    mode = resolve_mode(labels, mode)
    objects_image = np.zeros_like(labels)
    found: list[tuple[int, Any, list[Region]]] = []
    used = 0
    for z, idx in planes:
        plane_objects = split_objects(labels[idx], mode, connectivity or ndim, min_size)
        if mode == "components" and stack:  # unique labels across the stack
            plane_objects = np.where(plane_objects > 0, plane_objects + used, 0)
            used = max(used, int(plane_objects.max()))
        objects_image[idx] = plane_objects
        found.append((z, idx, iter_regions(plane_objects, spacing[-ndim:])))
    total = sum(len(r) for _, _, r in found)
    yield Progress(0, total, f"measuring {total} objects")
    obj_rows, summary_rows, done = [], [], 0
    obj_measures = measurements(kind, "object", ndim)
    img_measures = measurements(kind, "image", ndim)
    if cell_mask is not None:
        img_measures += measurements("cell", "image", ndim)
    for z, idx, regions in found:
        if kind == "zdisk":
            items = [zdisk.ZdiskObject(r, z) for r in regions]
            ctx = zdisk.ZdiskSlice(
                items, labels=objects_image[idx], spacing=spacing[-2:], z=z,
                image=None if image is None else image[idx],
                cell_mask=None if cell_mask is None else cell_mask[idx], period_range=period_range,
            )
        else:
            items = [shapes.ShapeObject(r) for r in regions]
            ctx = shapes.ShapeImage(items, labels.shape, spacing)
        rows = []
        for item in items:
            row = {"label": item.region.label, **({"z": z} if stack else {})}
            row.update({m.name: m.func(item) for m in obj_measures})
            rows.append(row)
            done += 1
            if done % 50 == 0:
                yield Progress(done, total)
        obj_rows += rows
        described = [m.name for m in obj_measures if not m.name.startswith(LOCATION_PREFIXES)]
        summary = {**({"z": z} if stack else {}), **{m.name: m.func(ctx) for m in img_measures}}
        summary.update(summarise({n: np.array([r[n] for r in rows], dtype=float)
                                  for n in described}))
        summary_rows.append(summary)
    yield Progress(total, total, "done")
    id_cols = ["label", "z"] if stack else ["label"]
    obj_table = Table.from_rows(obj_rows, id_cols + [m.name for m in obj_measures])
    for col in id_cols:
        obj_table.columns[col] = obj_table.columns[col].astype(np.int64)
    summary_table = Table.from_rows(summary_rows, list(summary_rows[0]))
    if stack:
        summary_table.columns["z"] = summary_table.columns["z"].astype(np.int64)
    return MeasureResult(obj_table, summary_table, objects_image, spacing, kind)


def measure(labels: np.ndarray, spacing: Sequence[float], kind: str = "shapes",
            **kwargs: Any) -> MeasureResult:
    """Run :func:`measure_iter` to the end and return its result."""
    return drain(measure_iter(labels, spacing, kind, **kwargs))


__all__ = [
    "KINDS", "MEASUREMENTS", "MeasureResult", "Measurement", "Progress", "measure",
    "measure_iter", "measurements",
]
