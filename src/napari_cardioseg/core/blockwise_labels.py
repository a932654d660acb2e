"""Connected-component (instance) labelling of a chunked label volume, block by block.

The same labels as :func:`skimage.measure.label` (``background=0``: connected voxels of one
non-zero value form one object, numbered in the raster order of their first voxel), computed
without holding the volume: every block is labelled on
its own with provisional numbers written to the output; pairs of provisional labels that touch
across a block border (and carry the same input value) are collected; the connected components of
that small graph (:func:`scipy.sparse.csgraph.connected_components`) give the final consecutive
numbers (ordered by each object's first voxel in raster order, as skimage numbers them), written
back block by block. Bounding boxes and voxel counts are gathered per block and merged, so each
object can then be measured from its box alone (:func:`object_crops`).
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import label as sk_label

from .errors import CardiosegError
from .grid import plan_blocks
from .progress import Progress


@dataclass
class Instances:
    """Result of :func:`label_blockwise`.

    Attributes
    ----------
    count : int
        Number of objects; labels are ``1..count`` in the output.
    boxes : numpy.ndarray
        ``(count, 2, ndim)`` int64: row ``i`` holds the start and stop of object ``i + 1``.
    sizes : numpy.ndarray
        ``(count,)`` int64: voxel count of object ``i + 1`` in row ``i``.
    """

    count: int
    boxes: np.ndarray
    sizes: np.ndarray

    def box(self, label: int) -> tuple[slice, ...]:
        """Return the bounding box of object ``label`` as slices."""
        start, stop = self.boxes[label - 1]
        return tuple(slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))


def _offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """Neighbour offsets up to ``connectivity`` orthogonal steps, one of each ± pair."""
    out = []
    for d in itertools.product((-1, 0, 1), repeat=ndim):
        if 0 < sum(map(abs, d)) <= connectivity and next(v for v in d if v) > 0:
            out.append(d)
    return out


def _touching_pairs(raw: np.ndarray, lab: np.ndarray, inner: tuple[slice, ...],
                    offsets: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Distinct ``(a, b)`` provisional labels of equal-valued neighbours, ``a`` in the core."""
    pairs = []
    for d in offsets:
        src, dst = [], []
        for s, step, n in zip(inner, d, lab.shape, strict=True):
            start, stop = max(s.start, -step), min(s.stop, n - step)
            src.append(slice(start, stop))
            dst.append(slice(start + step, stop + step))
        a, b = lab[tuple(src)], lab[tuple(dst)]
        hit = (a != b) & (a > 0) & (b > 0) & (raw[tuple(src)] == raw[tuple(dst)])
        if hit.any():
            pairs.append(np.stack([a[hit], b[hit]], axis=1))
    if not pairs:
        return np.zeros((0, 2), np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def label_blockwise(
    labels: Any,
    out: Any,
    *,
    block: int | Sequence[int],
    connectivity: int | None = None,
) -> Generator[Progress, None, Instances]:
    """Label the connected objects of ``labels`` into ``out``, one block at a time.

    Parameters
    ----------
    labels : array-like
        ``YX`` or ``ZYX`` integer (semantic) labels or mask, e.g. a zarr array; 0 is background.
    out : array-like
        Writable integer array of the same shape (e.g. a uint32 zarr array) for object labels.
    block : int or sequence of int
        Block shape (ideally the chunk shape of ``labels`` and ``out``).
    connectivity : int, optional
        Orthogonal steps to a neighbour, 1 to ``ndim`` (default ``ndim``: full), as in
        :func:`skimage.measure.label`.

    Returns
    -------
    Instances
        Object count and bounding boxes.
    """
    shape = tuple(labels.shape)
    ndim = len(shape)
    if ndim not in (2, 3) or tuple(out.shape) != shape:
        raise CardiosegError(f"need 2D/3D labels and an output of the same shape, got {shape} "
                             f"and {tuple(out.shape)}")
    if np.dtype(labels.dtype).kind not in "uib":
        raise CardiosegError(f"labels must be integers, got {labels.dtype}")
    connectivity = ndim if connectivity is None else int(connectivity)
    if not 1 <= connectivity <= ndim:
        raise CardiosegError(f"connectivity must be 1 to {ndim}, got {connectivity}")
    plan = plan_blocks(shape, block, 1)
    total = 3 * len(plan)
    yield Progress(0, total, "label", "labelling blocks")

    starts, stops, firsts, sizes, offset = [], [], [], [], 0
    for i, b in enumerate(plan):
        local = sk_label(np.asarray(labels[b.core]), background=0, connectivity=connectivity)
        count = int(local.max())
        origin = np.array([s.start for s in b.core])
        for box in ndimage.find_objects(local):
            starts.append(origin + [s.start for s in box])
            stops.append(origin + [s.stop for s in box])
        firsts.append(_first_voxels(local, count, origin, shape))
        sizes.append(np.bincount(local.ravel(), minlength=count + 1)[1:])
        local = local.astype(np.int64)
        local[local > 0] += offset
        out[b.core] = local
        offset += count
        yield Progress(i + 1, total, "label", "labelling blocks")

    offsets = _offsets(ndim, connectivity)
    edges = [np.zeros((0, 2), np.int64)]
    for i, b in enumerate(plan):
        edges.append(_touching_pairs(np.asarray(labels[b.region]), np.asarray(out[b.region]),
                                     b.inner, offsets))
        yield Progress(len(plan) + i + 1, total, "label", "merging across block borders")
    pairs = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
                       shape=(offset + 1, offset + 1))
    count, lut = connected_components(graph, directed=False)
    count -= 1  # node 0, the background, has no edges and is component 0
    # renumber the components by their first voxel in raster order, as skimage does
    first = np.full(count + 1, -1, np.int64)
    if count:
        first[1:] = np.iinfo(np.int64).max
        np.minimum.at(first, lut[1:], np.concatenate(firsts))
    rank = np.empty(count + 1, np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(count + 1)
    lut = rank[lut]

    for i, b in enumerate(plan):
        out[b.core] = lut[np.asarray(out[b.core])]
        yield Progress(2 * len(plan) + i + 1, total, "label", "numbering objects")

    boxes = np.zeros((count, 2, ndim), np.int64)
    voxels = np.zeros(count, np.int64)
    if count:
        final = lut[1:] - 1
        boxes[:, 0] = np.iinfo(np.int64).max
        np.minimum.at(boxes[:, 0], final, np.array(starts))
        np.maximum.at(boxes[:, 1], final, np.array(stops))
        np.add.at(voxels, final, np.concatenate(sizes))
    return Instances(count, boxes, voxels)


def _first_voxels(local: np.ndarray, count: int, origin: np.ndarray,
                  shape: tuple[int, ...]) -> np.ndarray:
    """Flat index in the whole volume of the first voxel (raster order) of local labels 1..count.

    Raster order inside a block is raster order in the volume, so the first occurrence of a
    label in the block's own scan is its smallest flat index in the volume.
    """
    if not count:
        return np.zeros(0, np.int64)
    flat = local.ravel()
    values, where = np.unique(flat, return_index=True)
    where = where[values > 0]
    coords = np.unravel_index(where, local.shape)
    return np.ravel_multi_index(tuple(c + o for c, o in zip(coords, origin, strict=True)),
                                shape).astype(np.int64)


def object_crops(instances: Any, found: Instances) -> Iterator[tuple[int, tuple[slice, ...],
                                                                     np.ndarray]]:
    """``(label, box, mask)`` per object, reading only its bounding box from ``instances``."""
    for label in range(1, found.count + 1):
        box = found.box(label)
        yield label, box, np.asarray(instances[box]) == label
