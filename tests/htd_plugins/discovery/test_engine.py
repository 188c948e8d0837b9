"""The embed stage on a local Dask cluster: equal to the one-process path, a finished slide
never redone, a killed worker and a failed task cost no slide, a silent scheduler is one line."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import sys
import textwrap
import time

import dask
import numpy as np
import pytest
import torch

from htd_core.cli import main
from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_plugins.discovery import tiatoolbox_sample_image
from htd_plugins.discovery.embed import embed_slide, embed_slides
from htd_plugins.discovery.engine import EngineOptions, open_client
from htd_plugins.discovery.engine_run import embed_on_cluster
from htd_plugins.discovery.patches import GridOptions
from htd_plugins.discovery.store import EmbeddingStore

distributed = pytest.importorskip("distributed")
get_task_stream = distributed.get_task_stream

#: The real H&E image of the tiatoolbox wheel at 2 um/px: 96 tissue patches of 32 px.
OPTIONS = GridOptions(read_mpp=2.0, patch_size=32, stride=25, slide_mpp=0.5)

#: conftest's TinyEncoder (seed 0) with two test hooks, in a module the workers import
#: (spawned worker processes get this process's sys.path): at its second batch, a worker that
#: claims ``kill`` (by deleting the file) SIGKILLs itself; one that claims ``fail`` raises.
WORKER_ENCODER = """
import os
import signal

import torch

from htd_core import Encoder, hookimpl


class HookedEncoder(Encoder):
    name, embed_dim, input_size, weights_id = "tiny", 16, 32, "random"

    def __init__(self, kill=None, fail=None, refuse=False):
        if refuse:
            raise RuntimeError("this run must not embed anything")
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.randn(8, 3, 3, 3, generator=gen) * 0.5
        self.kill, self.fail, self.calls = kill, fail, 0

    @staticmethod
    def claim(path):
        try:
            os.unlink(path)
            return True
        except (TypeError, FileNotFoundError):
            return False

    def forward(self, pixels):
        self.calls += 1
        if self.calls == 2 and self.claim(self.kill):
            with open(self.kill + ".pid", "w") as fh:
                fh.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if self.calls == 2 and self.claim(self.fail):
            raise RuntimeError("simulated failure")
        h = torch.relu(torch.nn.functional.conv2d(pixels, self.weight, padding=1))
        return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


@hookimpl
def htd_register_encoders(registry):
    registry.register("tiny", HookedEncoder)
"""


@pytest.fixture
def hooked(tmp_path_factory, monkeypatch):
    """The workers' encoder class (importable by the spawned workers, and registered as the
    encoder ``tiny`` by an installed plugin of that module)."""
    folder = tmp_path_factory.mktemp("worker_encoder")
    (folder / "htd_test_worker_encoder.py").write_text(textwrap.dedent(WORKER_ENCODER))
    dist = folder / "htdtestworker-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: htdtestworker\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[htd]\nhtdtestworker = htd_test_worker_encoder\n")
    monkeypatch.syspath_prepend(str(folder))
    sys.modules.pop("htd_test_worker_encoder", None)
    import htd_test_worker_encoder

    return htd_test_worker_encoder.HookedEncoder


@pytest.fixture
def slides(tmp_path):
    """Two slides: the tiatoolbox H&E tile under two names (two ids)."""
    folder = tmp_path / "slides"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(tiatoolbox_sample_image(), folder / name)
    return sorted(folder.iterdir())


@pytest.fixture
def reference(tmp_path, slides, hooked, identity_of):
    """The one-process store of both slides (1 torch thread, as each Dask task)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = EmbeddingStore(tmp_path / "reference", identity_of(hooked(), 2.0, 32))
        embed_slides(store, slides, hooked(), OPTIONS, batch_size=16, progress=False)
    finally:
        torch.set_num_threads(threads)
    return store


def assert_equal_stores(store: EmbeddingStore, reference: EmbeddingStore) -> None:
    assert store.slide_ids() == reference.slide_ids()
    for sid in reference.slide_ids():
        ours, theirs = store.entry(sid), reference.entry(sid)
        assert ours.n == theirs.n > 50
        np.testing.assert_array_equal(ours.coords(), theirs.coords())
        a, b = (
            np.asarray(ours.embeddings(), np.float32),
            np.asarray(theirs.embeddings(), np.float32),
        )
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_two_workers_equal_one_process_resume_it_and_never_redo(
    tmp_path, slides, hooked, reference, encoder_cls, capsys
):
    store = EmbeddingStore(tmp_path / "store", reference.info)
    # slide a was started by a one-process run killed after 2 batches: the cluster resumes it
    with pytest.raises(KeyboardInterrupt):
        embed_slide(store, slides[0], encoder_cls(fail_after=2), OPTIONS, batch_size=16,
                    progress=False)  # fmt: skip
    assert (store.slide_folder(opaque_id(slides[0])) / "progress.json").exists()
    gone = tmp_path / "slides" / "gone.png"  # fails on every worker: reported, the rest done
    fail = tmp_path / "fail"  # one embed task fails once
    fail.touch()
    engine = EngineOptions(local_workers=2, tiles_per_task=20, retries=1)  # 32-tile tasks
    factory = functools.partial(hooked, fail=str(fail))
    # without work stealing, which may move a retry back to a busy-elsewhere worker ("where
    # possible"): here the retry's preference for the other worker is what is checked
    with (
        dask.config.set({"distributed.scheduler.work-stealing": False}),
        open_client(engine) as client,
        get_task_stream(client) as stream,
    ):
        report = embed_on_cluster(store, [*slides, gone], factory, OPTIONS, engine,
                                  batch_size=16, progress=False, client=client)  # fmt: skip
    assert {k: v["status"] for k, v in report.results.items()} == {
        opaque_id(s): "done" for s in slides
    }
    assert list(report.skipped) == [str(gone)] and "does not exist" in report.skipped[str(gone)]
    assert not fail.exists() and "simulated failure); retrying" in capsys.readouterr().err
    ran: dict[tuple[str, ...], dict[str, str]] = {}  # task -> attempt -> worker
    for task in stream.data:  # keys: htd-KIND-SLIDE-START-ATTEMPT-RUN
        _, kind, sid, start, attempt, _ = task["key"].split("-")
        ran.setdefault((kind, sid, start), {})[attempt] = task["worker"]
    retried = {k: v for k, v in ran.items() if len(v) > 1}
    assert {k[0] for k in retried} == {"plan", "embed"}  # gone.png's plan, the failed embed
    assert all(v["0"] != v["1"] for v in retried.values())  # each retry on the other worker
    assert_equal_stores(store, reference)
    for sid in store.slide_ids():  # committed: no partial file, no progress left behind
        assert sorted(p.name for p in store.slide_folder(sid).iterdir()) == [
            "coords.npy", "embeddings.f16", "meta.json", "plan.json"
        ]  # fmt: skip
    # rerun: both slides are found complete and nothing is submitted (a built encoder raises)
    refuse = functools.partial(hooked, refuse=True)
    again = embed_on_cluster(store, slides, refuse, OPTIONS, engine, batch_size=16, progress=False)
    assert {v["status"] for v in again.results.values()} == {"already done"}
    assert not again.skipped
    half = embed_on_cluster(store, slides, refuse, OPTIONS, engine, shard=(1, 2), progress=False)
    assert list(half.results) == [opaque_id(slides[1])]  # --shard 1/2: every 2nd slide from 1
    assert_equal_stores(store, reference)


def test_a_killed_worker_and_a_failed_task_lose_and_duplicate_no_slide(
    tmp_path, slides, hooked, reference, capsys
):
    kill, fail = tmp_path / "kill", tmp_path / "fail"
    kill.touch()
    fail.touch()
    store = EmbeddingStore(tmp_path / "store", reference.info)
    factory = functools.partial(hooked, kill=str(kill), fail=str(fail))
    engine = EngineOptions(local_workers=2, tiles_per_task=96, retries=2)  # one task per slide
    with open_client(engine) as client:
        report = embed_on_cluster(store, slides, factory, OPTIONS, engine, batch_size=16,
                                  progress=False, client=client)  # fmt: skip
        # the restarted worker too runs without Dask's MALLOC_TRIM_THRESHOLD_ (1.7x the CPU)
        trim = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    assert trim and set(trim.values()) == {None}
    assert not kill.exists() and not fail.exists()  # a worker died mid-slide, a task failed
    with pytest.raises(ProcessLookupError):  # the worker process that claimed the kill is gone
        os.kill(int((tmp_path / "kill.pid").read_text()), 0)
    assert "simulated failure); retrying" in capsys.readouterr().err
    assert not report.skipped
    assert sorted(report.results) == sorted(opaque_id(s) for s in slides)  # each slide once
    assert {v["status"] for v in report.results.values()} == {"done"}
    assert_equal_stores(store, reference)


def test_the_cli_runs_the_engine_whose_workers_build_the_encoder_by_name(
    tmp_path, slides, hooked, reference, register_plugin, capsys
):
    from htd_plugins.commands import discover

    register_plugin(discover)
    register_plugin(
        sys.modules[hooked.__module__], "htdtestworker"
    )  # here; workers: its entry point
    argv = ["discover", "embed", str(slides[0].parent), "--out", str(tmp_path / "store"),
            "--encoder", "tiny", "--mpp", "2", "--patch-size", "32", "--stride", "25",
            "--slide-mpp", "0.5", "--batch-size", "16", "--engine", "dask", "--local-workers", "1",
            "--tiles-per-task", "40", "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "Dask engine on a local cluster of 1 worker\n" in out.err
    assert sorted(out.out.splitlines()) == sorted(
        f"{opaque_id(s)}: 96 patches (done)" for s in slides
    )
    assert_equal_stores(EmbeddingStore(tmp_path / "store"), reference)


def test_a_silent_scheduler_or_one_without_workers_is_refused_within_the_timeout():
    from distributed import LocalCluster

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(InputError, match=rf"no Dask scheduler answers at --scheduler "
                       rf"tcp://127.0.0.1:{port} within 1 s .*leave --scheduler out"):  # fmt: skip
        with open_client(EngineOptions(scheduler=f"tcp://127.0.0.1:{port}", connect_timeout=1)):
            pass
    assert time.monotonic() - started < 60  # bounded by the timeout (not a speed measurement)
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as bare:
        with pytest.raises(InputError, match="has no worker .*start workers with `dask worker"):
            with open_client(EngineOptions(scheduler=bare.scheduler_address, connect_timeout=1)):
                pass
    with pytest.raises(InputError, match="connect_timeout=0 must be positive"):
        EngineOptions(connect_timeout=0)
