"""Out-of-core prediction: cut a volume into blocks, predict each with a halo, write labels.

Each block's *core* is a cell of a regular grid; the net sees the core plus a *halo* on every
side (clipped at the volume's border) as one tile, and only the core is kept. When the halo is at
least the net's receptive-field radius and block and halo are multiples of the net's stride (so
pooling windows line up with those of the whole volume), every kept voxel sees exactly the input
it would see in a single pass over the whole volume: the result does not depend on the block
size. Normalisation numbers are fitted once on a bounded strided subsample of the whole volume
(:func:`normalize.fit_normalization`) and reused for every block.

Only one haloed block (and its probabilities) is in memory at a time; the input is any
array-like that can be sliced (zarr, dask, memmap), the outputs any writable array-like.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Generator, Sequence
from typing import Any

import numpy as np
import torch

from .backends import cpu_runner
from .device import choose_device
from .errors import CardiosegError
from .grid import _per_axis, plan_blocks
from .models import ModelCard
from .nets import size_multiple, spec_ndim
from .normalize import fit_normalization, inverted, with_invert
from .predict import predict_probabilities, probabilities_to_labels
from .progress import Progress
from .slice_smooth import applied_sigma, slice_radius, smooth
from .tiling import MAX_HALO
from .validate import as_grey

#: voxels of a 2D net's block on a stack (whole slices along Z)
BLOCK_VOXELS = 1 << 22
#: least depth of such a block, in Z halos, when it reads slices beyond it (smoothing), as long as
#: the block stays within twice :data:`BLOCK_VOXELS`
HALO_DEPTHS = 8


def block_geometry(spec: dict, shape: Sequence[int], block: int | Sequence[int],
                   halo: int | Sequence[int], z_halo: int = 0,
                   ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Block and halo per axis of a ``shape`` volume, rounded up to multiples of the net's stride.

    ``block`` and ``halo`` are given for the net's axes (``YX`` or ``ZYX``); a 2D net on a
    ``ZYX`` stack gets blocks of whole slices along Z (as many as make about 4 Mvoxel) and a Z
    halo of ``z_halo`` slices: none when slices are predicted independently, the smoothing's
    reach when they are smoothed across (:func:`slice_smooth.slice_radius`). With a Z halo the
    blocks are :data:`HALO_DEPTHS` halos deep (the extra slices then cost a quarter more) where
    that fits in twice the voxels; 512 px blocks at a 3-slice halo: 24 slices instead of 16.
    ``block`` may also give that depth first (``(slices, y, x)``): a store whose chunks were laid
    out before the width was known keeps them.
    """
    ndim = spec_ndim(spec)
    if ndim == 3 and len(shape) == 2:
        raise CardiosegError("a 3D model needs a ZYX stack, got a 2D image")
    multiple = size_multiple(spec)
    depth = None
    if len(shape) > ndim and not isinstance(block, (int, np.integer)) and len(block) == len(shape):
        depth, *rest = _per_axis(block, len(shape), "block", 1)
        block = tuple(rest)
    block = _per_axis(block, ndim, "block", 1)
    halo = _per_axis(halo, ndim, "halo", 0)
    block = tuple(math.ceil(b / multiple) * multiple for b in block)
    halo = tuple(math.ceil(h / multiple) * multiple for h in halo)
    if len(shape) > ndim:
        area = math.prod(block)
        base = max(1, BLOCK_VOXELS // area)
        deep = min(HALO_DEPTHS * int(z_halo), 2 * BLOCK_VOXELS // area)
        slices = min(int(shape[0]), max(base, deep) if depth is None else depth)
        return (slices, *block), (int(z_halo), *halo)
    return block, halo


def fixed_normalization_card(card: ModelCard, volume: Any) -> ModelCard:
    """Return a copy of ``card`` whose normalisation is the numbers fitted once on ``volume``.

    A ``zscore`` fit becomes the equivalent ``fixed`` range ``[mean, mean + std]``; an inverting
    recipe stays inverting.
    """
    fitted = fit_normalization(volume, card.normalization)
    if fitted["method"] == "zscore":
        low, span = fitted["mean"], fitted["std"]
    else:
        low, span = fitted["min"], fitted["max"] - fitted["min"]
    span = span if span > 0 else 1.0  # a constant image is only shifted, as apply_normalization does
    norm = with_invert({"method": "fixed", "min": low, "max": low + span}, inverted(fitted))
    return dataclasses.replace(card, normalization=norm)


def predict_blocks(
    volume: Any,
    model: torch.nn.Module,
    card: ModelCard,
    labels: Any,
    *,
    block: int | Sequence[int],
    halo: int | Sequence[int],
    batch: int = 4,
    device: str | torch.device = "auto",
    probabilities: Any = None,
    encode: Callable[[np.ndarray], np.ndarray] | None = None,
    skip: Collection[tuple[int, ...]] = (),
    on_block_done: Callable[[tuple[int, ...]], None] | None = None,
    flips: bool = False,
    backend: str = "eager",
    z_sigma: float = 0.0,
) -> Generator[Progress, None, int]:
    """Predict ``volume`` block by block into ``labels`` (and ``probabilities``), yielding progress.

    Parameters
    ----------
    volume : array-like
        ``YX`` or ``ZYX`` greyscale volume, read one haloed block at a time.
    model, card : torch.nn.Module, ModelCard
        The model; its normalisation is fitted once on a subsample of ``volume``.
    labels : array-like
        Writable uint8 array of ``volume``'s shape (e.g. a zarr array): argmax per voxel.
    block, halo : int or sequence of int
        Core size and halo per net axis (see :func:`block_geometry`; a 2D net on a stack may be
        given the Z depth too); the halo should be at least the net's receptive-field radius for
        the result not to depend on ``block``.
    batch : int
        Slices per forward pass for a 2D net on a stack.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    probabilities : array-like, optional
        Writable ``(C - 1, *volume.shape)`` array for the foreground classes' probabilities.
    encode : callable, optional
        Maps float32 probabilities to the dtype of ``probabilities`` (default: cast).
    skip : collection of tuple
        Block indices already written (resuming); they are neither read nor predicted.
    on_block_done : callable, optional
        Called with a block's index after its outputs are written (e.g. to leave a marker).
    flips : bool
        Test-time augmentation (see :func:`predict.predict_generator`).
    backend : str
        CPU inference engine (see :func:`predict.predict_generator`), built once for all blocks.
    z_sigma : float
        Smoothing across slices (see :func:`predict.predict_generator`); each block then reads
        :func:`slice_smooth.slice_radius` more slices on each side, so the result equals the
        whole stack smoothed at once.

    Returns
    -------
    int
        Blocks predicted in this call (not counting skipped ones).
    """
    volume = as_grey(volume)
    if tuple(labels.shape) != tuple(volume.shape):
        raise CardiosegError(f"labels output has shape {tuple(labels.shape)}, "
                             f"expected {tuple(volume.shape)}")
    classes = card.spec["classes"]
    if probabilities is not None and tuple(probabilities.shape) != (classes - 1, *volume.shape):
        raise CardiosegError(f"probabilities output has shape {tuple(probabilities.shape)}, "
                             f"expected {(classes - 1, *volume.shape)}")
    ndim = spec_ndim(card.spec)
    z_sigma = applied_sigma(ndim, volume.ndim, z_sigma)
    block, halo = block_geometry(card.spec, volume.shape, block, halo, slice_radius(z_sigma))
    plan = plan_blocks(volume.shape, block, halo)
    skip = set(skip)
    done = sum(b.index in skip for b in plan)
    yield Progress(done, len(plan), "predict", "fitting the normalisation")
    card = fixed_normalization_card(card, volume)
    runner = cpu_runner(model, card, backend, choose_device(device)) or "eager"
    predicted = 0
    for b in plan:
        if b.index in skip:
            continue
        region = np.asarray(volume[b.region])
        prob = predict_probabilities(region, model, card, tile=region.shape[-ndim:], overlap=0.0,
                                     batch=batch, device=device, flips=flips, backend=runner)
        prob = smooth(prob, z_sigma)[(slice(None), *b.inner)]
        labels[b.core] = probabilities_to_labels(prob)
        if probabilities is not None:
            fg = prob[1:]
            probabilities[(slice(None), *b.core)] = encode(fg) if encode else fg
        if on_block_done is not None:
            on_block_done(b.index)
        done += 1
        predicted += 1
        yield Progress(done, len(plan), "predict", f"block {'.'.join(map(str, b.index))}")
    return predicted


def card_halo(card: ModelCard) -> tuple[int, ...]:
    """Return the halo per net axis from the card's receptive field: ``ceil(rf / 2)``.

    At most :data:`tiling.MAX_HALO` (nets with global context); :func:`block_geometry` rounds it
    up to the stride.
    """
    field = card.receptive_field_px()
    return tuple(min(math.ceil(f / 2), MAX_HALO[len(field)]) for f in field)
