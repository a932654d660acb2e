"""Where the tiles of a sliding-window prediction go: origins, blending weights, halos, sizes.

Pure geometry, no model: per axis, :func:`tile_axis` places the fewest tiles of at most the asked
size whose overlaps cover both cut edges' halos, and gives each tile its normalised raised-cosine
weights; :func:`plan_tiles` combines the axes (and the slices of a 2D net on a stack) into jobs.
See :mod:`.predict` for why the halo makes the result independent of the tile size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import CardiosegError
from .nets import receptive_field, size_multiple, spec_ndim

AUTO_TILE = {2: 512, 3: 96}  # least tile edge when ``tile=None`` (see auto_tile)
MAX_HALO = {2: 256, 3: 64}  # largest halo (px per side) used, for nets with global context
AUTO_STRETCH = 1.25  # automatic tiles may grow this much to save a tile along an axis


def reflect_index(index: np.ndarray, n: int) -> np.ndarray:
    """Map coordinates outside ``[0, n)`` back inside by mirror reflection (like ``np.pad``)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def _ramp(length: int, halo: int = 0) -> np.ndarray:
    """Weights over an overlap of ``length`` px seen from the tile that starts there.

    Zero on the first ``max(halo, length // 4)`` px (the part spoiled by the cut edge), a raised
    cosine, one on as many last px; ``r + r[::-1] == 1``.
    """
    halo = max(halo, length // 4)
    ramp = np.ones(length)
    if length == 0:
        return ramp
    ramp[:halo] = 0.0
    width = length - 2 * halo
    u = (np.arange(width) + 0.5) / width
    ramp[halo : length - halo] = 0.5 - 0.5 * np.cos(np.pi * u)
    return ramp


@dataclass
class TileAxis:
    """Tile origins along one axis and each tile's normalised blending weights (cropped to n)."""

    n: int
    tile: int
    origins: list[int]
    weights: list[np.ndarray]


def halo_overlap(halo: int, multiple: int) -> int:
    """Return the least overlap (px) of two tiles whose cut edges spoil ``halo`` px each.

    Both halos plus at least one stride to blend over, rounded up to the stride; 0 for no halo.
    """
    return 0 if halo <= 0 else math.ceil((2 * halo + multiple) / multiple) * multiple


def tile_axis(n: int, tile: int, overlap: float, multiple: int, halo: int = 0,
          stretch: float = 1.0) -> TileAxis:
    """Tile an axis of ``n`` px with the fewest tiles of at most ``tile`` px, then shrink them.

    ``tile`` is first grown to twice :func:`halo_overlap` when smaller. With ``stretch`` > 1,
    one tile fewer is used when its tiles need to grow by at most that factor (automatic tiles:
    a 1024 px axis with 1008 px tiles becomes one tile, not two of 640 px, 20 % less work). The
    tiles are made as small as possible (a multiple of the stride) while still covering the
    padded axis with at least the requested overlap (and the halos), and spread evenly: less
    computation than equal full-size tiles with the last one shifted back (e.g. 23% less for 1024²
    at 512/0.25).
    """
    padded = math.ceil(n / multiple) * multiple
    least = halo_overlap(halo, multiple)
    tile = min(max(math.ceil(tile / multiple) * multiple, 2 * least), padded)
    min_overlap = min(max(round(overlap * tile / multiple) * multiple, least), tile - multiple)
    count = 1 if tile == padded else math.ceil((padded - min_overlap) / (tile - min_overlap))
    if count > 1:
        fewer = math.ceil((padded + (count - 2) * min_overlap) / (count - 1) / multiple) * multiple
        if fewer <= stretch * tile:
            count, tile = count - 1, min(fewer, padded)
    if count > 1:
        needed = (padded + (count - 1) * min_overlap) / count
        tile = min(tile, math.ceil(needed / multiple) * multiple)
    step = (padded - tile) / max(count - 1, 1)
    origins = [int(i * step // multiple) * multiple for i in range(count - 1)] + [padded - tile]
    raw = []
    for i, a in enumerate(origins):
        w = np.ones(tile)
        if i > 0:
            left = origins[i - 1] + tile - a
            w[:left] = _ramp(left, halo)
        if i + 1 < len(origins):
            right = a + tile - origins[i + 1]
            w[tile - right :] = np.minimum(w[tile - right :], _ramp(right, halo)[::-1])
        raw.append(w[: n - a])
    total = np.zeros(n)
    for a, w in zip(origins, raw, strict=True):
        total[a : a + w.size] += w
    weights = [(w / total[a : a + w.size]).astype(np.float32)
               for a, w in zip(origins, raw, strict=True)]
    return TileAxis(n, tile, origins, weights)


def plan_tiles(shape: tuple[int, ...], spec: dict, tile: Sequence[int], overlap: float,
          halo: Sequence[int], stretch: float = 1.0,
          ) -> tuple[list[TileAxis], list[tuple[int | None, tuple[int, ...]]]]:
    """Per-axis tilings and the list of ``(slice or None, tile index per axis)`` jobs."""
    ndim = spec_ndim(spec)
    axes = [tile_axis(n, t, overlap, size_multiple(spec), h, stretch)
            for n, t, h in zip(shape[-ndim:], tile, halo, strict=True)]
    slices: list[int | None] = list(range(shape[0])) if len(shape) > ndim else [None]
    jobs = [(z, idx) for z in slices
            for idx in itertools.product(*(range(len(ax.origins)) for ax in axes))]
    return axes, jobs


def default_halo(field: Sequence[int]) -> tuple[int, ...]:
    """Return the halo (px per side and axis) of a net with receptive field ``field``.

    Half of the field, at most :data:`MAX_HALO`.
    """
    return tuple(min(int(f) // 2, MAX_HALO[len(field)]) for f in field)


def resolve_halo(halo: int | Sequence[int] | None, spec: dict,
                field: Sequence[int] | None) -> tuple[int, ...]:
    """Return the halo asked for (one per spatial axis, checked), or the net's :func:`default_halo`."""
    ndim = spec_ndim(spec)
    if halo is None:
        return default_halo(field if field is not None else receptive_field(spec))
    halo = (halo,) * ndim if isinstance(halo, (int, np.integer)) else tuple(halo)
    if len(halo) != ndim or any(int(h) < 0 for h in halo):
        raise CardiosegError(f"halo must be a size >= 0 or {ndim} sizes, got {halo}")
    return tuple(int(h) for h in halo)


def fitting_halo(tile: int, halo: int, multiple: int) -> int:
    """Return the largest halo up to ``halo`` whose tiles need not be grown beyond ``tile`` px."""
    while halo > 0 and 2 * halo_overlap(halo, multiple) > tile:
        halo -= 1
    return halo


def auto_tile(spec: dict, halo: Sequence[int]) -> tuple[int, ...]:
    """Return the tile edges for ``tile=None``.

    :data:`AUTO_TILE`, and in 2D at least three times the halo overlap, so the halos cost about
    what a 25% overlap does (3D tiles only grow to twice it: their memory grows with the cube of
    the edge).
    """
    ndim, multiple = spec_ndim(spec), size_multiple(spec)
    factor = 3 if ndim == 2 else 2
    return tuple(max(AUTO_TILE[ndim], factor * halo_overlap(h, multiple)) for h in halo)


def count_tiles(shape: Sequence[int], spec: dict, tile: int | Sequence[int] | None = None,
                overlap: float = 0.25, *, halo: int | Sequence[int] | None = None,
                receptive_field: Sequence[int] | None = None) -> int:
    """How many tiles :func:`predict.predict_generator` will run for an image of ``shape``.

    ``halo`` as in :func:`predict.predict_generator`; by default it comes from ``receptive_field``
    (the card's, :meth:`ModelCard.receptive_field_px`), measured from ``spec`` when not given.
    """
    halo_shape = resolve_halo(halo, spec, receptive_field)
    tile_shape = resolve_tile(tile, spec_ndim(spec)) if tile is not None else auto_tile(
        spec, halo_shape)
    stretch = AUTO_STRETCH if tile is None else 1.0
    return len(plan_tiles(tuple(shape), spec, tile_shape, float(overlap), halo_shape, stretch)[1])


def resolve_tile(tile: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Return the tile edges asked for, one per spatial axis, checked."""
    tile = (tile,) * ndim if isinstance(tile, (int, np.integer)) else tuple(tile)
    if len(tile) != ndim or any(int(t) < 1 for t in tile):
        raise CardiosegError(f"tile must be a positive size or {ndim} sizes, got {tile}")
    return tuple(int(t) for t in tile)
