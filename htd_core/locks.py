"""Exclusive locks on what a run writes: one writer per output, for the life of the run.

A lock is a small file (:data:`LOCK`, inside an output folder, or beside an output that is
written whole at the end, see :func:`beside`) holding the writer's pid, host, start time and
command, locked with ``flock``. The kernel drops the lock when its process ends, however it
ends, so the lock of a killed run is stale by construction and the next run takes it over;
the file is only what the refusal quotes. A second run that finds the lock held refuses in
one line naming the holder (:class:`~htd_core.errors.InputError`, exit 2).

Under a distributed launch (``accelerate launch``, ``torchrun``: ``WORLD_SIZE`` > 1) only the
main process (``RANK`` 0) locks: the other ranks write what it locked, together
(:func:`secondary_rank`).

Locks are re-entrant within a process (a command that checks, then starts, then reopens its
output counts its holds) and released by :func:`release` or :func:`release_all` (the CLI
calls it when a command ends, and the process at its normal exit), which delete the file
while still holding it.

Example:
    >>> acquire(out / LOCK, "OUTPUT", out)   # doctest: +SKIP
    >>> release(out / LOCK)                  # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from htd_core.errors import InputError

#: The lock file inside an output folder.
LOCK = ".htd-lock"

_HELD: dict[str, list[int]] = {}  # lock path -> [fd, holds]
_AT_EXIT: list[bool] = []  # whether release_all is registered with atexit


def beside(path: str | Path) -> Path:
    """The lock file of an output written whole at the end (a model folder, a slide file):
    ``.NAME.htd-lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}{LOCK}")


def acquire(lock: str | Path, what: str, target: str | Path) -> None:
    """Take the exclusive lock ``lock`` (creating it) for this process, or refuse.

    Args:
        lock: the lock file (its folder must exist).
        what: how the error names ``target`` (``"OUTPUT"``, ``"--out"``).
        target: the output the lock protects, as the user gave it.

    Raises:
        InputError: another live process holds the lock (its pid, host, start and command
            are named), or the lock file cannot be created.
    """
    import fcntl

    if secondary_rank():
        return  # the main rank holds it for every rank of the launch
    key = _key(lock)
    if key in _HELD:
        _HELD[key][1] += 1
        return
    for _ in range(5):  # the holder may delete the file between our open and our lock
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"{what} {target}: cannot create its lock file {lock}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(_in_use(lock, what, target)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a file its holder had just deleted: try the new one
    else:
        raise InputError(f"{what} {target}: its lock {lock} keeps changing; retry")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now(),
              "command": " ".join(["htd", *sys.argv[1:]])[:200]}  # fmt: skip
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    if not _AT_EXIT:
        atexit.register(release_all)  # a clean exit leaves no lock file
        _AT_EXIT.append(True)
    _HELD[key] = [fd, 1]


def check_free(lock: str | Path, what: str, target: str | Path) -> None:
    """Refuse early (before any work) when another process holds ``lock``; takes nothing.

    Raises:
        InputError: another live process holds the lock (named as :func:`acquire` does).
    """
    import fcntl

    if _key(lock) in _HELD or secondary_rank():
        return
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return  # no lock file (or none we can read): nobody to wait for
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(_in_use(lock, what, target)) from None
    finally:
        os.close(fd)  # closing drops the probe's lock


def release(lock: str | Path) -> None:
    """Drop one hold of ``lock``; the last one deletes the file (while locked) and unlocks."""
    key = _key(lock)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    with contextlib.suppress(OSError):
        os.unlink(key)
    os.close(held[0])


def release_all() -> None:
    """Release every lock this process holds (the CLI, when a command ends)."""
    for key in list(_HELD):
        _HELD[key][1] = 1
        release(key)


def secondary_rank() -> bool:
    """Whether this process is a rank other than the main one of a distributed launch
    (``WORLD_SIZE`` > 1 and ``RANK`` > 0, as accelerate and torchrun set them)."""
    try:
        world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    except ValueError:
        return False
    return world > 1 and rank > 0


def held_outputs() -> list[Path]:
    """The outputs this process holds locks on (the folder of an in-folder lock, the path of
    a lock beside an output), most recent first."""
    outputs = []
    for key in reversed(list(_HELD)):
        lock = Path(key)  # LOCK or LOCK.part inside a folder; .NAME + LOCK beside an output
        inside = lock.name.startswith(LOCK)
        outputs.append(lock.parent if inside else lock.with_name(lock.name[1 : -len(LOCK)]))
    return outputs


def holds(lock: str | Path) -> bool:
    """Whether this process holds ``lock``."""
    return _key(lock) in _HELD


def _in_use(lock: str | Path, what: str, target: str | Path) -> str:
    try:
        record = json.loads(Path(lock).read_text())
        holder = (
            f"pid {record['pid']} on {record['host']} since {record['since']} "
            f"(`{record['command']}`)"
        )
    except (OSError, ValueError, KeyError, TypeError):
        holder = "another process"
    return (
        f"{what} {target} is being written by {holder}: two runs never write one output; "
        "wait for that run to end (or stop it) and rerun to resume, or choose another output"
    )


def _key(lock: str | Path) -> str:
    path = Path(lock)
    return str(path.parent.resolve() / path.name)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
