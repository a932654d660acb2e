"""A regular grid of blocks over a volume, each with an optional halo (torch-free).

Shared by blockwise prediction (:mod:`.blocks`) and blockwise labelling and measurement
(:mod:`.blockwise_labels`, :mod:`.measure_blockwise`), which must not pull in torch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import CardiosegError


@dataclass(frozen=True)
class Block:
    """One block of a plan: grid ``index``, the ``core`` it writes, the haloed ``region`` it reads."""

    index: tuple[int, ...]
    core: tuple[slice, ...]
    region: tuple[slice, ...]

    @property
    def inner(self) -> tuple[slice, ...]:
        """The core in the coordinates of the region."""
        return tuple(slice(c.start - r.start, c.stop - r.start)
                     for c, r in zip(self.core, self.region, strict=True))


def _per_axis(value: int | Sequence[int], ndim: int, what: str, low: int) -> tuple[int, ...]:
    values = (int(value),) * ndim if isinstance(value, (int, np.integer)) else tuple(
        int(v) for v in value)
    if len(values) != ndim or any(v < low for v in values):
        raise CardiosegError(f"{what} must be one or {ndim} integers >= {low}, got {value}")
    return values


def plan_blocks(shape: Sequence[int], block: int | Sequence[int],
                halo: int | Sequence[int] = 0) -> list[Block]:
    """Blocks of at most ``block`` voxels per axis covering ``shape``, each with ``halo``."""
    shape = tuple(int(n) for n in shape)
    block = _per_axis(block, len(shape), "block", 1)
    halo = _per_axis(halo, len(shape), "halo", 0)
    counts = [math.ceil(n / b) for n, b in zip(shape, block, strict=True)]
    plan = []
    for index in itertools.product(*(range(c) for c in counts)):
        core = tuple(slice(i * b, min((i + 1) * b, n))
                     for i, b, n in zip(index, block, shape, strict=True))
        region = tuple(slice(max(0, c.start - h), min(n, c.stop + h))
                       for c, h, n in zip(core, halo, shape, strict=True))
        plan.append(Block(tuple(index), core, region))
    return plan
