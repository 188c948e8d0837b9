"""Output locks: one writer per output folder; a killed writer's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from htd_core.errors import InputError
from htd_core.locks import LOCK, acquire, beside, holds, release
from htd_core.outputs import (
    check_output,
    output_folder,
    release_output,
    release_outputs,
    start_output,
)

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from htd_core.outputs import start_output, whole_output_lock
if sys.argv[2] == "folder":
    start_output(sys.argv[1], "sample", what="OUTPUT", part=(sys.argv[3:] or [None])[0])
else:
    held = whole_output_lock(sys.argv[1], "OUTPUT")
    held.__enter__()
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin (or kills us)
"""


def hold(path: Path, how: str = "folder", part: str | None = None) -> subprocess.Popen:
    """Another process that locks ``path`` (or its ``part``) and keeps the lock until killed
    or stdin closes."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), how, *([part] if part else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture(autouse=True)
def _no_lock_left():
    yield
    release_outputs()


def test_a_folder_another_process_writes_is_refused_naming_it(tmp_path):
    out = tmp_path / "out"
    proc = hold(out)
    try:
        for call in (check_output, start_output):
            with pytest.raises(InputError) as err:
                call(out, "sample", what="OUTPUT")
            message = str(err.value)
            assert message.startswith(f"OUTPUT {out} is being written by pid {proc.pid} on ")
            assert socket.gethostname() in message and "choose another output" in message
            assert "\n" not in message
        with pytest.raises(InputError, match=f"pid {proc.pid}"):
            with output_folder(out, "sample", what="OUTPUT"):
                pytest.fail("entered a folder another process holds")
        assert sorted(p.name for p in out.iterdir()) == [LOCK, "htd-output.json"]
    finally:
        proc.communicate("")  # the holder ends cleanly: releases and deletes its lock
    assert sorted(p.name for p in out.iterdir()) == ["htd-output.json"]
    assert start_output(out, "sample") is True  # free again: resumed


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "out"
    proc = hold(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    record = json.loads((out / LOCK).read_text())
    assert record["pid"] == proc.pid  # the file stays; the kernel dropped the lock
    assert check_output(out, "sample") is True
    assert start_output(out, "sample") is True
    assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    release_output(out)
    assert not (out / LOCK).exists()


def test_a_folder_left_with_only_a_stale_lock_is_new(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK).write_text('{"pid": 1}')  # a run killed between its lock and its marker
    assert check_output(out, "sample") is False
    with pytest.raises(RuntimeError):
        with output_folder(out, "sample"):
            raise RuntimeError("failed before writing")
    assert list(out.iterdir()) == []  # our stale lock and marker gone; the folder was there


def test_locks_are_reentrant_within_a_process_and_released_whole(tmp_path):
    lock = tmp_path / LOCK
    acquire(lock, "OUTPUT", tmp_path)
    acquire(lock, "OUTPUT", tmp_path)
    release(lock)
    assert holds(lock) and lock.exists()
    release(lock)
    assert not holds(lock) and not lock.exists()


def test_a_whole_output_is_locked_beside_it(tmp_path):
    out = tmp_path / "vae"
    proc = hold(out, "whole")
    try:
        assert beside(out).is_file() and not out.exists()
        with pytest.raises(InputError, match=f"OUTPUT {out} is being written by pid {proc.pid}"):
            check_output(out, "autoencoder", what="OUTPUT")
    finally:
        proc.communicate("")
    assert not beside(out).exists()
    check_output(out, "autoencoder", what="OUTPUT")


def test_output_folder_releases_its_lock_at_the_end(tmp_path):
    out = tmp_path / "out"
    with output_folder(out, "sample"):
        assert holds(out / LOCK)
        (out / "result.txt").write_text("x")
    assert not holds(out / LOCK) and not (out / LOCK).exists()


def test_an_output_another_run_started_between_our_check_and_our_lock_is_refused(tmp_path):
    """The second run checked a new folder, the first then wrote (and finished) it: the
    second, once it holds the lock, refuses rather than mixing into it."""
    out = tmp_path / "out"
    assert check_output(out, "sample") is False  # our check: a new output
    proc = hold(out)  # another run starts it...
    proc.communicate("")  # ...and ends
    with pytest.raises(InputError, match=f"{out} was started by another run while this one"):
        start_output(out, "sample")
    assert not (out / LOCK).exists()  # our lock released with the refusal
    assert start_output(out, "sample") is True  # checked afresh: a resume


def test_the_parts_of_a_shared_output_lock_their_own_part(tmp_path):
    """`htd discover embed --shard i/n`: the jobs of one store run together, each locking its
    shard; the same shard twice is refused, naming the job that holds it."""
    out = tmp_path / "store"
    proc = hold(out, part="shard-0-of-2")
    try:
        assert start_output(out, "sample", part="shard-1-of-2") is True  # the other part
        with pytest.raises(InputError, match=f"is being written by pid {proc.pid}"):
            check_output(out, "sample", part="shard-0-of-2")
        release_output(out, "shard-1-of-2")
    finally:
        proc.communicate("")
    assert sorted(p.name for p in out.iterdir()) == ["htd-output.json"]


def test_the_other_ranks_of_a_distributed_launch_write_what_the_main_rank_locked(
    tmp_path, monkeypatch
):
    """`accelerate launch htd train`: every rank opens the run folder; rank 0 holds the lock,
    the others neither take it nor are refused by it."""
    out = tmp_path / "run"
    proc = hold(out)  # rank 0
    try:
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "1")
        assert check_output(out, "sample") is True
        with output_folder(out, "sample") as resume:
            assert resume is True and not holds(out / LOCK)
        monkeypatch.setenv("RANK", "0")  # a second main rank is refused as any second run
        with pytest.raises(InputError, match=f"pid {proc.pid}"):
            check_output(out, "sample")
    finally:
        proc.communicate("")


def test_a_secondary_rank_first_into_a_new_folder_leaves_the_marking_to_the_main_rank(
    tmp_path, monkeypatch
):
    """Ranks start together: rank 1 may open a new run folder between rank 0's first check
    (empty) and its check under the lock. Rank 1 marks nothing, so rank 0 is not told that
    another run started the folder (as it was under load, in a 2-process accelerate test)."""
    out = tmp_path / "run"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert check_output(out, "sample") is False  # rank 0's first check: a new folder
    monkeypatch.setenv("RANK", "1")
    assert start_output(out, "sample") is False  # rank 1 comes first
    assert not any(out.iterdir())  # no marker, no lock: rank 0's
    monkeypatch.setenv("RANK", "0")
    assert start_output(out, "sample") is False  # not "started by another run"
    assert (out / "htd-output.json").is_file() and holds(out / LOCK)
    release_output(out)
