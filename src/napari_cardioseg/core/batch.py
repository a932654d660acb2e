"""Many files in one command: input expansion, one-file jobs, in-process or dask.distributed runs.

A :class:`Job` is one input file through the same function the single-file CLI path uses
(:mod:`.one_file`: ``predict_file``, ``enhance_file``, ``measure_file``), described by plain values
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
from typing import Any

from .cluster import dask_client, default_workers, import_distributed
from .errors import CardiosegError
from .formats import suffixes as format_suffixes
from .one_file import MeasureOutcome, enhance_file, measure_file, predict_file
from .progress import Progress, drain
from .zarr_io import is_zarr_path

#: file suffixes picked up from a folder: every format of the registry (:mod:`.formats`);
#: OME-Zarr stores are folders ending in .zarr
INPUT_SUFFIXES = format_suffixes()
TIFF_SUFFIXES = (".tif", ".tiff")
_STRIP = tuple(sorted(INPUT_SUFFIXES, key=len, reverse=True))


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
