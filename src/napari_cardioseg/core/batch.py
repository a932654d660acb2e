"""Many files in one command: input expansion, one-file jobs, in-process or dask.distributed runs.

A :class:`Job` is one input file through the same function the single-file CLI path uses
(:func:`predict_file`, :func:`enhance_file`, :func:`measure_file`), described by plain values
only (paths, a model *name*, numbers), so that it can run on a dask worker that loads the model
itself. :func:`run_batch` runs jobs one after another in this process, or as dask.distributed
tasks (one task per file) on a ``LocalCluster`` or on an existing scheduler; a failing file is
recorded in its :class:`JobResult` and the others continue.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cluster import dask_client, default_workers, import_distributed
from .errors import CardiosegError
from .formats import suffixes as format_suffixes
from .progress import Progress, drain
from .zarr_io import is_zarr_path

if TYPE_CHECKING:  # torch is imported where a run needs it
    import torch

    from .backends import Runner
    from .models import ModelCard

#: file suffixes picked up from a folder: every format of the registry (:mod:`.formats`);
#: OME-Zarr stores are folders ending in .zarr
INPUT_SUFFIXES = format_suffixes()
TIFF_SUFFIXES = (".tif", ".tiff")
_STRIP = tuple(sorted(INPUT_SUFFIXES, key=len, reverse=True))
Selection = int | str | None
Note = Callable[[str], None]


def _is_input(path: Path, suffixes: Sequence[str]) -> bool:
    if is_zarr_path(path):
        return path.is_dir() and ".zarr" in suffixes
    return path.is_file() and path.name.lower().endswith(tuple(suffixes))


def is_batch(patterns: Sequence[str | os.PathLike]) -> bool:
    """Return True unless ``patterns`` is one file (or one OME-Zarr store) named without wildcards."""
    if len(patterns) != 1:
        return True
    text = str(patterns[0])
    return glob.has_magic(text) or (Path(text).is_dir() and not is_zarr_path(text))


def expand_inputs(patterns: Iterable[str | os.PathLike],
                  suffixes: Sequence[str] = INPUT_SUFFIXES) -> list[Path]:
    """Files named by ``patterns``: files, folders (their entries ending in ``suffixes``), globs.

    Folders are not searched recursively (use ``DIR/**/*.tif``). Order: as given, each folder
    or glob sorted by name; a file named twice is kept once. Files named explicitly or by a
    glob are kept whatever their suffix (an unreadable one fails as its own job).

    Raises
    ------
    CardiosegError
        A missing file, or a folder or glob that names no input file.
    """
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        path = Path(text)
        if glob.has_magic(text):
            paths = [Path(p) for p in sorted(glob.glob(text, recursive=True))]
            paths = [p for p in paths if _is_input(p, suffixes) or p.is_file()]
            if not paths:
                raise CardiosegError(f"{text}: no file matches")
        elif path.is_dir() and not is_zarr_path(path):
            paths = sorted(p for p in path.iterdir() if _is_input(p, suffixes))
            if not paths:
                raise CardiosegError(f"{text}: the folder holds no {', '.join(suffixes)} input")
        elif path.exists():
            paths = [path]
        else:
            raise CardiosegError(f"{text}: no such file")
        found.extend(paths)
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def stem(path: str | os.PathLike) -> str:
    """Return the file name without its image suffix: ``a/cell.ome.tif`` → ``cell``."""
    name = Path(str(path).rstrip("/\\")).name
    for suffix in _STRIP:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def output_paths(inputs: Sequence[Path], folder: str | os.PathLike, ending: str,
                 zarr_ending: str | None = None) -> list[Path]:
    """``FOLDER/NAME{ending}`` per input (``zarr_ending`` for OME-Zarr inputs, if given).

    Two inputs with the same name are refused.
    """
    folder = Path(folder)
    outs = [folder / f"{stem(p)}{zarr_ending if zarr_ending and is_zarr_path(p) else ending}"
            for p in inputs]
    seen: dict[Path, Path] = {}
    for source, out in zip(inputs, outs, strict=True):
        if out in seen:
            raise CardiosegError(f"{seen[out]} and {source} would both write {out}; "
                                 "rename one or run them separately")
        seen[out] = source
    return outs


def output_folder(path: str | os.PathLike) -> Path:
    """``-o`` of a batch run: a folder, created if missing (an existing file is refused)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CardiosegError(f"{folder}: with several inputs -o is a folder, and this is a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CardiosegError(f"{folder}: cannot create the output folder ({exc.strerror})") from exc
    return folder


# ---- one file: the functions the single-file CLI paths run --------------------------------


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
                                         workers=workers, scheduler=scheduler, z_sigma=z_sigma)
        return [out, *([Path(prob)] if prob else [])]
    import numpy as np

    from . import zarr_io
    from .io import read_single
    from .predict import predict_steps
    from .slice_smooth import default_sigma, slice_sigma
    from .stream_tiff import STREAM_VOXELS, input_voxels, predict_file_streamed
    from .writes import check_outputs, write_tiff

    net, card, engine = _model_for_run(model, device, backend)
    probs = prob_paths(prob, card.class_names) if prob else []
    if workers > 1 or scheduler or input_voxels(input_path, channel, scene) > STREAM_VOXELS:
        return (yield from predict_file_streamed(
            input_path, output, model, probs, prob_dtype, tile=tile, overlap=overlap,
            batch=batch, device=device, flips=flips, backend=backend, channel=channel,
            scene=scene, resume=resume, workers=workers, scheduler=scheduler, z_sigma=z_sigma))
    check_outputs([output, *(path for _, path in probs)], [input_path])
    image = read_single(input_path, channel=channel, scene=scene)
    if card.pixel_size and not image.calibrated and note is not None:
        note(f"note: {input_path} has no pixel size; the model was trained at {card.pixel_size} µm")
    scale = image.scale if image.calibrated else None  # never invent a calibration
    if z_sigma is None:
        z_sigma = default_sigma(image.data, scale)
        if z_sigma == 0 and slice_sigma(scale) > 0 and note is not None:
            note(f"note: the slices of {input_path} do not continue each other; they are not "
                 "smoothed across (--z-sigma sets a width)")
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


COMMANDS: dict[str, Callable[..., Generator[Progress, None, Any]]] = {
    "predict": predict_file, "enhance": enhance_file, "measure": measure_file,
}


# ---- jobs and batch runs ------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One input through one command: plain values only, so it can travel to a dask worker.

    Attributes
    ----------
    command : str
        ``predict``, ``enhance`` or ``measure`` (a key of :data:`COMMANDS`).
    input : Path
        The file to process (absolute, so that a worker in another folder finds it).
    output : Path
        Its main output.
    options : dict
        Keyword arguments of the command's function (a model travels as its name or path).
    """

    command: str
    input: Path
    output: Path
    options: dict[str, Any] = field(default_factory=dict)

    def steps(self) -> Generator[Progress, None, Any]:
        """Return the command's progress generator for this file."""
        if self.command not in COMMANDS:
            raise CardiosegError(f"unknown command {self.command!r}; one of {', '.join(COMMANDS)}")
        return COMMANDS[self.command](self.input, self.output, **self.options)


@dataclass
class JobResult:
    """How one job ended: ``ok``, seconds taken, and the outputs written or a one-line error."""

    job: Job
    ok: bool
    seconds: float
    outputs: list[Path] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class BatchProgress(Progress):
    """Files done of all files; ``finished`` is the job that just ended, if any."""

    finished: JobResult | None = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, CardiosegError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _outputs_of(value: Any) -> list[Path]:
    if isinstance(value, MeasureOutcome):
        return value.paths
    return [Path(p) for p in value] if isinstance(value, list) else []


def job_steps(job: Job) -> Generator[Progress, None, JobResult]:
    """Run ``job``, yielding its progress; an error ends it as a failed :class:`JobResult`."""
    start = time.perf_counter()
    try:
        value = yield from job.steps()
    except Exception as exc:  # one failing file must not stop the others
        return JobResult(job, False, time.perf_counter() - start, error=_one_line(exc))
    return JobResult(job, True, time.perf_counter() - start, outputs=_outputs_of(value))


def run_job(job: Job) -> JobResult:
    """Run ``job`` to the end (what a dask worker executes).

    Lazy inputs are read in this process: inside a dask task, computing a dask array would
    otherwise send its graph (with open file handles) back to the cluster.
    """
    import dask

    with dask.config.set(scheduler="synchronous"):
        return drain(job_steps(job))


def run_batch(
    jobs: Sequence[Job],
    *,
    workers: int | None = 1,
    scheduler: str | None = None,
) -> Generator[BatchProgress, None, list[JobResult]]:
    """Run ``jobs`` (one per file), yielding progress per file and overall.

    Parameters
    ----------
    jobs : sequence of Job
        The files to process.
    workers : int or None
        ``1`` runs in this process, one file after another; ``N > 1`` starts a dask
        ``LocalCluster`` of N single-threaded worker processes; ``None`` sizes it to the
        machine (:func:`default_workers`). Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://HOST:PORT``); its workers run the files.

    Returns
    -------
    list of JobResult
        In the order of ``jobs``.
    """
    jobs = list(jobs)
    if scheduler is None and (len(jobs) <= 1 or workers == 1):
        return (yield from _run_here(jobs))
    return (yield from _run_dask(jobs, workers, scheduler))


def _run_here(jobs: list[Job]) -> Generator[BatchProgress, None, list[JobResult]]:
    results: list[JobResult] = []
    total = len(jobs)
    for i, job in enumerate(jobs):
        name = job.input.name
        yield BatchProgress(i, total, job.command, f"{name}")
        steps = job_steps(job)
        while True:
            try:
                p = next(steps)
            except StopIteration as stop:
                result = stop.value
                break
            inner = f"{p.done}/{p.total}" if p.total else f"{p.done}"
            yield BatchProgress(i, total, job.command, f"{name}: {p.stage} {inner}".strip())
        results.append(result)
        yield BatchProgress(i + 1, total, job.command, name, finished=result)
    return results


def _run_dask(jobs: list[Job], workers: int | None,
              scheduler: str | None) -> Generator[BatchProgress, None, list[JobResult]]:
    distributed = import_distributed()
    where = scheduler or f"{default_workers(len(jobs)) if workers is None else workers} local workers"
    yield BatchProgress(0, len(jobs), "cluster", f"starting {where}" if scheduler is None
                        else f"connecting to {scheduler}")
    torch_work = any(job.command == "predict" for job in jobs)
    with dask_client(workers, scheduler, len(jobs), torch_work) as client:
        futures = {client.submit(run_job, job, pure=False): i for i, job in enumerate(jobs)}
        results: list[JobResult | None] = [None] * len(jobs)
        done = 0
        for future in distributed.as_completed(futures):
            i = futures[future]
            if future.status == "finished":
                result = future.result()
            else:  # a worker died or the task was lost
                result = JobResult(jobs[i], False, 0.0, error=_one_line(future.exception()))
            results[i] = result
            done += 1
            yield BatchProgress(done, len(jobs), jobs[i].command, jobs[i].input.name,
                                finished=result)
    return [r for r in results if r is not None]


def make_jobs(command: str, inputs: Sequence[Path], outputs: Sequence[Path],
              options: dict[str, Any], per_file: Sequence[dict[str, Any]] | None = None) -> list[Job]:
    """One :class:`Job` per input with absolute paths (workers may run in another folder)."""
    extra = per_file or [{} for _ in inputs]
    return [Job(command, Path(os.path.abspath(i)), Path(os.path.abspath(o)), {**options, **e})
            for i, o, e in zip(inputs, outputs, extra, strict=True)]


def summary_table(results: Sequence[JobResult]) -> str:
    """Format a text table: file, status, seconds, output (or error); one row per file."""
    rows = [("file", "status", "seconds", "output or error")]
    for r in results:
        detail = ", ".join(str(p) for p in r.outputs) if r.ok else r.error
        rows.append((str(r.job.input), "ok" if r.ok else "FAILED", f"{r.seconds:.1f}", detail))
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    lines = ["  ".join([*(row[c].ljust(widths[c]) for c in range(3)), row[3]]).rstrip()
             for row in rows]
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} files done, {failed} failed")
    return "\n".join(lines)
