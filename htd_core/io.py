"""Atomic file writing: a file either exists whole or not at all.

Every stage writes through these helpers (temp file in the same folder, fsync, rename), so
a run killed at any instant never leaves a half-written image, manifest or checkpoint. Files
and folders get the permissions of the user's umask (as ``open`` would give them), not the
private 0600 / 0700 of ``tempfile``. Every output folder htd creates carries a marker file
(:data:`MARKER`, naming its kind), which is how htd knows a folder is its own: it replaces
or resumes only marked folders and never deletes or renames anything else
(:mod:`htd_core.outputs` validates output locations with it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

#: The file that marks a folder as an htd output: ``{"kind": ..., "htd_version": ...}``.
MARKER = "htd-output.json"


def current_umask() -> int:
    """The process umask (read from ``/proc`` on Linux, else by setting and restoring it)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The errors of a full disk (or a full quota).
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", size: int | None = None) -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on clean exit rename it over ``path``.

    The file gets mode ``0o666 & ~umask`` (``mkstemp`` alone would make it 0600).

    Args:
        size: the bytes the file will hold, when known (for a full disk's message).

    Raises:
        DiskFullError: the disk ran full (the temp file is removed, ``path`` untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise disk_full(path, size) from None
        raise
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as fh:
            try:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                with contextlib.suppress(OSError, ValueError):
                    written = fh.tell()  # what was asked for so far: a lower bound
                raise
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise disk_full(path, max(size or 0, written) or None) from None
        raise


def disk_full(path: str | Path, needed: int | None = None, what: str | None = None) -> Exception:
    """The one-line error of a full disk while writing ``path`` (a file or an output folder):
    the folder, the space free there, and the space ``what`` (default: the file) needs more
    when known (``needed`` bytes).

    Returns:
        DiskFullError, for the caller to raise.
    """
    from htd_core.errors import DiskFullError

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    try:
        free = _bytes(shutil.disk_usage(folder).free)
    except OSError:
        free = "unknown"
    subject = what or (path.name if folder != path else None)
    need = f"; about {_bytes(needed)} more needed for {subject}" if needed and subject else ""
    return DiskFullError(
        f"no space left on device writing {folder} ({free} free there{need}): free space on "
        "that disk (or write the output to another), then rerun the same command: it resumes "
        "from what was written whole"
    )


def _bytes(n: float) -> str:
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb", size=len(data)) as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", size=len(text.encode())) as fh:
        fh.write(text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_image(path: str | Path, array: Any, **pil_options: Any) -> None:
    """Save a uint8 array (H x W x 3 RGB, or H x W index) as an image, atomically."""
    from PIL import Image

    path = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
    with atomic_open(path, "wb") as fh:
        Image.fromarray(array).save(fh, format=fmt.get(path.suffix.lower(), "PNG"), **pil_options)


def atomic_save_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` to a temp file then rename (checkpoints)."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files left by a killed writer; returns how many were removed."""
    n = 0
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            n += 1
    return n


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of an htd output folder (its kind and htd version), or None."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("kind"), str) else None


def write_marker(folder: str | Path, kind: str) -> None:
    """Mark ``folder`` as an htd output of ``kind`` (atomically; the folder must exist)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        htd_version = version("heterotissue")
    except PackageNotFoundError:  # a source tree without install
        htd_version = "unknown"
    atomic_write_json(Path(folder) / MARKER, {"kind": kind, "htd_version": htd_version})


def is_htd_output(folder: str | Path, kind: str | None, legacy: tuple[str, ...] = ()) -> bool:
    """Whether ``folder`` was written by htd as an output of ``kind`` (None: of any kind).

    Args:
        legacy: files or folders that all exist in an output of this kind written before
            htd marked its outputs (recognised only when ``folder`` has no marker at all).
    """
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None:
        return kind is None or marker["kind"] == kind
    return (
        bool(legacy)
        and not (folder / MARKER).exists()
        and all((folder / name).exists() for name in legacy)
    )


def atomic_write_folder(
    path: str | Path,
    write: Callable[[Path], None],
    *,
    kind: str | None = None,
    legacy: tuple[str, ...] = (),
) -> None:
    """Call ``write(tmp)`` on a fresh temp folder beside ``path``, then swap it into ``path``
    (model folders, autoencoders), marked as an htd output of ``kind``.

    ``path`` may be absent, an empty folder (filled in place: the user's folder is kept), or
    an htd output of the same ``kind`` (replaced; ``legacy`` as in :func:`is_htd_output`).
    Anything else is refused before ``write`` runs: htd never replaces a file or a folder it
    did not write. A crash while writing leaves the previous folder (if any) untouched and
    removes the temp folder.

    Raises:
        InputError: ``path`` is a file, or a non-empty folder that is not such an htd output.
    """
    from htd_core.errors import InputError

    path = Path(path)
    kind = kind or "folder"
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file: htd writes a folder there and never replaces a file")
    if path.is_dir() and any(path.iterdir()) and not is_htd_output(path, kind, legacy):
        raise InputError(_not_ours(path, kind))
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    tmp.mkdir()  # umask permissions (mkdtemp would give 0700)
    try:
        write(tmp)
        write_marker(tmp, kind)
        _umask_modes(tmp)  # libraries that write through mkstemp (safetensors) leave 0600
        if not path.exists():
            os.replace(tmp, path)
        elif not any(path.iterdir()):  # the user's empty folder: fill it, keep the folder
            for entry in tmp.iterdir():
                os.replace(entry, path / entry.name)
            tmp.rmdir()
        else:  # our own previous output: swap, then delete it
            old = path.with_name(f".{path.name}.{tag}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask_modes(folder: Path) -> None:
    """Give every file below ``folder`` mode ``0o666 & ~umask`` (as htd's own writes)."""
    mode = 0o666 & ~current_umask()
    for entry in folder.rglob("*"):
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, mode)


def _not_ours(path: Path, kind: str) -> str:
    entries = sorted(p.name for p in path.iterdir())
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    marker = read_marker(path)
    what = f"an htd {marker['kind']} output" if marker else f"files htd did not write ({shown})"
    return (
        f"{path} already holds {what}: htd writes a new {kind} there only into a new or empty "
        "folder, or over its own earlier output of the same kind; choose another folder"
    )
