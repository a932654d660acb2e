"""Turn a mask or a label image into objects: connected components, minimum size, crops.

Label values are never used as array indices: images holding a few huge ids (``10**8``,
``2**31``) are compacted with :func:`numpy.unique` first, so memory follows the number of
objects, not the largest id.
"""

from __future__ import annotations

import warnings
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
        Label value of the object in the (possibly split) label image; original ids are kept.
    mask : numpy.ndarray
        Boolean crop with a one-pixel background border on every side.
    offset : tuple of int
        Image index of ``mask[0, 0(, 0)]`` (can be -1 because of the border).
    spacing : tuple of float
        Pixel size per axis (µm, or 1 when the image is uncalibrated).
    touches_border : bool
        True when the object reaches the edge of the image (its shape is cut).
    """

    label: int
    mask: np.ndarray
    offset: tuple[int, ...]
    spacing: tuple[float, ...]
    touches_border: bool = False

    def coords_um(self) -> np.ndarray:
        """Physical coordinates of the object's pixels, one row per pixel."""
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


#: a label image with at most this many values may be a multi-class prediction
CLASS_LIKE_VALUES = 16


def warn_if_classes(labels: np.ndarray, connectivity: int) -> None:
    """Warn when a few label values each hold many separate pieces: classes, not objects."""
    values = np.unique(labels)
    values = values[values != 0]
    if len(values) > CLASS_LIKE_VALUES:
        return
    pieces = int(cc_label(labels > 0, background=0,
                          connectivity=min(max(connectivity, 1), labels.ndim)).max())
    if pieces >= 2 * len(values):
        warnings.warn(f"the label image has {len(values)} values but {pieces} separate pieces: "
                      "the values look like classes of a prediction, each measured as one "
                      "object; measure one class (--class N, or 'class' in the widget) to get "
                      "its pieces as objects, or --objects labels to keep this", UserWarning,
                      stacklevel=4)


def compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber labels 1..n in increasing order: ``(compact, ids)``.

    ``ids[k]`` is the original value of compact label ``k`` (``ids[0] == 0``).
    """
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if ids[0] != 0:  # no background: shift so that 0 stays background
        ids = np.concatenate([[0], ids])
        inverse = inverse + 1
    dtype = np.int32 if len(ids) < 2**31 else np.int64
    return inverse.astype(dtype, copy=False), ids.astype(np.int64)


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
        ids, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
        small = (sizes < min_size) & (ids != 0)
        labels = np.where(small[inverse.reshape(labels.shape)], 0, labels)
    return labels


def iter_regions(labels: np.ndarray, spacing: Sequence[float]) -> list[Region]:
    """One :class:`Region` per label value present, in increasing label order."""
    spacing = check_spacing(spacing, labels.ndim)
    packed, ids = compact(labels)
    regions = []
    for value, sl in enumerate(ndi.find_objects(packed), start=1):
        if sl is None:
            continue
        start = tuple(s.start for s in sl)
        border = any(s.start == 0 or s.stop == n for s, n in zip(sl, labels.shape, strict=True))
        crop = np.pad(packed[sl] == value, 1)
        regions.append(Region(int(ids[value]), crop, tuple(s - 1 for s in start), spacing, border))
    return regions
