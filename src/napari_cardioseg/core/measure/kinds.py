"""The registry of measurement kinds: what each analysis builds from the objects of an image.

A :class:`Kind` says how the objects of one image (or of one slice of a stack) become the
items its per-object measures take and the context its per-image measures take, and what its
defaults are. :func:`~napari_cardioseg.core.measure.measure_iter` only looks kinds up here.
Adding a kind = one module of measure functions, its rows in ``registry.MEASUREMENTS`` and one
entry in :data:`KINDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import shapes, zdisk
from .objects import Region


@dataclass(frozen=True)
class Options:
    """Options of the analyses, in the image's unit (µm, or px when uncalibrated).

    Attributes
    ----------
    period_range : (float, float)
        Shortest and longest sarcomere length searched.
    min_length : float
        Z-disk objects shorter than this (skeleton length) are not Z-disks.
    """

    period_range: tuple[float, float]
    min_length: float


@dataclass
class Plane:
    """One image (or one slice of a stack) as handed to a kind's ``build``."""

    regions: list[Region]
    labels: np.ndarray
    spacing: tuple[float, ...]
    z: int
    options: Options
    image: np.ndarray | None = None
    cell_mask: np.ndarray | None = None


@dataclass(frozen=True)
class Kind:
    """One analysis.

    Attributes
    ----------
    name, description : str
        Registry key and one line for help texts.
    per_slice : bool
        A 3D stack is measured slice by slice (2D measures).
    uses_image : bool
        Accepts an intensity image and a cell mask.
    build : callable
        ``build(plane) -> (items, context)``: the objects kept (those dropped are set to 0 in
        ``plane.labels``) and the per-image context.
    min_size : callable
        ``min_size(spacing, calibrated) -> int``: default minimum object size in pixels.
    context : callable, optional
        ``context(sizes, shape, spacing)``: the per-image context from the object sizes alone
        (pixel count × pixel size, µm³ or µm²). Given for kinds whose per-object values
        depend on the object alone; those kinds can be measured blockwise, one object crop at
        a time (:mod:`napari_cardioseg.core.measure_blockwise`).
    """

    name: str
    description: str
    per_slice: bool
    uses_image: bool
    build: Callable[[Plane], tuple[list[Any], Any]]
    min_size: Callable[[tuple[float, ...], bool], int]
    context: Callable[[list[float], tuple[int, ...], tuple[float, ...]], Any] | None = None


#: smallest object kept by default: volume (µm³) in 3D, area (µm²) in 2D, about a 0.2 µm sphere
MIN_PHYSICAL_SIZE = {3: 0.004, 2: 0.03}
#: the same when the image has no pixel size, in voxels / pixels (3 per axis)
MIN_PIXELS_UNCALIBRATED = {3: 27, 2: 9}


def _shapes_min_size(spacing: tuple[float, ...], calibrated: bool) -> int:
    if not calibrated:
        return MIN_PIXELS_UNCALIBRATED[len(spacing)]
    return max(1, math.ceil(MIN_PHYSICAL_SIZE[len(spacing)] / float(np.prod(spacing)) - 1e-9))


def _shapes_build(plane: Plane) -> tuple[list[Any], Any]:
    items = [shapes.ShapeObject(r) for r in plane.regions]
    return items, shapes.ShapeImage([o.size for o in items], plane.labels.shape, plane.spacing)


def _zdisk_build(plane: Plane) -> tuple[list[Any], Any]:
    items = [zdisk.ZdiskObject(r, plane.z) for r in plane.regions]
    kept = [o for o in items if o.length >= plane.options.min_length]
    segmented = plane.labels > 0  # fragments too: they are part of the striation pattern
    if len(kept) < len(items):
        keep = np.isin(plane.labels, [o.region.label for o in kept])
        plane.labels[~keep] = 0
    ctx = zdisk.ZdiskSlice(
        kept, labels=plane.labels, spacing=(plane.spacing[-2], plane.spacing[-1]), z=plane.z,
        image=plane.image,
        cell_mask=plane.cell_mask, period_range=plane.options.period_range, segmented=segmented,
    )
    return kept, ctx


KINDS: dict[str, Kind] = {
    "zdisk": Kind("zdisk", "Z-disks in 2D images or per slice: length, width, orientation, "
                  "sarcomere length (with an image: Fourier period; with a cell mask: cell "
                  "features)", per_slice=True, uses_image=True, build=_zdisk_build,
                  min_size=lambda spacing, calibrated: 0),
    "shapes": Kind("shapes", "2D/3D object shapes: size, surface, sphericity/circularity, "
                   "solidity, elongation, Feret diameter", per_slice=False, uses_image=False,
                   build=_shapes_build, min_size=_shapes_min_size, context=shapes.ShapeImage),
}

#: default options when the image is calibrated (µm) and when it is not (px)
DEFAULT_OPTIONS = {True: Options((1.0, 4.0), 0.3), False: Options((5.0, 50.0), 3.0)}
