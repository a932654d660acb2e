"""The columns of the measurement tables: name, unit, description and the function behind each.

Names carry their unit for a calibrated image (``length_um``, ``volume_um3``,
``density_per_um2``); when the image has no pixel size the same columns are named and labelled
in pixels (``length_px``, ``volume_px3``, ``density_per_px2``), so a number is never reported
in µm without a pixel size.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from . import cell, shapes, zdisk


def column_name(name: str, calibrated: bool) -> str:
    """Return a calibrated column name, renamed to pixels when the image is uncalibrated."""
    return name if calibrated else re.sub(r"_um(\d?)$", r"_px\1", name)


def column_text(text: str, calibrated: bool) -> str:
    """Return a unit or description, with µm replaced by px when the image is uncalibrated."""
    return text if calibrated else text.replace("µm", "px")


@dataclass(frozen=True)
class Measurement:
    """One table column: ``func(obj_or_image) -> value`` in ``unit`` (µm-based when calibrated).

    ``kind`` is the analysis that uses it, ``level`` whether ``func`` takes one object or one
    image (slice), ``ndim`` the image dimensionalities it applies to, ``requires`` an optional
    input it needs (``"cell_mask"``), ``summarise`` whether the summary gets its mean, median
    and standard deviation, ``axial`` whether its values are orientations in [0, 180) (their
    statistics are circular: :func:`.summary.describe_axial`).
    """

    name: str
    unit: str
    description: str
    func: Callable[[Any], Any]
    kind: str
    level: str
    ndim: tuple[int, ...] = (2, 3)
    requires: str = ""
    summarise: bool = True
    axial: bool = False

    def column(self, calibrated: bool = True) -> str:
        """Return the column name for a calibrated or an uncalibrated image."""
        return column_name(self.name, calibrated)

    def unit_for(self, calibrated: bool = True) -> str:
        """Return the unit for a calibrated or an uncalibrated image."""
        return column_text(self.unit, calibrated)

    def description_for(self, calibrated: bool = True) -> str:
        """Return the description for a calibrated or an uncalibrated image."""
        return column_text(self.description, calibrated)


def _m(name: str, unit: str, func: Callable, kind: str, level: str,
       ndim: tuple[int, ...] = (2, 3), description: str | None = None, **kw: Any) -> Measurement:
    # The first docstring line of a measurement function is its column description (a noun
    # phrase, hence the few `noqa: D401` on them).
    text = description or (func.__doc__ or "").strip().splitlines()[0]
    return Measurement(name, unit, text, func, kind, level, ndim, **kw)


def _axis_measures(ndim: int) -> list[Measurement]:
    out = []
    for i, ax in enumerate("zyx"[-ndim:]):
        out.append(_m(f"centroid_{ax}_um", "µm", partial(shapes.centroid, axis=i), "shapes",
                      "object", (ndim,), f"centroid {ax} (µm from the image origin)",
                      summarise=False))
    for i, ax in enumerate("zyx"[-ndim:]):
        out += [
            _m(f"bbox_{ax}0_um", "µm", partial(shapes.bbox_start, axis=i), "shapes", "object",
               (ndim,), f"bounding box lower edge along {ax} (µm)", summarise=False),
            _m(f"bbox_{ax}1_um", "µm", partial(shapes.bbox_stop, axis=i), "shapes", "object",
               (ndim,), f"bounding box upper edge along {ax} (µm)", summarise=False),
        ]
    return out


MEASUREMENTS: tuple[Measurement, ...] = (
    _m("length_um", "µm", zdisk.length, "zdisk", "object"),
    _m("width_um", "µm", zdisk.width, "zdisk", "object"),
    _m("orientation_deg", "°", zdisk.orientation, "zdisk", "object", axial=True),
    _m("orientation_rel_deg", "°", zdisk.relative_orientation, "zdisk", "object"),
    _m("straightness", "", zdisk.straightness, "zdisk", "object"),
    _m("area_um2", "µm²", zdisk.area, "zdisk", "object"),
    _m("centroid_y_um", "µm", zdisk.centroid_y, "zdisk", "object", summarise=False),
    _m("centroid_x_um", "µm", zdisk.centroid_x, "zdisk", "object", summarise=False),
    _m("touches_border", "0/1", zdisk.touches_border, "zdisk", "object", summarise=False),
    _m("count", "", zdisk.count, "zdisk", "image"),
    _m("density_per_um2", "1/µm²", zdisk.density, "zdisk", "image"),
    _m("area_fraction", "", zdisk.area_fraction, "zdisk", "image"),
    _m("zdisk_orientation_deg", "°", zdisk.dominant_orientation, "zdisk", "image"),
    _m("myofibril_axis_deg", "°", zdisk.myofibril_axis, "zdisk", "image"),
    _m("order_parameter", "", zdisk.order_parameter, "zdisk", "image"),
    _m("sarcomere_length_spacing_um", "µm", zdisk.sarcomere_length_spacing, "zdisk", "image"),
    _m("sarcomere_length_fft_um", "µm", zdisk.sarcomere_length_fft, "zdisk", "image"),
    _m("sarcomere_note", "text", zdisk.sarcomere_note, "zdisk", "image"),
    _m("cell_area_um2", "µm²", cell.cell_area, "zdisk", "image", requires="cell_mask"),
    _m("cell_aspect_ratio", "", cell.cell_aspect_ratio, "zdisk", "image", requires="cell_mask"),
    _m("max_cv", "", cell.max_cv, "zdisk", "image", requires="cell_mask"),
    _m("peak_height", "", cell.peak_height, "zdisk", "image", requires="cell_mask"),
    _m("peak_distance_um", "µm", cell.peak_distance, "zdisk", "image", requires="cell_mask"),
    _m("volume_um3", "µm³", shapes.volume, "shapes", "object", (3,)),
    _m("surface_area_um2", "µm²", shapes.surface_area, "shapes", "object", (3,)),
    _m("sa_to_volume_per_um", "1/µm", shapes.boundary_ratio, "shapes", "object", (3,)),
    _m("sphericity", "", shapes.sphericity, "shapes", "object", (3,)),
    _m("compactness", "", shapes.compactness, "shapes", "object", (3,)),
    _m("area_um2", "µm²", shapes.area, "shapes", "object", (2,)),
    _m("perimeter_um", "µm", shapes.perimeter, "shapes", "object", (2,)),
    _m("perimeter_to_area_per_um", "1/µm", shapes.boundary_ratio, "shapes", "object", (2,)),
    _m("circularity", "", shapes.circularity, "shapes", "object", (2,)),
    _m("solidity", "", shapes.solidity, "shapes", "object"),
    _m("elongation", "", shapes.elongation, "shapes", "object"),
    _m("flatness", "", shapes.flatness, "shapes", "object", (3,)),
    _m("feret_max_um", "µm", shapes.feret_max, "shapes", "object"),
    *_axis_measures(3),
    *_axis_measures(2),
    _m("touches_border", "0/1", shapes.touches_border, "shapes", "object", summarise=False),
    _m("shape_note", "text", shapes.shape_note, "shapes", "object", summarise=False),
    _m("count", "", shapes.count, "shapes", "image"),
    _m("total_volume_um3", "µm³", shapes.total_size, "shapes", "image", (3,)),
    _m("volume_fraction", "", shapes.size_fraction, "shapes", "image", (3,)),
    _m("density_per_um3", "1/µm³", shapes.number_density, "shapes", "image", (3,)),
    _m("total_area_um2", "µm²", shapes.total_size, "shapes", "image", (2,)),
    _m("area_fraction", "", shapes.size_fraction, "shapes", "image", (2,)),
    _m("density_per_um2", "1/µm²", shapes.number_density, "shapes", "image", (2,)),
)


def measurements(kind: str, level: str, ndim: int, available: tuple[str, ...] = ("cell_mask",)
                 ) -> list[Measurement]:
    """Return the registry entries of an analysis ``kind`` at ``level`` for ``ndim``-D objects.

    ``level`` is ``"object"`` or ``"image"``; entries that require an input not in ``available``
    are left out.
    """
    return [m for m in MEASUREMENTS if m.kind == kind and m.level == level and ndim in m.ndim
            and (not m.requires or m.requires in available)]
