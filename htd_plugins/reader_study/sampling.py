"""Create a study: a balanced, seeded sample of real and synthetic images under opaque ids.

Half of the ``n`` images are real, half synthetic (split as evenly as possible across the
synthetic sets). Each image is decoded and re-encoded as a plain PNG (no EXIF, no text chunks,
EXIF orientation applied) under a random 16-hex-digit id; the answer key goes only into the
study database. The study is built in a hidden temp folder beside ``out`` and renamed into place
at the end, so a failed or interrupted create leaves no half-made study and overwrites nothing.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import random
import re
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from htd_core.errors import InputError
from htd_core.images import read_rgb
from htd_core.io import atomic_open
from htd_plugins.reader_study.db import DB_NAME, IMAGES_DIR, init_db, is_study

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ImageSet:
    """One source of images: ``kind`` is ``real`` or ``synthetic``; ``folder`` holds the files."""

    name: str
    kind: str
    folder: Path


def image_folder(folder: str | Path, option: str) -> Path:
    """The folder whose images to use: ``folder/images`` when present (htd dataset or tile
    folder), else ``folder`` itself."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{option} {folder} is not a folder: give a folder of images")
    sub = folder / "images"
    return sub if sub.is_dir() else folder


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (not hidden), sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def split_counts(n: int, n_sets: int) -> list[int]:
    """Split ``n`` images as evenly as possible over ``n_sets`` sets (earlier sets get extras)."""
    base, extra = divmod(n, n_sets)
    return [base + (1 if i < extra else 0) for i in range(n_sets)]


def set_seed(seed: int, name: str) -> int:
    """A per-set seed, so adding a synthetic set does not change the other sets' draws."""
    return int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:15], 16)


def strip_and_save(src: Path, dst: Path) -> tuple[int, int]:
    """Decode ``src`` to 8-bit RGB (:func:`htd_core.images.read_rgb`: alpha on white, 16-bit
    scaled, grey flagged), apply its EXIF orientation, write a PNG without any metadata."""
    from PIL import Image

    try:
        pixels = read_rgb(src)
    except InputError as exc:
        raise InputError(f"{exc}: remove or fix it") from None
    clean = upright(Image.fromarray(pixels, mode="RGB"), src)  # a new image: no info, exif, text
    with atomic_open(dst, "wb") as fh:
        clean.save(fh, format="PNG", optimize=False)
    return clean.width, clean.height


def upright(image: Any, src: Path) -> Any:
    """``image`` (the pixels of ``src``) turned as ``src``'s EXIF orientation says, as
    :func:`PIL.ImageOps.exif_transpose` turns ``src`` itself."""
    from PIL import ExifTags, Image, UnidentifiedImageError

    try:
        with Image.open(src) as im:
            orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except (OSError, UnidentifiedImageError, ValueError):  # a TIFF only tifffile decodes
        return image
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)  # fmt: skip
    return image if method is None else image.transpose(method)


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder."""
    if not out.exists():
        return
    if is_study(out):
        raise InputError(
            f"--out {out} already holds a reader study: choose a new folder "
            "(htd never overwrites a study)"
        )
    if not out.is_dir() or any(out.iterdir()):
        raise InputError(
            f"--out {out} exists and is not an htd reader study: choose a new or empty folder"
        )


def plan(sets: Sequence[ImageSet], n: int, seed: int) -> list[tuple[ImageSet, Path]]:
    """The seeded, balanced sample: (set, file) pairs, real first then each synthetic set."""
    if n < 2 or n % 2:
        raise InputError(f"--n {n} is invalid: give an even number of at least 2 (half real)")
    names = [s.name for s in sets]
    for s in sets:
        if not SET_NAME_RE.match(s.name) or (s.kind == "synthetic" and s.name == "real"):
            raise InputError(
                f"synthetic set name {s.name!r} is invalid: use letters, digits, . _ - (not 'real')"
            )
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise InputError(f"set name {dup[0]!r} is given twice: give each synthetic set a name")
    folders = [s.folder.resolve() for s in sets]
    if len(set(folders)) != len(folders):
        raise InputError("the same image folder is given twice: give distinct folders")
    real = [s for s in sets if s.kind == "real"]
    synthetic = [s for s in sets if s.kind == "synthetic"]
    if len(real) != 1 or not synthetic:
        raise InputError("a study needs one --real folder and at least one synthetic folder")
    counts = {real[0].name: n // 2}
    counts.update(
        zip([s.name for s in synthetic], split_counts(n // 2, len(synthetic)), strict=True)
    )
    chosen = []
    for s in sets:
        files = list_images(s.folder)
        k = counts[s.name]
        if len(files) < k:
            option = "--real" if s.kind == "real" else f"synthetic set {s.name!r}"
            raise InputError(
                f"--n {n} needs {k} images from {option} {s.folder} but it holds {len(files)}: "
                f"lower --n or add images"
            )
        chosen += [(s, f) for f in random.Random(set_seed(seed, s.name)).sample(files, k)]
    return chosen


def create_study(out: str | Path, sets: Sequence[ImageSet], n: int, seed: int = 0) -> dict:
    """Create the study folder ``out``; return a summary (counts, sizes, token).

    Args:
        out: new (or empty) folder to create.
        sets: one ``real`` set and one or more ``synthetic`` sets.
        n: total number of images (even; half real).
        seed: seed of the sample and of the readers' orders.

    Raises:
        InputError: bad folders, too few images, ``out`` not new (or filled by another run
            while this one sampled), or an unreadable image.
    """
    out = Path(out)
    check_out(out)
    chosen = plan(sets, n, seed)
    token = secrets.token_urlsafe(12)
    missing = [p for p in [out.parent, *out.parent.parents] if not p.exists()][::-1]
    for p in missing:
        p.mkdir()
    staging = out.parent / f".{out.name}.htd-tmp-{secrets.token_hex(4)}"
    try:
        staging.mkdir()  # (umask permissions, unlike mkdtemp's 0700)
        (staging / IMAGES_DIR).mkdir()
        ids: list[str] = []
        while len(ids) < len(chosen):  # random, so ids say nothing about set or file
            new = secrets.token_hex(8)
            ids += [] if new in ids else [new]
        rows, sizes = [], {}
        order = list(range(len(chosen)))
        random.Random(seed).shuffle(order)  # study position: not grouped by set
        for pos, i in enumerate(order):
            s, src = chosen[i]
            w, h = strip_and_save(src, staging / IMAGES_DIR / f"{ids[i]}.png")
            sizes.setdefault(s.kind, set()).add((w, h))
            rows.append((ids[i], pos, s.name, s.kind, src.name, w, h))
        conn = init_db(staging / DB_NAME, {"seed": seed, "token": token, "n": len(chosen)})
        try:
            conn.execute("BEGIN")
            for s in sets:
                k = sum(1 for c in chosen if c[0].name == s.name)
                src = str(s.folder.resolve())
                conn.execute("INSERT INTO sets VALUES (?, ?, ?, ?)", (s.name, s.kind, src, k))
            conn.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        try:
            os.rename(staging, out)  # replaces an empty folder (POSIX), never a non-empty one
        except OSError as exc:  # another `create` filled --out meanwhile: it keeps its study
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise InputError(
                f"--out {out} was filled by another run while this one sampled: that study "
                "stands; choose a new folder for this one"
            ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for p in reversed(missing):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return {
        "out": str(out),
        "n": len(chosen),
        "sets": {s.name: sum(1 for c in chosen if c[0].name == s.name) for s in sets},
        "sizes": {k: sorted(v) for k, v in sizes.items()},
        "token": token,
    }
