"""The embed stage's run on Dask (:mod:`.engine`): what is submitted, in what order, what
is retried, and how the rows come back into the store.

Slides already complete in the store are never submitted; a slide started by
an earlier run (any engine) resumes at its first missing row; the others are planned on a
worker (grid and tissue cells, the store's ``plan.json``), then their tiles go out as tasks of
``tiles_per_task`` coordinates (a multiple of the batch size, so each task's batches are those
of the one-process path and the rows are equal). Workers read their own tiles from the slide
files (which they must see at the same paths); only coordinates go out and float16 features
come back. Rows are written in order (``SlideRows``), and a slide is committed once, atomically
(``meta.json`` last). A failed task is retried ``retries`` times, preferring another worker
(a loose restriction: Dask's work stealing may still move it when that worker is busy); then
its slide is reported as skipped and the others go on.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.images import opaque_id
from htd_core.interfaces import Encoder
from htd_plugins.discovery.embed import (
    EmbedReport,
    SlideRows,
    check_same_plan,
    resume_plan,
    save_plan,
    select_shard,
    store_identity,
)
from htd_plugins.discovery.engine import (
    EngineOptions,
    TaskFailed,
    embed_task,
    open_client,
    plan_task,
)
from htd_plugins.discovery.grid import PatchGrid
from htd_plugins.discovery.patches import GridOptions
from htd_plugins.discovery.store import EmbeddingStore
from htd_plugins.discovery.tiles import TileShard, normalizer_of


@dataclass
class _Slide:
    path: Path
    slide_id: str
    started: float | None = None  # its first task's submission
    plan: dict[str, Any] | None = None
    coords: np.ndarray | None = None
    rows: SlideRows | None = None
    ready: dict[int, np.ndarray] = field(default_factory=dict)  # rows waiting for their turn
    failed: bool = False


def embed_on_cluster(
    store: EmbeddingStore,
    slides: Sequence[str | Path],
    encoder_factory: Callable[[], Encoder],
    options: GridOptions,
    engine: EngineOptions,
    *,
    shard: tuple[int, int] = (0, 1),
    batch_size: int = 32,
    progress: bool = True,
    client: Any = None,
) -> EmbedReport:
    """Embed this shard's slides (:func:`~.embed.select_shard`) on Dask into ``store``.

    Args:
        encoder_factory: picklable, builds the store's encoder on a worker (e.g.
            ``functools.partial(htd_core.create, "encoders", name)``).
        client: a connected ``distributed.Client`` (None: :func:`open_client` of ``engine``).

    Returns:
        the same report as :func:`~.embed.embed_slides`: per slide done, already done or no
        tissue, and the skipped slides (their tasks failed ``retries + 1`` times) with why.

    Raises:
        InputError: see :func:`open_client`; a slide started with other grid options.
    """
    mine = select_shard(slides, shard)
    done = all(store.is_complete(opaque_id(p)) for p in mine)
    if client is None and not (done and engine.scheduler is None):  # no local cluster for nothing
        with open_client(engine) as opened:
            return embed_on_cluster(store, mine, encoder_factory, options, engine,
                                    batch_size=batch_size, progress=progress, client=opened)  # fmt: skip
    return _Run(store, encoder_factory, options, engine, batch_size, progress, client).run(mine)


class _Run:
    """One run's queue of work, its tasks in flight and the rows they bring back."""

    def __init__(self, store, factory, options, engine, batch_size, progress, client) -> None:
        from distributed import as_completed
        from tqdm.auto import tqdm

        self.store, self.factory, self.options, self.engine = store, factory, options, engine
        self.batch_size, self.client, self.report = batch_size, client, EmbedReport()
        self.chunk = -(-engine.tiles_per_task // batch_size) * batch_size
        self.run_id = uuid.uuid4().hex[
            :12
        ]  # in every key: two runs on one scheduler never share a task
        # a worker keeps the encoder it built while runs give the same factory and weights
        self.token = f"{store.encoder}:{store.weights_id}:{factory!r}"
        self.queue: deque[tuple[str, _Slide, int, int, str | None]] = deque()
        self.tasks: dict[str, tuple[str, _Slide, int, int]] = {}
        self.done = as_completed() if client is not None else ()  # None: nothing to submit
        self.bar = tqdm(total=0, unit="patch", desc="embed", disable=not progress,
                        file=sys.stderr, dynamic_ncols=True)  # fmt: skip

    def run(self, slides: Sequence[Path]) -> EmbedReport:
        for path in slides:
            slide = _Slide(Path(path), opaque_id(path))
            if self.store.is_complete(slide.slide_id):  # never redone
                meta = self.store.entry(slide.slide_id).meta
                check_same_plan(meta, path, self.options, slide.slide_id)
                self._result(slide, {**meta, "status": "already done"})
                continue
            planned = resume_plan(self.store, path, self.options)
            if planned is None:
                self.queue.append(("plan", slide, 0, 0, None))
            else:
                self._planned(slide, *planned)
        self._fill()
        for future in self.done:
            kind, slide, start, attempt = self.tasks.pop(future.key)
            if not slide.failed:
                if future.status == "finished":
                    self._finished(kind, slide, start, future.result())
                else:  # erred, or cancelled (a scheduler restarted under it)
                    self._failed(kind, slide, start, attempt, _error_of(future))
            future.release()
            self._fill()
        self.bar.close()
        return self.report

    def _fill(self) -> None:
        """Submit queued work while fewer than two tasks per worker thread are in flight."""
        if not self.queue:
            return
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        limit = 2 * max(1, sum(w.get("nthreads", 1) for w in workers.values()))
        while self.queue and len(self.tasks) < limit:
            kind, slide, start, attempt, avoid = self.queue.popleft()
            if slide.failed:
                continue
            slide.started = slide.started or time.perf_counter()
            if kind == "plan":
                args = (plan_task, str(slide.path), slide.slide_id, self.options,
                        store_identity(self.store))  # fmt: skip
            else:
                coords = slide.coords[start : start + self.chunk]
                normalize = normalizer_of(slide.plan, self.store.stain_target)
                tiles = TileShard(str(slide.path), slide.slide_id,
                                  PatchGrid.from_dict(slide.plan["grid"]), coords, start, normalize)  # fmt: skip
                args = (embed_task, tiles, self.factory, self.token, self.batch_size,
                        self.engine.task_threads)  # fmt: skip
            others = [w for w in workers if w != avoid] if avoid else None
            where = {"workers": others, "allow_other_workers": True} if others else {}
            future = self.client.submit(*args, key=f"htd-{kind}-{slide.slide_id}-{start}-{attempt}-{self.run_id}",
                                        pure=False, retries=0, **where)  # fmt: skip
            self.tasks[future.key] = (kind, slide, start, attempt)
            self.done.add(future)

    def _planned(self, slide: _Slide, plan: dict[str, Any], coords: np.ndarray) -> None:
        slide.plan, slide.coords = plan, coords
        slide.rows = SlideRows(self.store, plan)
        self.bar.total += slide.rows.n
        self.bar.update(slide.rows.n - slide.rows.remaining)
        if not slide.rows.remaining:
            self._commit(slide)
            return
        starts = range(slide.rows.done, slide.rows.n, self.chunk)  # first: a started slide's
        self.queue.extendleft(("embed", slide, s, 0, None) for s in reversed(starts))

    def _finished(self, kind: str, slide: _Slide, start: int, value: Any) -> None:
        if kind == "plan":
            plan, coords = value
            save_plan(self.store, plan, coords)
            self._planned(slide, plan, coords)
            return
        slide.ready[start] = value
        rows = slide.rows
        while rows.done in slide.ready:  # in order: progress.json stays a count of final rows
            half = slide.ready.pop(rows.done)
            rows.write(half)
            self.bar.update(len(half))
        if rows.done == rows.n:
            self._commit(slide)

    def _commit(self, slide: _Slide) -> None:
        now = time.perf_counter()
        self._result(slide, slide.rows.finish(now - (slide.started or now)))

    def _result(self, slide: _Slide, meta: dict[str, Any]) -> None:
        self.report.results[slide.slide_id] = meta
        self.report.names[slide.slide_id] = slide.path.name

    def _failed(self, kind: str, slide: _Slide, start: int, attempt: int, exc: Any) -> None:
        worker = getattr(exc, "worker", None)
        message = str(exc) if isinstance(exc, TaskFailed) else f"{type(exc).__name__}: {exc}"
        where = f" on {worker}" if worker else ""
        if attempt < self.engine.retries:
            print(f"htd discover embed: {kind} task of slide {slide.slide_id} failed{where} "
                  f"({message}); retrying (attempt {attempt + 2} of {self.engine.retries + 1})",
                  file=sys.stderr)  # fmt: skip
            self.queue.appendleft((kind, slide, start, attempt + 1, worker))
            return
        slide.failed = True
        self.report.skipped[str(slide.path)] = message


def _error_of(future: Any) -> BaseException:
    try:
        return future.exception()
    except Exception as exc:  # a cancelled future has no exception of its own
        return exc
