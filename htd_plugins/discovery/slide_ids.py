"""``slide_ids.csv``: the one file that links opaque slide ids to slide file names.

Every other discovery output names a slide by its opaque id only
(:func:`htd_core.images.opaque_id`), because a file name can identify a patient (a TCGA
name is a patient barcode). To let the person who ran discovery tell which map is which
slide, ``embed`` (in the store) and a ``maps`` run given slide files (in the maps folder)
keep ``slide_ids.csv`` (columns ``slide_id,file_name``; the name only, never the folder),
readable by its owner only (mode 0600). It is local: leave it out of anything shared.

Several processes or shards write one output folder: each merges its rows into the file
under an exclusive ``flock`` of the folder, then replaces the file atomically.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
from collections.abc import Mapping
from pathlib import Path

from htd_core.io import atomic_open

#: The file's name inside an output folder.
SLIDE_IDS = "slide_ids.csv"


def read_slide_ids(folder: str | Path) -> dict[str, str]:
    """Opaque slide id -> file name, from ``folder/slide_ids.csv`` ({} when there is none)."""
    path = Path(folder) / SLIDE_IDS
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["slide_id"]: row["file_name"] for row in csv.DictReader(fh)}


def record_slide_ids(folder: str | Path, names: Mapping[str, str]) -> Path | None:
    """Merge ``names`` (opaque id -> file name) into ``folder/slide_ids.csv``; returns the
    file (None when ``names`` is empty). Rows are sorted by id; a later name for an id
    replaces the earlier one."""
    if not names:
        return None
    folder = Path(folder)
    path = folder / SLIDE_IDS
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time across processes and shards
        rows = {**read_slide_ids(folder), **{k: Path(v).name for k, v in names.items()}}
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["slide_id", "file_name"])
        writer.writerows(sorted(rows.items()))
        with atomic_open(path, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # owner only, before it is visible under its name
            fh.write(buf.getvalue())
    finally:
        os.close(fd)  # closing drops the lock
    return path
