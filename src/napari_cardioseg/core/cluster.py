"""dask.distributed for the batch runs and block rows: the client, its workers' threads, the extra.

:func:`dask_client` gives a client on a new ``LocalCluster`` sized to the machine, or on an existing
scheduler (``--scheduler`` / :data:`SCHEDULER_ENV`); torch work on its workers is set to share each
host's cores. ``distributed`` is optional (the ``[cluster]`` extra) and imported only here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .device import cpu_cores, threads_setting
from .errors import CardiosegError

SCHEDULER_ENV = "CARDIOSEG_SCHEDULER"
CLUSTER_EXTRA = "pip install 'napari-cardioseg[cluster]'"


def _set_torch_threads(total_threads: dict[str, int], dask_worker: Any = None) -> int:
    """On a worker (``Client.run``): torch threads = its host's cores over its task threads.

    ``$CARDIOSEG_THREADS`` in the worker's environment sets the threads per task instead.
    """
    import torch

    host = dask_worker.address.rsplit(":", 1)[0]
    share = threads_setting() or max(1, cpu_cores() // max(1, total_threads.get(host, 1)))
    torch.set_num_threads(share)
    return share


def import_distributed() -> Any:
    """Return the ``distributed`` module, or raise naming the extra that installs it."""
    try:
        import distributed
    except ImportError as exc:
        raise CardiosegError(f"running on a dask cluster needs dask.distributed: {CLUSTER_EXTRA}"
                             ) from exc
    return distributed


def has_distributed() -> bool:
    """Return True when dask.distributed can be imported."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def default_workers(jobs: int) -> int:
    """Local workers for ``jobs`` files: one per core, no more than files."""
    return max(1, min(cpu_cores(), jobs))


@contextlib.contextmanager
def dask_client(workers: int | None, scheduler: str | None, tasks: int,
                torch_work: bool = True) -> Iterator[Any]:
    """Yield a ``distributed.Client`` on a new ``LocalCluster`` or on the scheduler at ``scheduler``.

    ``workers``: local single-threaded worker processes (``None``: :func:`default_workers` for
    ``tasks``). With ``torch_work``, each worker's torch threads are set to its host's cores over
    the task threads there, so the workers of one machine do not oversubscribe it.
    """
    distributed = import_distributed()
    cluster = None
    if scheduler is None:
        n = default_workers(tasks) if workers is None else int(workers)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                           dashboard_address=":0")  # any free port
        address = cluster.scheduler_address
    else:
        address = scheduler
    try:
        try:
            client = distributed.Client(address, timeout="30s")
        except OSError as exc:
            raise CardiosegError(f"cannot reach the dask scheduler at {address} ({exc})") from exc
        with client:
            info = client.scheduler_info(n_workers=-1)["workers"]
            if not info:
                client.wait_for_workers(1, timeout=60)
                info = client.scheduler_info(n_workers=-1)["workers"]
            if torch_work:
                totals: dict[str, int] = {}
                for addr, worker in info.items():
                    host = addr.rsplit(":", 1)[0]
                    totals[host] = totals.get(host, 0) + int(worker.get("nthreads", 1))
                client.run(_set_torch_threads, totals)
            yield client
    finally:
        if cluster is not None:
            cluster.close()
