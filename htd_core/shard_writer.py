"""Writing shard folders (:mod:`htd_core.shards` describes the format and reads them).

Writing is resumable and never leaves half a shard: a shard is written to a temp file and
renamed when full, then the index is rewritten (atomically) naming it. Reopening drops the temp
file of a killed writer; writing continues at the first sample of the unfinished shard.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.io import atomic_open, atomic_write_json, remove_stale_temps
from htd_core.shards import FORMAT, INDEX, is_shard_folder
from htd_core.types import ClassMap, TissueSample


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class ShardWriter:
    """Append samples to a shard folder; reopening the folder resumes it.

    Args:
        root: the folder (created).
        class_map: classes of every sample; must equal an existing ``classes.json``.
        shard_size: samples per shard (the last one may hold fewer); must equal the index's.
        extra_columns: ``meta`` keys recorded per sample beside the dataset manifest's
            (``slide_id``, ``x``, ``y``, ``level``, ``mpp``, ``patch_size``: opaque ids only).

    Raises:
        InputError: the folder holds shards of other classes or another shard size.
    """

    def __init__(
        self,
        root: str | Path,
        class_map: ClassMap,
        shard_size: int = 1000,
        extra_columns: Sequence[str] = (),
    ) -> None:
        from htd_core.dataset import BASE_COLUMNS, read_class_map

        self.root, self.class_map, self.shard_size = Path(root), class_map, shard_size
        self.keys = (*BASE_COLUMNS[3:], *extra_columns)  # the manifest's meta columns
        if is_shard_folder(self.root):
            self.index = json.loads((self.root / INDEX).read_text())
            existing = read_class_map(self.root / "classes.json")
            if existing != class_map:
                raise InputError(
                    f"{self.root} holds shards of classes {list(existing.names)}; cannot add "
                    f"shards of classes {list(class_map.names)}: choose another folder"
                )
            if self.index["shard_size"] != shard_size:
                raise InputError(
                    f"{self.root} holds shards of {self.index['shard_size']} samples; cannot add "
                    f"shards of {shard_size}: rerun with --shard-size {self.index['shard_size']} "
                    "to resume it, or choose another folder"
                )
            self.keys = tuple(self.index.get("keys", self.keys))  # as the folder began
        else:
            self.index = {"format": FORMAT, "shard_size": shard_size, "shards": [],
                          "pixels": dict.fromkeys(class_map.names, 0), "mpp": [],
                          "keys": list(self.keys)}  # fmt: skip
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.root / "classes.json", class_map.to_dict())
            atomic_write_json(self.root / INDEX, self.index)
        remove_stale_temps(self.root)  # a killed writer's unfinished shard
        self._done = sum(s["samples"] for s in self.index["shards"])
        self._open: Any = None
        self._pending: dict[str, Any] = {}

    def __len__(self) -> int:
        return self._done + self._pending.get("samples", 0)

    def bytes_per_sample(self) -> int:
        """The mean size of a written sample (0 before the first shard), for a full disk's message."""
        done = self.index["shards"]
        return sum(s["bytes"] for s in done) // max(self._done, 1) if done else 0

    def write(self, sample: TissueSample) -> int:
        """Append one sample; returns its index."""
        import webdataset as wds

        if sample.image is None or sample.class_map != self.class_map:
            raise InputError(
                "a shard sample needs an image and the shards' classes "
                f"{list(self.class_map.names)}"
            )
        idx = len(self)
        if self._open is None:
            name = f"shard-{len(self.index['shards']):06d}.tar"
            self._stack = contextlib.ExitStack()
            fh = self._stack.enter_context(atomic_open(self.root / name, "wb"))
            self._open = wds.TarWriter(fh, encoder=False, mtime=0)
            self._pending = {"name": name, "samples": 0, "first": idx,
                             "pixels": np.zeros(len(self.class_map), np.int64), "mpp": []}  # fmt: skip
        meta = {k: sample.meta[k] for k in self.keys if sample.meta.get(k) not in (None, "")}
        self._open.write({"__key__": f"{idx:09d}", "image.png": _png(sample.image),
                          "mask.png": _png(np.asarray(sample.mask, np.uint8)),
                          "json": json.dumps({**meta, "index": idx}).encode()})  # fmt: skip
        codes = np.asarray(sample.mask).ravel()
        n = len(self.class_map)
        self._pending["pixels"] += np.bincount(codes[codes < n].astype(np.int64), minlength=n)
        if meta.get("mpp") not in (None, ""):
            self._pending["mpp"].append(float(meta["mpp"]))
        self._pending["samples"] += 1
        if self._pending["samples"] >= self.shard_size:
            self._finish()
        return idx

    def _finish(self) -> None:
        """Rename the open shard into place, then name it in the index."""
        self._open.tarstream.close()  # the end-of-archive blocks; the file stays open
        self._stack.close()  # fsync and rename
        p, self._open = self._pending, None
        self._pending = {}
        path = self.root / p["name"]
        self.index["shards"].append({"name": p["name"], "samples": p["samples"],
                                     "bytes": path.stat().st_size, "first": p["first"]})  # fmt: skip
        for name, px in zip(self.class_map.names, p["pixels"].tolist(), strict=True):
            self.index["pixels"][name] += px
        self.index["mpp"] += p["mpp"]
        atomic_write_json(self.root / INDEX, self.index)
        self._done += p["samples"]

    def close(self) -> None:
        """Finish the last, partial shard."""
        if self._open is not None:
            self._finish()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
