"""A simulated user who paints strokes from a known mask, for benchmarks and tests.

Scribble convention (CONTRIBUTING.md): 0 unpainted, 1 background, 2 object. First strokes are short
pieces of the objects' skeletons and short straight lines in the background; corrections are
skeleton pieces of the largest wrong regions of a prediction (false positives painted as
background, false negatives as object), as a person correcting a preview would paint them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import disk, skeletonize


def _piece(points: np.ndarray, centre: np.ndarray, length: int) -> np.ndarray:
    """Return the ``points`` within ``length // 2`` (chessboard distance) of ``centre``."""
    return points[np.abs(points - centre).max(axis=1) <= length // 2]


def first_strokes(mask: np.ndarray, rng: np.random.Generator, per_class: int = 6,
                  length: int = 15) -> np.ndarray:
    """Paint the first scribbles of one 2D slice.

    ``per_class`` skeleton pieces inside objects (2) and short background lines (1), each about
    ``length`` pixels long and kept off the object borders.
    """
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, np.uint8)
    skeleton = np.argwhere(skeletonize(ndi.binary_erosion(mask, disk(2).astype(bool))))
    if len(skeleton):
        for centre in skeleton[rng.choice(len(skeleton), min(per_class, len(skeleton)),
                                          replace=False)]:
            out[tuple(_piece(skeleton, centre, length).T)] = 2
    inside = ndi.binary_erosion(~mask, disk(3).astype(bool))
    free = np.argwhere(inside)
    if len(free):
        t = np.arange(-(length // 2), length // 2 + 1)
        for y, x in free[rng.choice(len(free), min(per_class, len(free)), replace=False)]:
            angle = rng.uniform(0, np.pi)
            ys = np.clip(np.round(y + t * np.sin(angle)).astype(int), 0, mask.shape[0] - 1)
            xs = np.clip(np.round(x + t * np.cos(angle)).astype(int), 0, mask.shape[1] - 1)
            keep = inside[ys, xs]
            out[ys[keep], xs[keep]] = 1
    return out


def correction_strokes(pred: np.ndarray, truth: np.ndarray, painted: np.ndarray,
                       rng: np.random.Generator, per_kind: int = 4, length: int = 15,
                       min_size: int = 20, margin: int = 2) -> np.ndarray:
    """Paint new strokes on the largest wrong regions of a 2D prediction.

    A person paints corrections where an error is plain to see, not along a sliver a pixel or
    two wide where prediction and truth disagree about an edge; so the wrong regions are first
    eroded by ``margin`` pixels, and their size, ranking and strokes refer to what is left.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        Predicted and true 0/1 masks of one slice.
    painted : numpy.ndarray
        The slice's scribbles so far; only its unpainted (0) pixels receive new strokes.
    rng : numpy.random.Generator
        Picks the stroke centre on each region's skeleton.
    per_kind : int
        Regions to correct of each kind: the largest false-positive components (painted 1,
        background) and the largest false-negative components (painted 2, object).
    length : int
        Stroke length in pixels.
    min_size : int
        Wrong regions smaller than this many pixels are ignored (a person would not see them).
    margin : int
        Erosion of the wrong regions before anything else, in pixels; 0 keeps every sliver.

    Returns
    -------
    numpy.ndarray
        ``uint8`` new strokes only (0 elsewhere).
    """
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    out = np.zeros(pred.shape, np.uint8)
    for wrong, value in ((pred & ~truth, 1), (truth & ~pred, 2)):
        if margin > 0:
            wrong = ndi.binary_erosion(wrong, iterations=margin)
        labels, n = ndi.label(wrong)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        order = [i + 1 for i in np.argsort(-sizes, kind="stable") if sizes[i] >= min_size]
        for component in order[:per_kind]:
            region = labels == component
            points = np.argwhere(skeletonize(region))
            if len(points) == 0:
                points = np.argwhere(region)
            centre = points[rng.integers(len(points))]
            piece = _piece(points, centre, length)
            free = painted[tuple(piece.T)] == 0
            out[tuple(piece[free].T)] = value
    return out
