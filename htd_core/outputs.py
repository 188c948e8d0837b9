"""Output locations: checked before any expensive work, and never at the cost of a user's data.

Every command that writes an output folder calls :func:`check_output` before it reads data,
loads a model or trains anything, and writes inside :func:`output_folder` (or after
:func:`start_output`, once every input and option is validated). The rules:

* a path that exists as a file: refused (htd never replaces a file it did not write);
* a folder htd cannot write in (or a missing one whose nearest existing parent it cannot
  write in, or whose "parent" is a file): refused;
* a non-empty folder that is not an htd output of the same kind (no marker, see
  :data:`htd_core.io.MARKER`, or another kind's): refused, naming it and what it holds;
* an htd output of the same kind: resumed;
* a missing or empty folder (or one holding only the temp file of a marker write that a kill
  interrupted before its rename, or the stale lock of a killed run): a new output;
* a folder another live process is writing (its lock, :mod:`htd_core.locks`): refused,
  naming that process.

:func:`start_output` takes the folder's exclusive lock for the life of the run (until
:func:`release_output`, the end of :func:`output_folder`'s block, the end of the CLI command,
or the end of the process), so two runs never write one output folder.

A run that fails before it wrote any result leaves nothing behind: :func:`output_folder`
removes the folders it created (and its marker) when the block raises and they hold nothing
else.

Example:
    >>> resume = check_output(out, "sample")         # doctest: +SKIP  (cheap, before work)
    >>> with output_folder(out, "sample"):           # doctest: +SKIP
    ...     write_everything(out)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from htd_core.errors import InputError
from htd_core.io import DISK_FULL, MARKER, disk_full, is_htd_output, read_marker, write_marker
from htd_core.locks import (
    LOCK,
    acquire,
    beside,
    check_free,
    release,
    release_all,
    secondary_rank,
)

#: What the first check of each output found (new or resumed), until the run releases it: a
#: run that finds, once it holds the lock, that another run started the output meanwhile
#: (between its first check and its lock) refuses instead of mixing into it.
_FIRST_CHECK: dict[str, bool] = {}


def check_output(
    path: str | Path,
    kind: str,
    *,
    what: str = "output folder",
    legacy: tuple[str, ...] = (),
    part: str | None = None,
) -> bool:
    """Validate an output folder location; True when it is an htd ``kind`` output to resume.

    Args:
        path: the folder a command will write.
        kind: the kind of output (``"sample"``, ``"autoencoder"``, ``"evaluation"``...).
        what: how the error names the path (the option: ``"--out"``, ``"OUTPUT"``).
        legacy: files that all exist in a ``kind`` output written before htd marked its
            outputs (:func:`htd_core.io.is_htd_output`).
        part: the part of a shared output this run writes (``htd discover --shard i/n``: the
            jobs of one store write disjoint slides); the lock is then the part's own.

    Raises:
        InputError: one line naming ``path``, what is wrong and the fix (another process
            writing it: that process's pid, host and command).
    """
    path = Path(path)
    if path.parent.is_dir():
        check_free(beside(path), what, path)
    if path.exists() and not path.is_dir():
        raise InputError(
            f"{what} {path} is a file: htd writes a folder there and never replaces a file; "
            "give a new folder name"
        )
    if not path.exists():
        parent = _existing_parent(path)
        if not parent.is_dir():
            raise InputError(f"{what} {path}: {parent} is a file, so no folder can be made there")
        if not writable(parent):
            raise InputError(
                f"{what} {path}: cannot create it, {parent} is not writable; choose a writable "
                "location"
            )
        return _first(path, False)
    if not writable(path):
        raise InputError(f"{what} {path} is not writable: choose a writable folder")
    check_free(path / lock_name(part), what, path)
    if all(_marker_temp(p) or p.name.startswith(LOCK) for p in path.iterdir()):
        return _first(path, False)  # empty, or only what a run killed before its first write left
    if is_htd_output(path, kind, legacy):
        return _first(path, True)
    entries = sorted(p.name for p in path.iterdir())
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    marker = read_marker(path)
    holds = f"an htd {marker['kind']!r} output" if marker else f"files htd did not write ({shown})"
    raise InputError(
        f"{what} {path} already holds {holds}: htd writes its {kind!r} output only into a new "
        "or empty folder, or resumes its own; choose another folder"
    )


def start_output(
    path: str | Path,
    kind: str,
    *,
    what: str = "output folder",
    legacy: tuple[str, ...] = (),
    part: str | None = None,
) -> bool:
    """Check, create, lock and mark an output folder (once every input and option is
    validated); returns whether it resumes. The lock is held until :func:`release_output` (or
    the command's or the process's end). :func:`output_folder` does the same, releases the
    lock at the end of its block and cleans up on failure.

    Raises:
        InputError: as :func:`check_output`; another process took the lock meanwhile.
    """
    path = Path(path)
    check_output(path, kind, what=what, legacy=legacy, part=part)
    path.mkdir(parents=True, exist_ok=True)
    acquire(path / lock_name(part), what, path)
    first = _FIRST_CHECK.get(_key(path))
    try:  # again, under the lock (the parts of a shared output start it together)
        resume = check_output(path, kind, what=what, legacy=legacy, part=part)
        if first is False and resume and part is None and not secondary_rank():
            raise InputError(
                f"{what} {path} was started by another run while this one checked its inputs: "
                "rerun the same command to resume it (two runs never write one output)"
            )
    except BaseException:
        release_output(path, part)
        raise
    if part is None and secondary_rank():  # the main rank marks a whole output: a mark of
        return resume  # ours could land between its first check and the one above
    if read_marker(path) is None:
        write_marker(path, kind)
    for stale in filter(_marker_temp, path.iterdir()):  # ours: a killed marker write's temp
        stale.unlink(missing_ok=True)
    return resume


def release_output(path: str | Path, part: str | None = None) -> None:
    """Release the lock :func:`start_output` took on ``path`` (deleting the lock file)."""
    release(Path(path) / lock_name(part))
    _FIRST_CHECK.pop(_key(path), None)


def lock_name(part: str | None = None) -> str:
    """The lock file of an output folder, or of one ``part`` of a shared one."""
    return LOCK if part is None else f"{LOCK}.{part}"


def release_outputs() -> None:
    """Release every output this process holds and forget its checks (a command's end)."""
    release_all()
    _FIRST_CHECK.clear()


def _first(path: Path, resume: bool) -> bool:
    """Record what the first check of ``path`` found (:data:`_FIRST_CHECK`); return it."""
    _FIRST_CHECK.setdefault(_key(path), resume)
    return resume


def _key(path: str | Path) -> str:
    return str(Path(path).absolute())


@contextlib.contextmanager
def whole_output_lock(path: str | Path, what: str = "output") -> Iterator[None]:
    """Lock, for the block, an output written whole at its end (an autoencoder folder swapped
    in by :func:`htd_core.io.atomic_write_folder`, a slide and its sidecars): the lock file is
    beside it (:func:`htd_core.locks.beside`), with the run's checkpoint. Enter it once inputs
    are validated, before the first write; it creates the parent folder.

    Raises:
        InputError: another process holds the lock (named), or it cannot be created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    acquire(beside(path), what, path)
    try:
        yield
    finally:
        release(beside(path))


def _marker_temp(entry: Path) -> bool:
    """Whether ``entry`` is the temp file of a marker write (``.htd-output.json.*.tmp``, as
    :func:`htd_core.io.atomic_open` names it) that a kill left before its rename."""
    name = entry.name
    return name.startswith(f".{MARKER}.") and name.endswith(".tmp") and entry.is_file()


@contextlib.contextmanager
def output_folder(
    path: str | Path,
    kind: str,
    *,
    what: str = "output folder",
    legacy: tuple[str, ...] = (),
    has_results: Callable[[Path], bool] | None = None,
    part: str | None = None,
) -> Iterator[bool]:
    """Create (or reopen) an output folder marked as ``kind``; yields whether it resumes.

    The folder is locked for the block (:func:`start_output`). When the block raises on a new
    output (the folder was missing or empty) that holds no result yet (``has_results(path)``
    is false; without it: nothing but the marker), everything in it is removed and the folders
    this call created too: all of it was written by this run, under its lock, and a run that
    fails before writing a result leaves nothing behind. A resumed output is never touched.
    A full disk met in the block (``ENOSPC`` from any writer) becomes one
    :class:`~htd_core.errors.DiskFullError` line naming ``path``.

    Raises:
        InputError: as :func:`start_output`.
        DiskFullError: the disk ran full in the block.
    """
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]
    resume = start_output(path, kind, what=what, legacy=legacy, part=part)
    try:
        yield resume
    except BaseException as exc:
        release_output(path, part)
        full = isinstance(exc, OSError) and exc.errno in DISK_FULL  # a library's write
        error = disk_full(path) if full else None  # named before any cleanup
        with contextlib.suppress(OSError):
            only_marker = [p.name for p in path.iterdir()] == [MARKER]
            alone = part is None and not secondary_rank()  # other parts or ranks may write
            if alone and not resume and (only_marker or (has_results and not has_results(path))):
                for entry in path.iterdir():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            for folder in created:  # deepest first
                folder.rmdir()  # fails (and stops) on a folder that holds anything
        if error is not None:
            raise error from None
        raise
    release_output(path, part)


def holds_more_than(*scaffold: str) -> Callable[[Path], bool]:
    """A ``has_results`` for :func:`output_folder`: whether the folder holds an entry other
    than the ``scaffold`` a run writes before its first result, the marker, the lock and
    folders without a file."""
    known = {*scaffold, MARKER}

    def result(entry: Path) -> bool:
        if entry.name.startswith(LOCK):
            return False
        if entry.is_dir() and not entry.is_symlink():
            return any(p.is_file() for p in entry.rglob("*"))
        return True

    return lambda folder: any(e.name not in known and result(e) for e in folder.iterdir())


def writable(folder: Path) -> bool:
    """Whether this process may create entries in ``folder`` (always true for root)."""
    return os.access(folder, os.W_OK | os.X_OK)


def _existing_parent(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")
