"""Streaming prediction of a file into OME-Zarr: lazy input, blockwise prediction, resumable.

:func:`predict_to_zarr` is what ``cardioseg predict IN -o OUT.zarr`` runs: the input (any format
of the registry in :mod:`.formats`, opened lazily) is read one haloed block at a time, labels (and optionally
foreground probabilities) are written block by block, and the stores are marked complete only at
the end. Rerunning the same command after an interruption continues from the finished blocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
import zarr

from . import zarr_io
from .blocks import block_geometry, card_halo, fixed_normalization_card, plan_blocks, predict_blocks
from .errors import CardiosegError
from .formats import open_image
from .models import ModelCard, load_model
from .nets import spec_ndim
from .progress import Progress, drain
from .slice_smooth import applied_sigma, slice_radius, width_for
from .tiling import AUTO_TILE

RUN_FORMAT = 1  # bump when the way blocks are computed changes (old partial runs restart)


def input_stamp(path: str | os.PathLike) -> list[int]:
    """Size and newest modification time (ns) of an input file, or of every file in a store.

    Part of a run's record: an output made from an input that has changed since (a contrast
    re-enhanced into the same file, a store rewritten) is never resumed or reused.
    """
    path = Path(path)
    if not path.is_dir():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    size = newest = 0
    for folder, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)
    return [size, newest]


@contextlib.contextmanager
def open_lazy(path: str | os.PathLike, *, channel: int | str | None = None,
              scene: int | str | None = None) -> Iterator[tuple[Any, tuple[float, ...], bool]]:
    """Open one channel of one scene of any readable format lazily: ``(array, µm, calibrated)``.

    The array is a dask array whose blocks are read only when sliced; the format comes from the
    registry (:mod:`.formats`). A store left incomplete by an interrupted run is refused.
    """
    image = open_image(path, channel=channel, scene=scene)
    if image.complete is False:
        raise CardiosegError(f"{path}: the store is incomplete (an interrupted run)")
    yield image.data, image.scale, image.calibrated


def _per_axis(value: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    return (int(value),) * ndim if isinstance(value, (int, np.integer)) else tuple(
        int(v) for v in value)


def stream_geometry(card: ModelCard, shape: Sequence[int], tile: int | None = None,
                    overlap: float = 0.25, halo: int | Sequence[int] | None = None,
                    z_sigma: float = 0.0) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Block and halo per axis of ``shape`` for streaming prediction with ``card``'s net.

    ``tile`` defaults to :data:`tiling.AUTO_TILE`; the halo is the larger of ``halo`` (default
    the receptive-field radius, :func:`blocks.card_halo`) and ``overlap * tile / 2``; a 2D net
    on a stack smoothed across slices (``z_sigma``) also reads the smoothing's reach in Z.
    """
    ndim = spec_ndim(card.spec)
    edge = _per_axis(tile if tile is not None else AUTO_TILE[ndim], ndim)
    least = tuple(math.ceil(float(overlap) * t / 2) for t in edge)
    halo = _per_axis(card_halo(card) if halo is None else halo, ndim)
    return block_geometry(card.spec, shape, edge,
                          tuple(max(h, m) for h, m in zip(halo, least, strict=True)),
                          slice_radius(applied_sigma(ndim, len(shape), z_sigma)))


def _into_stores(volume: Any, model: Any, card: ModelCard, labels: Any, prob: Any,
                 out_path: Path, encoding: np.dtype, block: Sequence[int], halo: Sequence[int],
                 skip: set[tuple[int, ...]], **kwargs: Any) -> Generator[Progress, None, int]:
    """:func:`blocks.predict_blocks` into the stores' level-0 arrays, marking each block done.

    ``block`` and ``halo`` are per volume axis (:func:`stream_geometry`); the block goes whole,
    Z depth included, so the blocks are the stores' chunks. ``kwargs`` are ``batch``,
    ``device``, ``flips``, ``backend`` and ``z_sigma``.
    """
    ndim = spec_ndim(card.spec)
    return predict_blocks(
        volume, model, card, labels, block=block, halo=halo[-ndim:], probabilities=prob,
        encode=lambda p: zarr_io.encode_probabilities(p, encoding), skip=skip,
        on_block_done=lambda index: zarr_io.mark_block_done(out_path, index), **kwargs)


def fill_levels(steps: Iterator[Progress],
                groups: Sequence[zarr.Group]) -> Generator[Progress, None, None]:
    """Pass on the block progress of ``steps``, then build each store's levels and mark it complete.

    One bar for both (blocks, then level chunks); the first store (the labels) is marked complete
    last, so a store that reads complete has everything.
    """
    level_total = sum(zarr_io.level_chunk_count(g) for g in groups)
    blocks = 0
    for p in steps:
        blocks = p.total or 0  # block predictions always know their total
        yield Progress(p.done, blocks + level_total, p.stage, p.message)
    done = blocks
    for group in groups[::-1]:
        for p in zarr_io.build_levels(group):
            yield Progress(done + p.done, blocks + level_total, p.stage, p.message)
        done += zarr_io.level_chunk_count(group)
        zarr_io.mark_complete(group)


def _predict_rows(task: dict, shape: Sequence[int], skip: set[tuple[int, ...]],
                  workers: int, scheduler: str | None) -> Generator[Progress, None, int]:
    """Run :func:`predict_row` for every row of blocks with work left, as dask tasks."""
    from .cluster import dask_client, import_distributed

    distributed = import_distributed()
    plan = plan_blocks(shape, task["block"], task["halo"])
    rows = sorted({b.index[0] for b in plan if b.index not in skip})
    done = sum(b.index in skip for b in plan)
    yield Progress(done, len(plan), "predict", f"{len(rows)} rows of blocks as dask tasks")
    with dask_client(workers if not scheduler else None, scheduler, len(rows)) as client:
        futures = [client.submit(predict_row, task, row, pure=False) for row in rows]
        for future in distributed.as_completed(futures):
            done += future.result()
            yield Progress(done, len(plan), "predict", f"{done} of {len(plan)} blocks")
    return done


def predict_row(task: dict, row: int) -> int:
    """Worker side of :func:`predict_to_zarr` on a cluster: predict one row of blocks.

    ``task`` holds the run's paths and settings (plain values, so it travels to any worker);
    the blocks whose grid index starts with ``row`` and that are not marked done are predicted
    into the stores, each marked done when written. Returns the number of blocks predicted.
    """
    model, card = load_model(task["model"])
    card = dataclasses.replace(card, normalization=task["normalization"])  # fitted once
    out_path = Path(task["labels"])
    # the lazy input is read here, not sent to the cluster (dask inside a task would do that)
    with dask.config.set(scheduler="synchronous"), open_lazy(
            task["input"], channel=task["channel"], scene=task["scene"]) as (volume, _, _):
        plan = plan_blocks(volume.shape, task["block"], task["halo"])
        finished = zarr_io.done_blocks(out_path)
        skip = {b.index for b in plan if b.index[0] != row or b.index in finished}
        labels = zarr.open_group(str(out_path), mode="r+")["0"]
        prob = zarr.open_group(task["prob"], mode="r+")["0"] if task["prob"] else None
        return drain(_into_stores(
            volume, model, card, labels, prob, out_path,
            zarr_io.probabilities_dtype(task["prob_dtype"]), task["block"], task["halo"], skip,
            batch=task["batch"], device=task["device"], flips=task["flips"],
            backend=task["backend"], z_sigma=task["z_sigma"]))


def predict_to_zarr(
    input_path: str | os.PathLike,
    model_name: str,
    out_path: str | os.PathLike,
    *,
    tile: int | None = None,
    overlap: float = 0.25,
    batch: int = 4,
    device: str = "auto",
    resume: bool = True,
    prob_path: str | os.PathLike | None = None,
    prob_dtype: str = "uint8",
    halo: int | Sequence[int] | None = None,
    flips: bool = False,
    backend: str = "eager",
    channel: int | str | None = None,
    scene: int | str | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    z_sigma: float | None = None,
    note: Callable[[str], None] | None = None,
) -> Generator[Progress, None, Path]:
    """Predict ``input_path`` block by block into an OME-Zarr labels store, yielding progress.

    Parameters
    ----------
    input_path : path-like
        Image (``YX`` or ``ZYX``) in any format of :mod:`.formats`, read lazily.
    model_name : str
        Pretrained or user model, or a path to its card (see :func:`models.load_model`).
    out_path : path-like
        Labels store (``.zarr``): uint8, chunked by block, with downsampled levels.
    tile : int, optional
        Block edge in pixels per net axis (the part of each forward pass that is kept); default
        512 for 2D nets, 96 for 3D nets. Each forward pass adds the halo on every side.
    overlap : float
        Minimum overlap between neighbouring forward passes as a fraction of ``tile``; the halo
        is at least ``overlap * tile / 2`` and at least the receptive-field radius.
    batch, device, flips, backend
        As in :func:`predict.predict_generator`.
    resume : bool
        Continue an interrupted run of the same command from its finished blocks (else start
        afresh).
    prob_path : path-like, optional
        Store (``.zarr``) for the foreground classes' probabilities, ``CZYX``/``CYX``.
    prob_dtype : str
        ``uint8`` (0-255) or ``float16``.
    halo : int or sequence of int, optional
        Receptive-field radius per net axis; default :func:`blocks.card_halo` (from the card).
    channel, scene : int or str, optional
        Channel and scene of a multichannel / multi-scene input (index or name).
    workers, scheduler : int, str, optional
        ``workers > 1`` or a dask ``scheduler`` address: rows of blocks (one index along the
        first axis of the block grid) are dask tasks, each writing its own chunks of the stores;
        the normalisation is fitted once here and the result equals the one-process run.
    z_sigma : float, optional
        Smoothing of a 2D net's probabilities across slices, in slices (see
        :func:`predict.predict_generator`); default (None) one slice, at most four in-plane pixels, when the
        input's pixel size is known and its slices continue each other
        (:func:`slice_smooth.default_sigma`), else none.
    note : callable, optional
        Hears when a default width is 0 because the slices do not continue each other.

    Returns
    -------
    Path
        The labels store, complete.
    """
    out_path = Path(out_path)
    if not zarr_io.is_zarr_path(out_path):
        raise CardiosegError(f"{out_path}: the output must end in .zarr")
    if prob_path is not None and not zarr_io.is_zarr_path(prob_path):
        raise CardiosegError(f"{prob_path}: with a .zarr output, probabilities go to a .zarr too")
    if not 0.0 <= float(overlap) <= 0.5:
        raise CardiosegError(f"overlap must be between 0 and 0.5, got {overlap}")
    encoding = zarr_io.probabilities_dtype(prob_dtype)
    model, card = load_model(model_name)
    with open_lazy(input_path, channel=channel, scene=scene) as (volume, scale, calibrated):
        if z_sigma is None:
            z_sigma = width_for(spec_ndim(card.spec), volume, scale if calibrated else None,
                                str(input_path), note)
        block, full_halo = stream_geometry(card, volume.shape, tile, overlap, halo, z_sigma)
        run = {"format": RUN_FORMAT, "input": str(Path(input_path).resolve()),
               "input_stamp": input_stamp(input_path), "shape": list(volume.shape),
               "model": card.name, "weights": card.weights_sha256,
               "block": list(block), "halo": list(full_halo), "flips": bool(flips),
               "z_sigma": float(z_sigma),
               "prob": str(prob_path) if prob_path else None, "prob_dtype": prob_dtype}
        if channel is not None or scene is not None:  # older runs without them still resume
            run.update(channel=channel, scene=scene)
        stores = [(out_path, np.dtype(np.uint8), tuple(volume.shape), block, True)]
        if prob_path is not None:
            stores.append((Path(prob_path), encoding, (card.spec["classes"] - 1, *volume.shape),
                           (1, *block), False))
        opened = [zarr_io.open_incomplete(p, run) if resume else None for p, *_ in stores]
        groups = [g for g in opened if g is not None]
        if len(groups) < len(stores):
            groups = [zarr_io.create_ome_zarr(p, shape, dtype, scale, chunks=chunks, labels=lab,
                                              axes=("C" if not lab else "") + "ZYX"[-volume.ndim:],
                                              name=card.name, run=run, calibrated=calibrated)
                      for p, dtype, shape, chunks, lab in stores]
        skip = zarr_io.done_blocks(out_path)
        if workers > 1 or scheduler:
            steps = _predict_rows(dict(
                input=str(input_path), channel=channel, scene=scene, model=model_name,
                labels=str(out_path), prob=str(prob_path) if prob_path else None,
                prob_dtype=prob_dtype, block=block, halo=full_halo, batch=batch, device=device,
                flips=flips, backend=backend, z_sigma=z_sigma,
                normalization=fixed_normalization_card(card, volume).normalization),
                volume.shape, skip, workers, scheduler)
        else:
            steps = _into_stores(volume, model, card, groups[0]["0"],
                                 groups[1]["0"] if len(groups) > 1 else None, out_path, encoding,
                                 block, full_halo, skip, batch=batch, device=device, flips=flips,
                                 backend=backend, z_sigma=z_sigma)
        yield from fill_levels(steps, groups)
    return out_path
