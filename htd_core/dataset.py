"""The on-disk dataset layout shared by ``htd sample`` and ``htd generate``.

::

    root/images/000000.png   RGB patch
    root/masks/000000.png    class-index mask (8-bit, ignore index as given in classes.json)
    root/manifest.csv        one row per complete pair: provenance, composition, entropy
    root/classes.json        ClassMap (names, colors, ignore_index)

Writing is resumable: image and mask are written atomically first, then the manifest row is
appended and fsynced, so a row always has its files. On reopening, files without a row
(a kill between the two steps) are removed and writing continues at ``len(writer)``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.images import read_index_mask, read_rgb
from htd_core.io import atomic_save_image, atomic_write_json, remove_stale_temps
from htd_core.types import ClassMap, TissueSample

BASE_COLUMNS = (
    "index",
    "image",
    "mask",
    "slide_id",
    "x",
    "y",
    "level",
    "mpp",
    "patch_size",
    "entropy",
)


def read_class_map(path: str | Path) -> ClassMap:
    """The class list of a ``classes.json`` (a dataset's, a mask folder's).

    Raises:
        InputError: one line naming ``path``: unreadable, not JSON, or not a valid class list
            (no names, an empty or duplicated name, a bad colour or ignore index).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return ClassMap.from_dict(data)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (OSError, TypeError, ValueError) as exc:
        raise InputError(
            f"{path} is not a class list ({exc}): expected "
            '{"names": [...], "colors": [[r, g, b], ...], "ignore_index": 255}'
        ) from None


@contextlib.contextmanager
def disk_full_estimate(writer: DatasetWriter, total: int | None) -> Iterator[None]:
    """Turn a full disk met while ``writer`` writes (htd's writers or a library's) into the one
    line naming the folder, the space free and what the remaining ``total - len(writer)``
    samples need, from the mean size of those written (``total`` None: the line without it).

    Raises:
        DiskFullError: the disk ran full in the block.
    """
    from htd_core.errors import DiskFullError
    from htd_core.io import DISK_FULL, disk_full

    try:
        yield
    except (DiskFullError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in DISK_FULL:
            raise
        left = None if total is None else max(total - len(writer), 0)
        need = writer.bytes_per_sample() * left if left else None
        raise disk_full(writer.root, need, f"the remaining {left} sample(s)") from None


def manifest_columns(root: str | Path) -> tuple[str, ...]:
    """The column names of ``root/manifest.csv`` (empty when there is none)."""
    manifest = Path(root) / "manifest.csv"
    if not manifest.is_file():
        return ()
    with open(manifest, newline="") as fh:
        return tuple(next(csv.reader(fh), ()))


def holds_samples(root: str | Path) -> bool:
    """Whether the dataset folder ``root`` holds at least one sample row (a failed new output
    without one is removed whole, :func:`htd_core.outputs.output_folder`)."""
    manifest = Path(root) / "manifest.csv"
    if not manifest.is_file():
        return False
    with open(manifest) as fh:
        return sum(1 for line, _ in zip(fh, range(2), strict=False) if line.strip()) > 1


def composition_entropy(fractions: Sequence[float]) -> float:
    """Tissue-diversity entropy H = -sum p_i log p_i (natural log) of class fractions."""
    return float(-sum(p * math.log(p) for p in fractions if p > 0))


class DatasetWriter:
    """Append samples to a dataset folder; reopening the folder resumes it.

    Args:
        root: dataset folder (created).
        class_map: classes of every sample; must equal an existing ``classes.json``.
        extra_columns: additional ``meta`` keys to record per row (e.g. crop provenance).
    """

    def __init__(
        self, root: str | Path, class_map: ClassMap, extra_columns: Sequence[str] = ()
    ) -> None:
        self.root = Path(root)
        self.class_map = class_map
        self.columns = (*BASE_COLUMNS, *(f"frac:{n}" for n in class_map.names), *extra_columns)
        classes_path = self.root / "classes.json"
        existing = read_class_map(classes_path) if classes_path.exists() else None
        if existing is not None and existing != class_map:  # checked before any write
            raise InputError(
                f"{self.root} already holds a dataset of classes {list(existing.names)} "
                f"({classes_path}); cannot add samples of classes {list(class_map.names)}: "
                "choose another folder"
            )
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        (self.root / "masks").mkdir(parents=True, exist_ok=True)
        if existing is None:
            atomic_write_json(classes_path, class_map.to_dict())
        self.manifest_path = self.root / "manifest.csv"
        self._count = self._recover()
        self._fh = open(self.manifest_path, "a", newline="")  # noqa: SIM115 - closed in close()

    def _recover(self) -> int:
        """Count complete rows, drop a torn last line and files that have no row."""
        for sub in ("images", "masks", "."):
            remove_stale_temps(self.root / sub)
        if not self.manifest_path.exists():
            self.manifest_path.write_text(",".join(self.columns) + "\n")
            rows = 0
        else:
            text = self.manifest_path.read_text()
            header = text.split("\n", 1)[0].split(",")
            if tuple(header) != self.columns:
                raise InputError(
                    f"{self.manifest_path} has columns {header} but this run writes {list(self.columns)}: "
                    "resume with the same options or choose another folder"
                )
            if not text.endswith("\n"):  # killed mid-append: drop the torn line
                text = text[: text.rfind("\n") + 1]
                tmp = self.manifest_path.with_suffix(".csv.tmp")
                tmp.write_text(text)
                os.replace(tmp, self.manifest_path)
            rows = max(text.count("\n") - 1, 0)
        for sub in ("images", "masks"):
            for f in (self.root / sub).glob("*.png"):
                if f.stem.isdigit() and int(f.stem) >= rows:
                    f.unlink()
        return rows

    def __len__(self) -> int:
        return self._count

    def bytes_per_sample(self) -> int:
        """The mean size on disk of a written sample's image and mask (0 before the first):
        what each further sample will need, for a full disk's message."""
        if not self._count:
            return 0
        sizes = [e.stat().st_size for d in ("images", "masks")
                 for e in os.scandir(self.root / d) if e.is_file()]  # fmt: skip
        return sum(sizes) // self._count

    def write(self, sample: TissueSample) -> int:
        """Write one sample; returns its index."""
        if sample.image is None:
            raise InputError("cannot write a layout without an image to a dataset")
        if sample.class_map != self.class_map:
            raise InputError(
                f"sample classes {list(sample.class_map.names)} differ from the dataset's"
            )
        idx = self._count
        name = f"{idx:06d}.png"
        atomic_save_image(self.root / "images" / name, sample.image)
        atomic_save_image(self.root / "masks" / name, np.asarray(sample.mask, np.uint8))
        comp = sample.composition()
        meta = sample.meta
        row: dict[str, Any] = {
            "index": idx,
            "image": f"images/{name}",
            "mask": f"masks/{name}",
            "slide_id": meta.get("slide_id", ""),
            "x": meta.get("x", ""),
            "y": meta.get("y", ""),
            "level": meta.get("level", ""),
            "mpp": meta.get("mpp", ""),
            "patch_size": meta.get("patch_size", sample.size[0]),
            "entropy": round(composition_entropy(list(comp.values())), 6),
            **{f"frac:{n}": round(v, 6) for n, v in comp.items()},
        }
        for col in self.columns[len(BASE_COLUMNS) + len(self.class_map) :]:
            value = meta.get(col, "")
            row[col] = json.dumps(value) if isinstance(value, dict | list) else value
        buf = io.StringIO()
        csv.writer(buf).writerow([row[c] for c in self.columns])
        self._fh.write(buf.getvalue())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._count += 1
        return idx

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Dataset(Sequence[TissueSample]):
    """Read a dataset folder written by :class:`DatasetWriter` (lazily, by index).

    ``dataset[i]`` is a :class:`TissueSample` (uint8 H x W x 3 image, H x W class-index
    mask, the manifest row as ``meta``), read through :mod:`htd_core.images`.

    Raises:
        InputError: the folder lacks ``classes.json`` or ``manifest.csv`` (at construction),
            or a pair cannot be read (on access).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        classes = self.root / "classes.json"
        manifest = self.root / "manifest.csv"
        if not classes.is_file() or not manifest.is_file():
            raise InputError(
                f"{self.root} is not an htd dataset (needs classes.json and manifest.csv; "
                "write one with `htd sample` or `htd generate`)"
            )
        self.class_map = read_class_map(classes)
        with open(manifest, newline="") as fh:
            self.rows = list(csv.DictReader(fh))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        row = self.rows[i]
        image = read_rgb(self.root / row["image"])
        mask = read_index_mask(self.root / row["mask"])
        meta = {k: v for k, v in row.items() if v != "" and not k.startswith("frac:")}
        return TissueSample(image, mask, self.class_map, meta)

    def __iter__(self) -> Iterator[TissueSample]:
        for i in range(len(self)):
            yield self[i]
