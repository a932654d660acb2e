"""One file through one command: what the single-file CLI paths and every batch job run.

:func:`predict_file` (read or stream the input, predict, write labels and probabilities with the
input's pixel size), :func:`enhance_file` (contrast) and :func:`measure_file` (a labels file to a
table and its summary, blockwise for OME-Zarr stores). Each is a generator yielding progress and
returning the files written, takes plain values only (paths, a model name, numbers), and is a row
of :data:`batch.COMMANDS`, so a dask worker can run it on its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CardiosegError
from .progress import Progress
from .zarr_io import is_zarr_path

if TYPE_CHECKING:  # torch is imported where a run needs it
    import torch

    from .backends import Runner
    from .models import ModelCard

Selection = int | str | None
Note = Callable[[str], None]


def prob_paths(prob: str | os.PathLike, class_names: Sequence[str]) -> list[tuple[int, Path]]:
    """Where ``--prob`` writes each foreground class: the path itself for one class."""
    path = Path(prob)
    if len(class_names) == 2:
        return [(1, path)]
    return [(c, path.with_name(f"{path.stem}-{name}{path.suffix or '.tif'}"))
            for c, name in enumerate(class_names) if c > 0]


def _model_for_run(model: str, device: str,
                   backend: str) -> tuple[torch.nn.Module | None, ModelCard, str | Runner]:
    """``(net, card, backend)`` for one prediction run of ``model``.

    On the CPU, when the graph ``backend`` runs is already in the ONNX cache, the torch net is
    not built (about 70 ms, most of a small image's fixed cost): the net is None and the backend
    a runner made from the cache (:func:`backends.cached_runner`), the weights still checked
    against their card. Otherwise the net is built from the weights already read.
    """
    from .backends import cached_runner
    from .device import choose_device
    from .models import checked_model, is_bioimageio_package, load_model

    if is_bioimageio_package(model):
        net, card = load_model(model)
        return net, card, backend
    card, build = checked_model(model)
    runner = cached_runner(card, backend) if choose_device(device).type == "cpu" else None
    if runner is not None:
        return None, card, runner
    return build(), card, backend


def predict_file(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str,
    prob: str | os.PathLike | None = None,
    tile: int | None = None,
    overlap: float = 0.25,
    batch: int = 4,
    device: str = "auto",
    flips: bool = False,
    note: Note | None = None,
    backend: str = "eager",
    channel: Selection = None,
    scene: Selection = None,
    resume: bool = True,
    prob_dtype: str | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    z_sigma: float | None = None,
) -> Generator[Progress, None, list[Path]]:
    """Predict one file into labels (and probabilities); returns the files written.

    A ``.zarr`` output streams block by block (:func:`run.predict_to_zarr`; ``resume`` continues
    an interrupted run). TIFF outputs of an input over :data:`stream_tiff.STREAM_VOXELS` voxels
    stream too, through a hidden store beside the output (:mod:`.stream_tiff`); smaller inputs
    are read whole. ``prob_dtype`` (``uint8`` or ``float16``) stores probabilities; default
    uint8 in zarr, float32 in TIFF. ``workers`` > 1 or a ``scheduler`` address run the rows of
    blocks as dask tasks (see :func:`run.predict_to_zarr`), for TIFF outputs too.
    ``channel`` and ``scene`` (index or name) choose within a multichannel / multi-scene input.
    ``z_sigma``: a 2D model's smoothing across slices of a stack (see
    :func:`predict.predict_generator`); default one slice (at most four in-plane pixels) when the file's pixel
    size is known and its slices continue each other (:func:`slice_smooth.default_sigma`), else
    none.
    """
    if is_zarr_path(output):
        from .run import predict_to_zarr

        out = yield from predict_to_zarr(input_path, model, output, tile=tile, overlap=overlap,
                                         batch=batch, device=device, prob_path=prob, flips=flips,
                                         backend=backend, channel=channel, scene=scene,
                                         resume=resume, prob_dtype=prob_dtype or "uint8",
                                         workers=workers, scheduler=scheduler, z_sigma=z_sigma,
                                         note=note)
        return [out, *([Path(prob)] if prob else [])]
    import numpy as np

    from . import zarr_io
    from .io import read_single
    from .nets import spec_ndim
    from .predict import predict_steps
    from .slice_smooth import width_for
    from .stream_tiff import STREAM_VOXELS, input_voxels, predict_file_streamed
    from .writes import check_outputs, write_tiff

    net, card, engine = _model_for_run(model, device, backend)
    probs = prob_paths(prob, card.class_names) if prob else []
    if workers > 1 or scheduler or input_voxels(input_path, channel, scene) > STREAM_VOXELS:
        return (yield from predict_file_streamed(
            input_path, output, model, probs, prob_dtype, tile=tile, overlap=overlap,
            batch=batch, device=device, flips=flips, backend=backend, channel=channel,
            scene=scene, resume=resume, workers=workers, scheduler=scheduler, z_sigma=z_sigma,
            note=note))
    check_outputs([output, *(path for _, path in probs)], [input_path])
    image = read_single(input_path, channel=channel, scene=scene)
    if card.pixel_size and not image.calibrated and note is not None:
        note(f"note: {input_path} has no pixel size; the model was trained at {card.pixel_size} µm")
    scale = image.scale if image.calibrated else None  # never invent a calibration
    if z_sigma is None:
        z_sigma = width_for(spec_ndim(card.spec), image.data, scale, str(input_path), note)
    result = yield from predict_steps(image.data, net, card, tile=tile, overlap=overlap,
                                      batch=batch, device=device, flips=flips,
                                      backend=engine, z_sigma=z_sigma)
    written = [write_tiff(output, result.labels, scale)]
    encoding = zarr_io.probabilities_dtype(prob_dtype) if prob_dtype else np.dtype(np.float32)
    for c, path in probs:
        prob_c = np.asarray(result.probabilities[c])
        written.append(write_tiff(path, zarr_io.encode_probabilities(prob_c, encoding)
                                  if prob_dtype else prob_c, scale))
    return written


def enhance_file(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    method: str,
    params: dict[str, Any],
    per_slice: bool = False,
    channel: Selection = None,
    scene: Selection = None,
) -> Generator[Progress, None, list[Path]]:
    """Enhance one file's contrast into ``output`` (same dtype and pixel size).

    ``channel`` and ``scene`` (index or name) choose within a multichannel / multi-scene input.
    """
    from .contrast import check_params, enhance_steps
    from .io import read_single
    from .writes import check_outputs, write_tiff

    check_params(method, params)
    check_outputs([output], [input_path])
    image = read_single(input_path, channel=channel, scene=scene)
    result = yield from enhance_steps(image.data, method, per_slice=per_slice, **params)
    return [write_tiff(output, result, image.scale if image.calibrated else None)]


def summary_path(output: str | os.PathLike) -> Path:
    """``STATS.csv`` → ``STATS_summary.csv`` beside it."""
    output = Path(output)
    return output.with_name(f"{output.stem}_summary{output.suffix or '.csv'}")


def resolve_pixel_size(given: Sequence[float] | None, scale: Sequence[float], calibrated: bool,
                       ndim: int) -> tuple[float, ...] | None:
    """Return the pixel size given by the user, else from the file; None when neither has one."""
    if given is None:
        return tuple(scale) if calibrated else None
    if len(given) != ndim:
        raise CardiosegError(f"--pixel-size needs {ndim} values ({'Z Y X' if ndim == 3 else 'Y X'}) "
                             f"for a {ndim}D image, got {len(given)}")
    return tuple(given)


@dataclass
class MeasureOutcome:
    """What :func:`measure_file` wrote: the tables, the object count and the unit."""

    objects: Path
    summary: Path
    count: int
    calibrated: bool

    @property
    def paths(self) -> list[Path]:
        """The files written: the per-object table and the summary."""
        return [self.objects, self.summary]


def measure_file(
    labels_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    kind: str,
    image: str | os.PathLike | None = None,
    cell_mask: str | os.PathLike | None = None,
    pixel_size: Sequence[float] | None = None,
    objects: str = "auto",
    connectivity: int | None = None,
    min_size: int | None = None,
    min_length: float | None = None,
    class_value: int | None = None,
    period_range: Sequence[float] | None = None,
    channel: Selection = None,
    scene: Selection = None,
    blockwise: bool | None = None,
) -> Generator[Progress, None, MeasureOutcome]:
    """Measure one label image into ``output`` (per object) and its ``_summary`` CSV.

    ``channel`` and ``scene`` (index or name) choose within the intensity image ``image``, and
    within the label image and the cell mask only when those have several channels / scenes.
    ``blockwise`` reads the files lazily and measures one object (``shapes``) or one slice
    (``zdisk``) at a time (:mod:`.measure_blockwise`, same tables); None = for OME-Zarr label
    images.
    """
    from .io import read_single
    from .measure import get_kind, measure_iter
    from .writes import check_outputs

    get_kind(kind)
    summary = summary_path(output)
    check_outputs([output, summary], [labels_path, image, cell_mask])
    if blockwise is None:
        blockwise = is_zarr_path(labels_path)
    if blockwise:
        outcome = yield from _measure_blockwise(
            labels_path, output, summary, kind=kind, image=image, cell_mask=cell_mask,
            pixel_size=pixel_size, objects=objects, connectivity=connectivity,
            min_size=min_size, min_length=min_length, class_value=class_value,
            period_range=period_range, channel=channel, scene=scene)
        return outcome
    labels = read_single(labels_path, "labels", channel=channel, scene=scene, only_if_several=True)
    spacing = resolve_pixel_size(pixel_size, labels.scale, labels.calibrated, labels.data.ndim)
    intensity = read_single(image, "image", channel=channel, scene=scene).data if image else None
    mask = read_single(cell_mask, "cell mask", channel=channel, scene=scene,
                       only_if_several=True).data if cell_mask else None
    result = yield from measure_iter(labels.data, spacing, kind, image=intensity, cell_mask=mask,
                                     mode=objects, connectivity=connectivity, min_size=min_size,
                                     period_range=period_range, class_value=class_value,
                                     min_length=min_length)
    result.objects.write_csv(output)
    result.summary.write_csv(summary)
    return MeasureOutcome(Path(output), summary, len(result.objects), result.calibrated)


def _measure_blockwise(labels_path: str | os.PathLike, output: str | os.PathLike, summary: Path,
                       *, kind: str, image: str | os.PathLike | None,
                       cell_mask: str | os.PathLike | None, pixel_size: Sequence[float] | None,
                       objects: str, connectivity: int | None, min_size: int | None,
                       min_length: float | None, class_value: int | None,
                       period_range: Sequence[float] | None, channel: Selection, scene: Selection,
                       ) -> Generator[Progress, None, MeasureOutcome]:
    """:func:`measure_file` with every file read lazily and measured blockwise."""
    from .io import open_single
    from .measure_blockwise import measure_blockwise_iter

    labels = open_single(labels_path, channel=channel, scene=scene, only_if_several=True)
    if labels.complete is False:
        raise CardiosegError(f"{labels_path}: the store is incomplete (an interrupted run)")
    spacing = resolve_pixel_size(pixel_size, labels.scale, labels.calibrated, labels.data.ndim)
    intensity = open_single(image, channel=channel, scene=scene).data if image else None
    mask = open_single(cell_mask, channel=channel, scene=scene,
                       only_if_several=True).data if cell_mask else None
    result = yield from measure_blockwise_iter(
        labels.data, spacing, kind, image=intensity, cell_mask=mask, mode=objects,
        connectivity=connectivity, min_size=min_size, period_range=period_range,
        class_value=class_value, min_length=min_length, workdir=Path(output).resolve().parent)
    result.objects.write_csv(output)
    result.summary.write_csv(summary)
    return MeasureOutcome(Path(output), summary, len(result.objects), result.calibrated)


