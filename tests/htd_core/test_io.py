"""Atomic writes that never cost a user's data: umask permissions, marked output folders,
output locations validated before any work."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.io import (
    MARKER,
    atomic_save_image,
    atomic_save_torch,
    atomic_write_folder,
    atomic_write_json,
    read_marker,
)
from htd_core.outputs import check_output, output_folder


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_and_folders_follow_the_umask(tmp_path, umask_027):
    """mkstemp / mkdtemp alone give 0600 / 0700: images, JSON, weights and model folders
    must get what ``open`` gives (0666 & ~umask, 0777 & ~umask)."""
    atomic_write_json(tmp_path / "classes.json", {"a": 1})
    atomic_save_image(tmp_path / "img.png", np.zeros((4, 4, 3), np.uint8))
    atomic_save_torch(tmp_path / "w.pt", {"x": 1})
    atomic_write_folder(tmp_path / "model", lambda d: (d / "config.json").write_text("{}"))

    def weights(folder):  # safetensors writes through mkstemp: 0600 on its own
        import torch
        from safetensors.torch import save_file

        save_file({"w": torch.zeros(2)}, folder / "model.safetensors")

    atomic_write_folder(tmp_path / "weights", weights)
    with open(tmp_path / "plain.txt", "w") as fh:  # what the user's umask gives
        fh.write("x")
    for name in ("classes.json", "img.png", "w.pt", "model/config.json", "model/" + MARKER,
                 "weights/model.safetensors"):  # fmt: skip
        assert mode(tmp_path / name) == mode(tmp_path / "plain.txt") == 0o640, name
    assert mode(tmp_path / "model") == 0o750


def test_folder_write_never_replaces_a_file_or_a_users_folder(tmp_path):
    target = tmp_path / "out"
    target.write_text("my notes")
    with pytest.raises(InputError, match="is a file"):
        atomic_write_folder(target, lambda d: (d / "x").write_text("1"), kind="autoencoder")
    assert target.read_text() == "my notes" and sorted(os.listdir(tmp_path)) == ["out"]
    users = tmp_path / "users"
    users.mkdir()
    (users / "important.txt").write_text("keep me")
    with pytest.raises(InputError, match=r"important.txt.*choose another folder"):
        atomic_write_folder(users, lambda d: (d / "x").write_text("1"), kind="autoencoder")
    assert os.listdir(users) == ["important.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out", "users"]  # no .old, no temp folder


def test_folder_write_fills_an_empty_folder_and_replaces_its_own_output(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    inode = os.stat(empty).st_ino
    atomic_write_folder(empty, lambda d: (d / "a.txt").write_text("1"), kind="autoencoder")
    assert os.stat(empty).st_ino == inode  # the user's folder itself is kept
    assert sorted(os.listdir(empty)) == ["a.txt", MARKER]
    assert read_marker(empty)["kind"] == "autoencoder"
    atomic_write_folder(empty, lambda d: (d / "b.txt").write_text("2"), kind="autoencoder")
    assert sorted(os.listdir(empty)) == ["b.txt", MARKER]  # htd's own output: replaced
    with pytest.raises(InputError, match="'autoencoder' output|autoencoder output"):
        atomic_write_folder(empty, lambda d: None, kind="model")  # another kind: refused
    assert sorted(os.listdir(tmp_path)) == ["empty"]


def test_check_output_rules(tmp_path, monkeypatch):
    assert check_output(tmp_path / "new" / "deeper", "sample") is False
    assert not (tmp_path / "new").exists()  # checking creates nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="OUTPUT .*file is a file"):
        check_output(tmp_path / "file", "sample", what="OUTPUT")
    with pytest.raises(InputError, match="is a file, so no folder"):
        check_output(tmp_path / "file" / "sub", "sample")
    mine = tmp_path / "mine"
    with output_folder(mine, "sample") as resume:
        assert resume is False
        (mine / "data.csv").write_text("1")
    assert check_output(mine, "sample") is True
    with pytest.raises(InputError, match="an htd 'sample' output"):
        check_output(mine, "generate")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "sampling.json").write_text("{}")
    assert check_output(legacy, "sample", legacy=("sampling.json",)) is True
    monkeypatch.setattr("htd_core.outputs.writable", lambda folder: False)  # as a non-root user
    with pytest.raises(InputError, match="not writable"):
        check_output(mine, "sample")
    with pytest.raises(InputError, match="cannot create it"):
        check_output(tmp_path / "other", "sample")


def test_a_marker_write_killed_before_its_rename_does_not_block_the_rerun(tmp_path):
    from htd_core.io import MARKER, read_marker
    from htd_core.outputs import release_output, start_output

    # kill -9 between mkdir and the marker's rename leaves only the marker's temp file
    out = tmp_path / "train"
    out.mkdir()
    (out / f".{MARKER}.kfoqno76.tmp").write_text("{")
    assert check_output(out, "training-run") is False
    assert start_output(out, "training-run") is False
    release_output(out)  # the run's lock (held until its end) goes with it
    assert [p.name for p in out.iterdir()] == [MARKER] and read_marker(out)[
        "kind"
    ] == "training-run"
    # beside a user's file the folder is still not ours, and nothing is removed
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("x")
    (user / f".{MARKER}.abc.tmp").write_text("{")
    with pytest.raises(InputError, match="files htd did not write"):
        start_output(user, "training-run")
    assert sorted(p.name for p in user.iterdir()) == [f".{MARKER}.abc.tmp", "notes.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            check_output(ro, "sample")
    finally:
        ro.chmod(0o700)


def test_a_failed_run_leaves_nothing_behind(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), output_folder(target, "sample"):
        raise RuntimeError("bad input found late")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError), output_folder(target, "sample"):
        (target / "result.txt").write_text("1")  # work was written: kept for a resume
        raise RuntimeError("killed")
    assert sorted(os.listdir(target)) == [MARKER, "result.txt"]


def test_a_full_disk_is_one_error_naming_the_folder_and_the_size(tmp_path, monkeypatch):
    """ENOSPC while writing: DiskFullError naming the folder, the space free there and what
    the file needed; the temp file is gone and the previous file untouched."""
    import errno
    import os

    from htd_core.errors import DiskFullError
    from htd_core.io import atomic_write_bytes

    target = tmp_path / "manifest.csv"
    target.write_bytes(b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError) as err:
        atomic_write_bytes(target, b"x" * 3000)
    message = str(err.value)
    assert message.startswith(f"no space left on device writing {tmp_path} (")
    assert "free there; about 2.9 KiB more needed for manifest.csv)" in message
    assert "rerun the same command" in message and "\n" not in message
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [
        "manifest.csv"
    ]


def test_a_new_output_failing_before_its_first_result_is_removed_whole(tmp_path):
    """output_folder(has_results=...): scaffold only (logs/, an empty manifest) -> removed;
    a result (a checkpoint) -> kept for the rerun; a resumed output -> never touched."""
    from htd_core.outputs import holds_more_than, output_folder

    def fail(out, *entries):
        with pytest.raises(RuntimeError):
            with output_folder(out, "training-run", has_results=holds_more_than("logs")):
                for entry in entries:
                    (out / entry).parent.mkdir(parents=True, exist_ok=True)
                    (out / entry).write_text("x")
                raise RuntimeError("failed")

    fail(tmp_path / "a" / "run", "logs/events")
    assert list(tmp_path.iterdir()) == []  # the run folder and the parent it created
    fail(tmp_path / "run", "logs/events", "checkpoints/step-1")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoints", "htd-output.json", "logs"
    ]  # fmt: skip
    fail(tmp_path / "run", "logs/more")  # resumed: what the earlier run wrote stays
    assert (tmp_path / "run" / "checkpoints" / "step-1").is_file()
