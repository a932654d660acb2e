"""Turn a mask or a label image into objects: connected components, minimum size, crops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as cc_label

from ..errors import CardiosegError
from ..validate import check_labels, check_spacing

OBJECT_MODES = ("auto", "components", "labels")


@dataclass
class Region:
    """One object: a padded boolean crop and where it sits in the image.

    Attributes
    ----------
    label : int
        Label value of the object in the (possibly relabelled) label image.
    mask : numpy.ndarray
        Boolean crop with a one-pixel background border on every side.
    offset : tuple of int
        Image index of ``mask[0, 0(, 0)]`` (can be -1 because of the border).
    spacing : tuple of float
        Pixel size in µm per axis.
    """

    label: int
    mask: np.ndarray
    offset: tuple[int, ...]
    spacing: tuple[float, ...]

    def coords_um(self) -> np.ndarray:
        """Physical (µm) coordinates of the object's pixels, one row per pixel."""
        idx = np.argwhere(self.mask) + np.asarray(self.offset)
        return idx * np.asarray(self.spacing)


def resolve_mode(labels: np.ndarray, mode: str) -> str:
    """``components`` or ``labels``: ``auto`` splits a mask with one nonzero value only."""
    if mode not in OBJECT_MODES:
        raise CardiosegError(f"unknown object mode {mode!r}; choose one of {', '.join(OBJECT_MODES)}")
    if mode == "auto":
        top = labels.max()
        return "labels" if np.any((labels != 0) & (labels != top)) else "components"
    return mode


def split_objects(
    labels: np.ndarray,
    mode: str = "auto",
    connectivity: int = 1,
    min_size: int = 0,
) -> np.ndarray:
    """Return a label image with one value per object.

    Parameters
    ----------
    labels : numpy.ndarray
        Semantic mask (0 = background) or label image, 2D or 3D.
    mode : {"auto", "components", "labels"}
        ``components`` splits every nonzero value into connected components; ``labels`` keeps
        the values as they are; ``auto`` splits masks with a single nonzero value and keeps
        label images with several.
    connectivity : int
        1 = faces only (4/6-connected), up to ``ndim`` = corners too (8/26-connected).
    min_size : int
        Objects with fewer pixels are removed (set to 0).
    """
    labels = check_labels(labels)
    mode = resolve_mode(labels, mode)
    if not 1 <= connectivity <= labels.ndim:
        raise CardiosegError(f"connectivity must be 1..{labels.ndim} for a {labels.ndim}D image")
    if min_size < 0:
        raise CardiosegError(f"minimum size must be >= 0, got {min_size}")
    if mode == "components":
        labels = cc_label(labels, background=0, connectivity=connectivity).astype(np.int64)
    if min_size > 1 and labels.any():
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    return labels


def iter_regions(labels: np.ndarray, spacing: Sequence[float]) -> list[Region]:
    """One :class:`Region` per label value present, in increasing label order."""
    spacing = check_spacing(spacing, labels.ndim)
    regions = []
    for value, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        start = tuple(s.start for s in sl)
        crop = np.pad(labels[sl] == value, 1)
        regions.append(Region(value, crop, tuple(s - 1 for s in start), spacing))
    return regions
