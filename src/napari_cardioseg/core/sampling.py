"""Class-balanced window sampling around labelled pixels (Žerovnik Mekuč et al. 2020, eq. 6); scribble checks.

Each window is placed around one labelled pixel. The class of that pixel is drawn first:
background (scribble value 1) with probability ``background_share`` (0.2 in eq. 6) and the
object classes sharing the rest equally (0.4 / 0.4 for two classes as in the paper).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np

from .errors import CardiosegError
from .validate import as_grey

# a model has at most this many classes (background included): predicted labels are uint8, and
# one stray scribble value must not ask for a head of millions of outputs
MAX_CLASSES = 256


class ScribbleIndex:
    """Labelled coordinates per scribble value over a list of arrays, cheap to re-read.

    The arrays may be painted into while training runs (a napari Labels layer's data):
    :meth:`maybe_refresh` re-indexes them at most every ``refresh_every`` seconds.

    Parameters
    ----------
    scribbles : sequence of numpy.ndarray
        Integer arrays (0 unlabelled, 1 background, 2.. classes).
    refresh_every : float
        Minimum seconds between two re-indexings in :meth:`maybe_refresh`.
    """

    def __init__(self, scribbles: Sequence[np.ndarray], refresh_every: float = 1.0) -> None:
        self.scribbles = list(scribbles)
        self.refresh_every = refresh_every
        self.flat: dict[int, list[np.ndarray]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read every array and index the labelled pixels by value."""
        flat: dict[int, list[np.ndarray]] = {}
        for i, array in enumerate(self.scribbles):
            values = np.asarray(array).ravel()
            idx = np.flatnonzero(values)
            labels = values[idx]
            for value in np.unique(labels):
                per_image = flat.setdefault(int(value), [np.empty(0, np.int64)] * len(self.scribbles))
                per_image[i] = idx[labels == value]
        self.flat = flat
        self._stamp = time.monotonic()

    def maybe_refresh(self) -> bool:
        """Re-index when ``refresh_every`` seconds have passed; True when it did."""
        if time.monotonic() - self._stamp < self.refresh_every:
            return False
        self.refresh()
        return True

    def counts(self) -> dict[int, int]:
        """Count the labelled pixels per scribble value."""
        return {v: int(sum(len(a) for a in per)) for v, per in sorted(self.flat.items())}

    def class_probabilities(self, background_share: float = 0.2) -> dict[int, float]:
        """Probability of drawing each painted value as a window's anchor class (eq. 6)."""
        values = sorted(self.flat)
        objects = [v for v in values if v != 1]
        if 1 not in values or not objects:
            return {v: 1.0 / len(values) for v in values}
        probs = {1: background_share}
        probs.update({v: (1.0 - background_share) / len(objects) for v in objects})
        return probs

    def sample(
        self, rng: np.random.Generator, background_share: float = 0.2
    ) -> tuple[int, tuple[int, ...]]:
        """One labelled pixel: ``(image index, coordinate)``, classes balanced per eq. 6."""
        probs = self.class_probabilities(background_share)
        values = list(probs)
        value = values[rng.choice(len(values), p=list(probs.values()))]
        per_image = self.flat[value]
        sizes = np.array([len(a) for a in per_image], dtype=float)
        image = int(rng.choice(len(per_image), p=sizes / sizes.sum()))
        flat_index = per_image[image][rng.integers(len(per_image[image]))]
        coord = np.unravel_index(flat_index, np.shape(self.scribbles[image]))
        return image, tuple(int(c) for c in coord)


def window_centre(
    point: Sequence[int], window: Sequence[int], rng: np.random.Generator
) -> tuple[int, ...]:
    """Pick a window centre near ``point`` so that the point falls in the window's central half."""
    return tuple(
        int(p + rng.integers(-(w // 4), w // 4 + 1)) for p, w in zip(point, window, strict=True)
    )


#: :func:`numpy.pad` modes that :func:`extract` accepts as ``fill``
PadMode = Literal["symmetric", "reflect", "edge", "wrap"]


def extract(
    array: np.ndarray, centre: Sequence[int], shape: Sequence[int], fill: PadMode | int = "symmetric"
) -> np.ndarray:
    """Copy the window of ``shape`` centred at ``centre``; outside the array, pad.

    Parameters
    ----------
    array : numpy.ndarray
        Source array (same number of axes as ``shape``).
    centre, shape : sequence of int
        Window centre and size per axis.
    fill : str or int
        ``"symmetric"`` mirrors the image at its borders (for intensities; the other
        :data:`PadMode` values are :func:`numpy.pad` modes too); an int pads with
        that constant (0 = unlabelled, for scribbles).
    """
    starts = [c - s // 2 for c, s in zip(centre, shape, strict=True)]
    lo = [max(a, 0) for a in starts]
    hi = [min(a + s, n) for a, s, n in zip(starts, shape, array.shape, strict=True)]
    if any(h <= low for low, h in zip(lo, hi, strict=True)):
        raise ValueError("window does not overlap the array")
    crop = np.asarray(array[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))])
    pad = [(a - s, s + w - b) for a, b, s, w in zip(lo, hi, starts, shape, strict=True)]
    if not any(p for pair in pad for p in pair):
        return crop.copy()
    if isinstance(fill, str):
        return np.pad(crop, pad, mode=fill)
    return np.pad(crop, pad, mode="constant", constant_values=fill)


def check_pairs(
    images: Sequence[np.ndarray], scribbles: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate image/scribble pairs; scribble arrays are kept as-is (they may be live)."""
    if len(images) == 0 or len(images) != len(scribbles):
        raise CardiosegError(
            f"need one scribble array per image, got {len(images)} images and "
            f"{len(scribbles)} scribble arrays"
        )
    checked = []
    for i, (image, scribble) in enumerate(zip(images, scribbles, strict=True)):
        image = as_grey(image, f"image {i + 1}")
        if np.shape(scribble) != image.shape:
            raise CardiosegError(
                f"scribbles {i + 1} have shape {tuple(np.shape(scribble))} but the image has "
                f"shape {image.shape}; paint the scribbles on a layer of the image's shape"
            )
        if np.dtype(scribble.dtype).kind not in "iub":
            raise CardiosegError(
                f"scribbles must be integer labels (0 unlabelled, 1 background, 2.. classes), "
                f"got dtype {scribble.dtype}"
            )
        if image.dtype.kind == "f" and not np.isfinite(image).all():
            raise CardiosegError(f"image {i + 1} contains NaN or infinite values")
        if np.dtype(scribble.dtype).kind == "i" and scribble.min() < 0:
            raise CardiosegError("scribbles contain negative values; use 0 for unlabelled")
        top = int(np.max(scribble)) if np.size(scribble) else 0
        if top > MAX_CLASSES:
            raise CardiosegError(
                f"scribbles {i + 1} contain the value {top}, beyond the {MAX_CLASSES} classes a "
                f"model can hold; use 0 unlabelled, 1 background, 2..{MAX_CLASSES} classes"
            )
        checked.append(image)
    return checked, list(scribbles)


def check_classes(counts: dict[int, int], n_classes: int, transfer_hint: bool) -> None:
    """Raise for empty scribbles, a single painted class or labels beyond the model."""
    if not counts:
        raise CardiosegError(
            "the scribbles are empty: paint background (label 1) and at least one class (label 2)"
        )
    if len(counts) < 2:
        (value,) = counts
        what = "background (label 1)" if value == 1 else f"label {value}"
        raise CardiosegError(
            f"only one class is painted ({what}); paint background (1) and at least one class (2..)"
        )
    top = max(counts)
    if top > MAX_CLASSES or n_classes > MAX_CLASSES:
        raise CardiosegError(
            f"scribble label {max(top, n_classes)} asks for more than the {MAX_CLASSES} classes a "
            "model can hold"
        )
    missing = sorted(set(range(2, top + 1)) - set(counts))
    if not transfer_hint and top == n_classes and missing:
        raise CardiosegError(
            f"scribble labels skip {', '.join(map(str, missing[:5]))}"
            f"{' ...' if len(missing) > 5 else ''}: classes must be consecutive (1 background, "
            f"2, 3, ...); relabel them, or a class that is never painted is never learned"
        )
    if top > n_classes:
        hint = " or ask for more classes (transfer learning)" if transfer_hint else ""
        raise CardiosegError(
            f"scribble label {top} is beyond the model's {n_classes} classes "
            f"(labels 1..{n_classes}); remove it{hint}"
        )
