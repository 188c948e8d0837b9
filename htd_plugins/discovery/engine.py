"""The embed stage on Dask distributed: a cluster's workers plan slides and embed shards of
their tiles (:func:`~htd_plugins.discovery.tiles.embed_tiles`); this process writes the store.

Why Dask distributed rather than Ray Data: both run on a laptop and on a cluster, but here
Dask costs 1.5 MB of wheels (``distributed`` 1.0 MB, ``msgpack``, ``tblib``, ``zict``) over
the ``dask`` that tiatoolbox already installs (Ray 2.60: one 79 MB wheel, and a GCS, raylet
and dashboard processes beside the workers); a local cluster of 2 worker processes starts in
about 1.5 s on 2 busy cores; its scheduler moves the tasks of a worker that dies to the
others (``distributed.scheduler.allowed-failures``); GPU workers are ordinary workers
(``dask worker ADDRESS --nthreads 1`` per GPU, ``CUDA_VISIBLE_DEVICES`` set), and HPC sites
already run its scheduler (dask-jobqueue). What Ray Data gives of its own is replaced by little
code: its GPU actors (a model loaded once per GPU) by an encoder built once per worker
process, its streaming backpressure by a bound on the tasks in flight, its task retries by
ours (on another worker).

The run itself (what is submitted, retried and written) is :mod:`.engine_run`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from htd_core.errors import HtdError, InputError
from htd_core.interfaces import Encoder
from htd_plugins.discovery.patches import GridOptions
from htd_plugins.discovery.tiles import TileShard, embed_tiles, plan_tiles


@dataclass(frozen=True)
class EngineOptions:
    """Where and how the embed stage runs on Dask.

    Attributes:
        scheduler: address of a running Dask scheduler (``tcp://host:8786``); None starts a
            local cluster of ``local_workers`` processes for this run.
        local_workers: worker processes of the local cluster (one task each at a time).
        connect_timeout: seconds to wait for the scheduler, then for its first worker.
        retries: times a failed task is run again (preferably on another worker).
        tiles_per_task: tile coordinates per task (rounded up to a multiple of the batch size).
        task_threads: torch CPU threads of each task.
    """

    scheduler: str | None = None
    local_workers: int = 2
    connect_timeout: float = 10.0
    retries: int = 2
    tiles_per_task: int = 1024
    task_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("local_workers", "tiles_per_task", "task_threads"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be at least 1")
        if self.retries < 0:
            raise InputError(f"retries={self.retries} must be 0 or more")
        if not self.connect_timeout > 0:
            raise InputError(f"connect_timeout={self.connect_timeout} must be positive (seconds)")


class TaskFailed(Exception):
    """A task's error as one line, with the address of the worker it ran on."""

    def __init__(self, worker: str, message: str) -> None:
        super().__init__(worker, message)
        self.worker, self.message = worker, message

    def __str__(self) -> str:
        return self.message


_ENCODERS: dict[str, Encoder] = {}  # per worker process: built once, by token


def _guarded(fn: Callable[[], Any]) -> Any:
    from distributed import get_worker

    try:
        return fn()
    except Exception as exc:
        message = str(exc) if isinstance(exc, HtdError) else f"{type(exc).__name__}: {exc}"
        raise TaskFailed(get_worker().address, message) from None


def plan_task(path: str, slide_id: str, options: GridOptions, identity: dict) -> tuple:
    """Worker task: (plan, coords) of a slide (:func:`~.tiles.plan_tiles`)."""
    return _guarded(lambda: plan_tiles(path, slide_id, options, identity)[1:])


def embed_task(shard: TileShard, factory: Callable[[], Encoder], token: str, batch_size: int,
               threads: int) -> np.ndarray:  # fmt: skip
    """Worker task: K x D float16 features of a shard; the encoder is built by ``factory``
    once per worker process (cached under ``token``)."""

    def run() -> np.ndarray:
        import torch

        torch.set_num_threads(threads)
        if token not in _ENCODERS:  # one encoder per worker: the latest run's
            _ENCODERS.clear()
            _ENCODERS[token] = factory()
        return embed_tiles(shard, _ENCODERS[token], batch_size)

    return _guarded(run)


#: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which fixes glibc's mmap
#: threshold too: every large tensor is mapped and unmapped again, and the embed tasks took
#: 1.7x the CPU of the same call in a plain process (measured here: 4.2 s against 2.4 s for
#: 96 patches of efficientnet_lite0). Local clusters unset it; remote workers are started so:
#: ``DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_=None dask worker ...``.
NO_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


@contextmanager
def open_client(engine: EngineOptions) -> Iterator[Any]:
    """A ``distributed.Client`` to the scheduler (or to a new local cluster), closed on exit.

    Raises:
        InputError: no scheduler answers at the address, or it has no worker, within
            ``connect_timeout`` seconds.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError(
            "--engine dask needs the `distributed` package: pip install distributed"
        ) from None
    if engine.scheduler is None:
        import dask

        with (
            dask.config.set({NO_TRIM: None}),
            LocalCluster(n_workers=engine.local_workers, threads_per_worker=1, processes=True,
                         dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL) as cluster,
            Client(cluster) as client,  # failures are reported by the run, in one line
        ):  # fmt: skip
            yield client
        return
    address, wait = engine.scheduler, engine.connect_timeout
    try:
        client = Client(address, timeout=wait)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise InputError(
            f"no Dask scheduler answers at --scheduler {address} within {wait:g} s ({exc}): "
            "start one there (`dask scheduler`, then `dask worker ADDRESS`), correct the "
            "address, or leave --scheduler out for a local cluster"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=wait)
        except TimeoutError:
            raise InputError(
                f"the Dask scheduler at {address} has no worker (waited {wait:g} s): start "
                f"workers with `dask worker {address} --nthreads 1`"
            ) from None
        yield client
