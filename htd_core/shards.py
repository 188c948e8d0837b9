"""Datasets as WebDataset tar shards, written by ``htd sample --shard-size`` and streamed in training.

::

    root/shard-000000.tar   samples 0 .. n-1: 000000000.image.png, .mask.png, .json (meta)
    root/shards.json        the index: format, shard size, each shard's name, samples, bytes
                            and first index; class pixel totals and the median-mpp inputs
    root/classes.json       ClassMap (names, colors, ignore_index)

Why WebDataset tars: a shard is a plain POSIX tar read front to back with large sequential
reads (a cluster file system's or an object store's best case), readable by ``tar`` and by any
WebDataset reader, and written with no server or format library beyond ``webdataset``'s
``TarWriter``. Reading one tar of many samples is faster than opening one PNG pair per
sample (``benchmarks/bench_shards.py`` measures both side by side). Splitting over processes and
nodes is by whole shards, as WebDataset's ``split_by_node`` does; we keep the order ourselves so
that it is a pure function of ``(seed, epoch, process)``: WebDataset's loader does not resume
mid-epoch, and LitData's and MosaicML Streaming's resume through their own data loader's state
saved beside the checkpoint, whereas here a run resumed from the checkpoint of step ``s``
re-reads exactly what an uninterrupted run read after ``s``, with nothing more to save
(:mod:`htd_core.training_data`; the checkpoint's configuration holds the shards' fingerprint). LitData and MosaicML Streaming bring their own
chunk formats and cloud clients; Hugging Face ``datasets`` (Arrow) holds random-access tables,
more than a training stream needs.

The writer is :class:`htd_core.shard_writer.ShardWriter` (resumable, never half a shard).
"""

from __future__ import annotations

import io
import json
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from htd_core.errors import InputError
from htd_core.training_data import TrainingData
from htd_core.types import TissueSample

INDEX, FORMAT = "shards.json", "htd-shards/1"
#: Shards whose samples are shuffled together in a stream (its memory: this many shards).
MIX = 4


def is_shard_folder(root: str | Path) -> bool:
    """Whether ``root`` holds a shard index (``shards.json``)."""
    return (Path(root) / INDEX).is_file()


def tar_members(fh: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, contents) of the regular files of a tar archive, read front to back from ``fh``
    by Python's ``tarfile`` in stream mode (a stream stopped early reads no further).

    ``tarfile`` ends a stream quietly at a damaged header after the first, so the caller checks
    the number of samples read against the index (:meth:`ShardDataset._read`).

    Raises:
        ValueError: the archive cannot be read (a bad first header, a member running past the
            end) or holds a member of a kind a shard does not hold (links, devices).
    """
    import tarfile

    try:
        with tarfile.open(fileobj=fh, mode="r|") as tar:
            for member in tar:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise ValueError(f"tar member {member.name!r} is not a regular file")
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if len(data) < member.size:
                    raise ValueError(f"tar member {member.name!r} runs past the end")
                yield member.name, data
    except tarfile.TarError as exc:
        raise ValueError(f"not a readable tar ({exc})") from None


class ShardDataset(TrainingData):
    """Read a shard folder as a stream (``take``) or in order (``iter``).

    Each process reads its own shards: in epoch ``e`` the shards are permuted by ``(seed, e)``
    and process ``rank`` of ``world`` takes every ``world``-th of them; groups of :data:`MIX`
    shards are read whole and their samples shuffled by ``(seed, e, rank, group)``. Memory is
    one group of encoded samples, whatever the number of shards.

    Args:
        root: a folder written by :class:`ShardWriter` (``htd sample --shard-size``).
        skip_bad: leave out missing or truncated shards with a warning instead of failing.

    Raises:
        InputError: not a shard folder; a shard missing or truncated (named, unless
            ``skip_bad``); no readable shard.
    """

    streamed = True

    def __init__(self, root: str | Path, skip_bad: bool = False) -> None:
        from htd_core.dataset import read_class_map

        self.root = Path(root)
        if not is_shard_folder(self.root) or not (self.root / "classes.json").is_file():
            raise InputError(
                f"{self.root} is not an htd shard folder (needs {INDEX} and classes.json; write "
                "one with `htd sample --shard-size N`)"
            )
        try:
            self.index = json.loads((self.root / INDEX).read_text())
            if self.index.get("format") != FORMAT:
                raise ValueError(f"format {self.index.get('format')!r}, not {FORMAT!r}")
        except (OSError, ValueError, AttributeError) as exc:
            raise InputError(
                f"{self.root / INDEX} is not a shard index ({exc}): rewrite the shards with "
                "`htd sample --shard-size N`"
            ) from None
        self.class_map = read_class_map(self.root / "classes.json")
        self.skip_bad, self.shards = skip_bad, []
        for shard in self.index["shards"]:
            path = self.root / shard["name"]
            size = path.stat().st_size if path.is_file() else None
            if size == shard["bytes"]:
                self.shards.append(shard)
                continue
            state = (
                "missing"
                if size is None
                else f"{'truncated' if size < shard['bytes'] else 'changed'} ({size} bytes, "
                f"the index says {shard['bytes']})"
            )
            self._bad(shard["name"], state)
        if not self.shards:
            raise InputError(
                f"{self.root}: no readable shard (the index names {len(self.index['shards'])})"
            )
        self._group: tuple[Any, list] | None = None
        self._cursor: dict[tuple[int, int, int], tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()

    def _bad(self, name: str, state: str) -> None:
        if not self.skip_bad:
            raise InputError(
                f"{self.root / name} is {state}: rewrite it (rerun `htd sample` into a new "
                "folder) or pass --skip-bad-shards to read the other shards"
            )
        warnings.warn(f"{self.root / name} is {state}: skipped (--skip-bad-shards)", stacklevel=3)

    def __len__(self) -> int:
        return sum(s["samples"] for s in self.shards)

    def __str__(self) -> str:
        return f"shards {self.root}"

    def fingerprint(self) -> str:
        import hashlib

        text = json.dumps([(s["name"], s["samples"], s["bytes"]) for s in self.shards])
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def class_pixels(self) -> Mapping[str, float]:
        return dict(self.index["pixels"])

    def median_mpp(self) -> float | None:
        """The median ``mpp`` of the samples that record one (None: none does)."""
        return float(np.median(self.index["mpp"])) if self.index["mpp"] else None

    def _read(self, shard: dict, limit: int | None = None) -> list[tuple[str, bytes, bytes, bytes]]:
        """(key, image PNG, mask PNG, meta JSON) of a shard's samples (the first ``limit``:
        only they are read), read front to back in 1 MiB blocks (:func:`tar_members`); fewer
        samples than the index holds is a damaged shard."""
        out, parts = [], {}
        try:
            with open(self.root / shard["name"], "rb", buffering=1 << 20) as fh:
                for name, data in tar_members(fh):
                    key, _, ext = name.partition(".")
                    parts[ext] = data
                    if len(parts) == 3:
                        out.append((key, parts["image.png"], parts["mask.png"], parts["json"]))
                        parts = {}
                        if limit is not None and len(out) >= limit:
                            break
        except (ValueError, OSError, KeyError) as exc:
            self._bad(shard["name"], f"unreadable ({exc})")
            return []
        expected = shard["samples"] if limit is None else min(limit, shard["samples"])
        if len(out) < expected:  # a damaged header ends tarfile's stream early
            self._bad(shard["name"], f"damaged ({len(out)} of {shard['samples']} samples readable)")
            return []
        return out

    def _decode(self, record: tuple[str, bytes, bytes, bytes]) -> tuple[str, TissueSample]:
        """The sample of a record.

        Raises:
            InputError: its image, mask or meta cannot be decoded (names the sample's key).
        """
        from PIL import Image

        key, image, mask, meta = record
        try:
            rgb = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
            codes = np.asarray(Image.open(io.BytesIO(mask)))
            return key, TissueSample(rgb, codes, self.class_map, json.loads(meta))
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{self.root}: sample {key} cannot be decoded ({exc}): its shard is damaged; "
                "rewrite the shards (rerun `htd sample` into a new folder)"
            ) from None

    def __iter__(self) -> Iterator[TissueSample]:
        for shard in self.shards:
            for record in self._read(shard):
                yield self._decode(record)[1]

    def spread(self, count: int) -> list[TissueSample]:
        picks = np.unique(
            np.linspace(0, len(self.shards) - 1, min(count, len(self.shards))).round()
        )
        per = -(-count // len(picks))
        out = [self._decode(r)[1] for i in picks for r in self._read(self.shards[int(i)], per)]
        for shard in self.shards if not out else ():  # the picked ones skipped as unreadable
            out = [self._decode(r)[1] for r in self._read(shard, count)]
            if out:
                break
        if not out:
            raise InputError(f"{self.root}: no shard could be read")
        return out[:count]

    def _groups(self, epoch: int, rank: int, world: int, seed: int) -> list[list[dict]]:
        """The shard groups process ``rank`` reads in ``epoch``."""
        if len(self.shards) < world:
            raise InputError(
                f"{self.root}: {len(self.shards)} shard(s) for {world} processes: every "
                "process needs its own; write smaller shards (--shard-size)"
            )
        order = np.random.default_rng([seed, 7919, epoch]).permutation(len(self.shards))
        mine = [self.shards[int(i)] for i in order[rank::world]]
        return [mine[g : g + MIX] for g in range(0, len(mine), MIX)]

    def take(
        self, micro_index: int, count: int, rank: int, world: int, seed: int
    ) -> list[tuple[str, TissueSample]]:
        with self._lock:  # the trainer's thread drawing ahead may overlap a seek
            position = micro_index * count
            cursor = self._cursor.get((rank, world, seed))
            if cursor is not None and cursor[0] == position:  # the usual case: sequential
                epoch, group, offset = cursor[1:]
            else:  # a resumed run, or the first call: walk the epochs' sizes
                epoch, group, offset = self._locate(position, rank, world, seed)
            out: list[tuple[str, TissueSample]] = []
            empty = 0
            while len(out) < count:
                groups = self._groups(epoch, rank, world, seed)
                records = self._load((seed, epoch, rank, world, group), groups[group])
                part = records[offset : offset + count - len(out)]
                out += [self._decode(r) for r in part]
                offset += len(part)
                empty = 0 if part else empty + 1
                if empty > len(self.shards):
                    raise InputError(f"{self.root}: no shard could be read")
                if offset >= len(records):
                    group, offset = group + 1, 0
                    if group == len(groups):
                        epoch, group = epoch + 1, 0
            self._cursor[(rank, world, seed)] = (position + count, epoch, group, offset)
            return out

    def _locate(self, position: int, rank: int, world: int, seed: int) -> tuple[int, int, int]:
        """(epoch, group, offset) of process ``rank``'s ``position``-th sample."""
        epoch = 0
        while True:
            for g, shards in enumerate(self._groups(epoch, rank, world, seed)):
                n = sum(s["samples"] for s in shards)
                if position < n:
                    return epoch, g, position
                position -= n
            epoch += 1

    def _load(self, key: tuple, shards: list[dict]) -> list:
        """The shuffled records of a group (the last group read is kept)."""
        if self._group is None or self._group[0] != key:
            records = [r for shard in shards for r in self._read(shard)]
            order = np.random.default_rng([7919, *key]).permutation(len(records))
            self._group = (key, [records[i] for i in order])
        return self._group[1]
