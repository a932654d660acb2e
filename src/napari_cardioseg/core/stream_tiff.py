"""Large inputs into TIFF outputs: stream through a hidden OME-Zarr, then write the TIFF page by page.

``cardioseg predict BIG.tif -o labels.tif`` would otherwise hold the whole input, float32
probabilities of every class and the labels in memory (about 10 bytes per voxel for two
classes). Above :data:`STREAM_VOXELS` (or with dask workers), :func:`predict_file_streamed` runs
:func:`run.predict_to_zarr` into ``.NAME.partial.zarr`` beside the output (so an interrupted run
resumes from its finished blocks), then writes each TIFF one page (or tile) at a time with
:func:`writes.write_tiff_blocks` and removes the hidden store.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from . import zarr_io
from .progress import Progress
from .run import open_lazy, predict_to_zarr
from .writes import check_outputs, write_tiff_blocks

#: inputs with more voxels than this (32 Mi) stream through a temporary OME-Zarr when the outputs
#: are TIFFs: read whole, an input takes about 15 bytes per voxel at its peak (4.0 GB measured at
#: 256 Mi voxels); streamed, 1.4-1.5 GB at any size (``benchmarks/bench_scale.py --tiff``)
STREAM_VOXELS = 2**25


def input_voxels(path: str | os.PathLike, channel: int | str | None = None,
                 scene: int | str | None = None) -> int:
    """Voxels of the chosen channel and scene of ``path``, read from its header only."""
    with open_lazy(path, channel=channel, scene=scene) as (volume, _, _):
        return math.prod(int(n) for n in volume.shape)


def partial_store(output: str | os.PathLike) -> Path:
    """Return the hidden store beside ``output`` that holds the blocks while the run lasts."""
    output = Path(output)
    return output.with_name(f".{output.name}.partial.zarr")


def predict_file_streamed(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    model: str,
    probs: Sequence[tuple[int, Path]] = (),
    prob_dtype: str | None = None,
    **options: Any,
) -> Generator[Progress, None, list[Path]]:
    """Predict ``input_path`` blockwise into a hidden store, then write ``output`` and ``probs``.

    ``probs``: ``(class index, TIFF path)`` per foreground class to save; stored as float16 and
    written as float32 (within 0.0005 of the in-memory float32), or as uint8 0-255 with
    ``prob_dtype="uint8"``. ``options`` go to :func:`run.predict_to_zarr` (tile, overlap,
    batch, device, flips, backend, channel, scene, resume, workers, scheduler, z_sigma,
    note). Returns the files written. Labels are uint8, as in every streamed run.
    """
    check_outputs([output, *(path for _, path in probs)], [input_path])
    labels_store = partial_store(output)
    prob_store = partial_store(Path(output).with_suffix(".prob.tif")) if probs else None
    stored = prob_dtype or "float16"
    yield from predict_to_zarr(input_path, model, labels_store, prob_path=prob_store,
                               prob_dtype=stored, **options)
    labels = zarr_io.read_ome_zarr(labels_store)
    scale = labels.scale if labels.calibrated else None  # never invent a calibration
    yield Progress(0, 1 + len(probs), "write", f"writing {output}")
    written = [write_tiff_blocks(output, labels.data, scale)]
    if prob_store is not None:
        stack = da.from_zarr(zarr_io.read_ome_zarr(prob_store).data)  # one class, lazily
        for done, (c, path) in enumerate(probs, start=1):
            yield Progress(done, 1 + len(probs), "write", f"writing {path}")
            written.append(write_tiff_blocks(path, stack[c - 1], scale,
                                             dtype=np.dtype(np.uint8 if stored == "uint8"
                                                            else np.float32)))
    for store in (labels_store, prob_store):
        if store is not None:
            shutil.rmtree(store, ignore_errors=True)
    yield Progress(1 + len(probs), 1 + len(probs), "write", f"wrote {len(written)} file(s)")
    return written
