"""Shared by ``predict``, ``enhance`` and ``measure``: the many-files flags and the batch run.

The work (input expansion, jobs, local or dask execution, the summary) is in
:mod:`napari_cardioseg.core.batch`; this module adds the flags, draws the bar, prints one line
per failed file and the summary table.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from .progress import ProgressBar

if TYPE_CHECKING:
    from ..core.batch import Job


def worker_count(text: str) -> int:
    """Parse a number of workers >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1 worker, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--workers`` and ``--scheduler`` (several inputs; for predict also one big input)."""
    group = parser.add_argument_group(
        "several inputs", "with several inputs, a folder or a glob, -o is a folder (created if "
        "missing) and each file is a task; a failing file is reported and the others go on. "
        "predict with one input and a .zarr output: rows of blocks are the tasks")
    group.add_argument("--workers", type=worker_count, default=None, metavar="N",
                       help="dask worker processes on this machine (default: one per core; 1 "
                       "runs the files one after another in this process)")
    group.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on an existing dask cluster (default: $CARDIOSEG_SCHEDULER); "
                       "see docs/cluster.md")


def run_jobs(jobs: list[Job], label: str, args: argparse.Namespace) -> int:
    """Run ``jobs`` with a bar; print failures as they happen and the summary table.

    Returns 0 when every file succeeded, 1 otherwise.
    """
    from ..core.batch import run_batch, summary_table
    from ..core.cluster import SCHEDULER_ENV, has_distributed

    scheduler = args.scheduler or os.environ.get(SCHEDULER_ENV) or None
    workers = args.workers
    if workers is None and scheduler is None and not has_distributed():
        workers = 1  # no cluster extra installed: the files run here, one after another
    bar = ProgressBar(label=label)
    steps = run_batch(jobs, workers=workers, scheduler=scheduler)
    try:
        while True:
            progress = next(steps)
            bar.show(progress)
            finished = progress.finished
            if finished is not None and not finished.ok:
                if sys.stderr.isatty():
                    sys.stderr.write("\r\033[K")
                print(f"{finished.job.input}: {finished.error}", file=sys.stderr)
    except StopIteration as stop:
        results = stop.value
    finally:
        bar.close()
    print(summary_table(results))
    return 0 if all(r.ok for r in results) else 1
