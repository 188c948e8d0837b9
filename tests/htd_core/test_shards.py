"""Shard folders: write / read round trip, resumable writing, the per-process stream (disjoint,
deterministic, seekable), and bad shards (missing, truncated: named, or skipped)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.shard_writer import ShardWriter
from htd_core.shards import INDEX, ShardDataset
from htd_core.testing import synthetic_sample
from htd_core.types import ClassMap


def samples(n: int, size: int = 16):
    out = []
    for i in range(n):
        s = synthetic_sample(size, seed=i)
        s.meta.update(x=i, mpp=0.5 + i, level=0, source_file="patient-name.svs")
        out.append(s)
    return out


def write(root, items, shard_size=5):
    with ShardWriter(root, items[0].class_map, shard_size) as w:
        for s in items:
            w.write(s)
    return root


def test_round_trip_index_and_webdataset_readers(tmp_path):
    items = samples(12)
    root = write(tmp_path / "sh", items)
    index = json.loads((root / INDEX).read_text())
    assert [(s["name"], s["samples"], s["first"]) for s in index["shards"]] == [
        ("shard-000000.tar", 5, 0), ("shard-000001.tar", 5, 5), ("shard-000002.tar", 2, 10),
    ]  # fmt: skip
    data = ShardDataset(root)
    assert len(data) == 12 and data.class_map == items[0].class_map
    back = list(data)
    for a, b in zip(items, back, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert b.meta["x"] == a.meta["x"] and b.meta["slide_id"] == a.meta["slide_id"]
        assert "source_file" not in b.meta  # only the manifest's columns: opaque ids
    masks = np.concatenate([s.mask.ravel() for s in items])
    expected = {n: int((masks == i).sum()) for i, n in enumerate(items[0].class_map.names)}
    assert data.class_pixels() == expected
    assert data.median_mpp() == pytest.approx(np.median([s.meta["mpp"] for s in items]))
    import webdataset as wds  # any WebDataset reader reads the shards

    urls = [str(root / s["name"]) for s in index["shards"]]
    keys = [r["__key__"] for r in wds.WebDataset(urls, shardshuffle=False, empty_check=False)]
    assert keys == [f"{i:09d}" for i in range(12)]


def test_writer_resumes_after_a_kill_mid_shard(tmp_path):
    items = samples(13)
    root = tmp_path / "sh"
    w = ShardWriter(root, items[0].class_map, 5)
    for s in items[:7]:  # two samples of shard 1 only in its temp file when killed
        w.write(s)
    assert len(list(root.glob(".*.tmp"))) == 1
    del w  # no close(): as after kill -9
    w = ShardWriter(root, items[0].class_map, 5)
    assert len(w) == 5 and not list(root.glob(".*.tmp"))
    for s in items[5:]:
        w.write(s)
    w.close()
    assert [int(s.meta["x"]) for s in ShardDataset(root)] == list(range(13))
    with pytest.raises(InputError, match="cannot add shards"):
        ShardWriter(root, ClassMap(("a", "b")), 5)
    with pytest.raises(InputError, match="cannot add shards"):
        ShardWriter(root, items[0].class_map, 4)


def keys(data, micro, count, rank, world, seed=0):
    return [k for k, _ in data.take(micro, count, rank, world, seed)]


def test_processes_read_disjoint_shards_and_an_epoch_covers_all(tmp_path):
    data = ShardDataset(write(tmp_path / "sh", samples(40), shard_size=5))
    per_rank = []
    for rank in (0, 1):
        order = np.random.default_rng([0, 7919, 0]).permutation(8)[rank::2]
        per_rank.append(keys(data, 0, 5 * len(order), rank, 2))
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == [f"{i:09d}" for i in range(40)]
    assert len(set(per_rank[0])) == len(per_rank[0])  # no repeat within an epoch
    assert keys(data, 0, 20, 0, 1) != keys(data, 0, 20, 0, 1, seed=1)  # seeded order


def test_stream_is_deterministic_and_seeks_to_any_position(tmp_path):
    root = write(tmp_path / "sh", samples(23), shard_size=5)
    sequential = ShardDataset(root)
    stream = [k for micro in range(12) for k in keys(sequential, micro, 3, 0, 2)]  # > 1 epoch
    for micro in (0, 4, 7, 11):  # a new reader (a resumed run) starts anywhere
        assert keys(ShardDataset(root), micro, 3, 0, 2) == stream[micro * 3 : micro * 3 + 3]
    assert len(set(stream)) < len(stream)  # wrapped into the next epoch


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_bad_shard_is_named_or_skipped(tmp_path, damage):
    root = write(tmp_path / "sh", samples(12))
    shard = root / "shard-000001.tar"
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(InputError, match=rf"shard-000001.tar is {damage}.*--skip-bad-shards"):
        ShardDataset(root)
    with pytest.warns(UserWarning, match=rf"shard-000001.tar is {damage}.*skipped"):
        data = ShardDataset(root, skip_bad=True)
    assert len(data) == 7 and len(list(data)) == 7


def test_corrupt_shard_of_right_size_and_too_few_shards(tmp_path):
    root = write(tmp_path / "sh", samples(12))
    shard = root / "shard-000000.tar"
    shard.write_bytes(b"\x00" * 100 + b"garbage" * 10 + shard.read_bytes()[170:])
    data = ShardDataset(root)  # sizes match: found when read
    with pytest.raises(InputError, match="shard-000000.tar is unreadable"):
        list(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(list(ShardDataset(root, skip_bad=True))) == 7
    with pytest.raises(InputError, match="3 shard.*for 4 processes.*--shard-size"):
        ShardDataset(root).take(0, 2, 0, 4, 0)
    with pytest.raises(InputError, match="not an htd shard folder"):
        ShardDataset(tmp_path)
    (root / INDEX).write_text("{not json")
    with pytest.raises(InputError, match="shards.json is not a shard index"):
        ShardDataset(root)


def test_a_damaged_header_inside_a_shard_is_named_not_read_as_a_short_shard(tmp_path):
    import tarfile

    root = write(tmp_path / "sh", samples(10))
    shard = root / "shard-000001.tar"
    with tarfile.open(shard) as tar:
        third = tar.getmembers()[3]  # the second sample's first member
    raw = bytearray(shard.read_bytes())
    raw[third.offset : third.offset + 100] = b"x" * 100  # its name: the checksum no longer holds
    shard.write_bytes(bytes(raw))
    data = ShardDataset(root)  # same size: found when read
    with pytest.raises(InputError, match=r"shard-000001.tar is damaged \(1 of 5 samples"):
        list(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(list(ShardDataset(root, skip_bad=True))) == 5  # the intact shard only


def test_spread_reads_only_the_first_samples_of_the_shards_it_picks(tmp_path, monkeypatch):
    import htd_core.shards as shards

    data = ShardDataset(write(tmp_path / "sh", samples(15)))
    members, parse = [], shards.tar_members

    def counted(fh):
        for member in parse(fh):
            members.append(member[0])
            yield member

    monkeypatch.setattr(shards, "tar_members", counted)
    picked = data.spread(3)
    assert [int(s.meta["x"]) for s in picked] == [0, 5, 10]  # one from each shard
    assert len(members) == 9  # image, mask and meta of those three: no more was parsed


def test_skipped_first_shard_and_an_undecodable_sample_are_one_line_each(tmp_path):
    import tarfile

    root = write(tmp_path / "sh", samples(10))
    first = root / "shard-000000.tar"
    with tarfile.open(first) as tar:
        member = tar.getmembers()[0]
    raw = bytearray(first.read_bytes())
    raw[member.offset : member.offset + 100] = b"x" * 100  # no sample of it is readable
    first.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        picked = ShardDataset(root, skip_bad=True).spread(1)  # its pick is the bad shard
    assert [int(s.meta["x"]) for s in picked] == [5]
    root = write(tmp_path / "img", samples(10))
    second = root / "shard-000001.tar"
    with tarfile.open(second) as tar:
        image = tar.getmembers()[0]
    raw = bytearray(second.read_bytes())
    raw[image.offset_data : image.offset_data + 40] = b"\0" * 40  # the PNG signature and header
    second.write_bytes(bytes(raw))
    with pytest.raises(
        InputError, match=r"sample 000000005 cannot be decoded .*rewrite the shards"
    ):
        list(ShardDataset(root))


def test_a_resumed_writer_keeps_the_keys_and_shard_size_the_folder_began_with(tmp_path):
    items = samples(8)
    for s in items:
        s.meta["split"] = "train"
    root = tmp_path / "sh"
    with ShardWriter(root, items[0].class_map, 4, ("split",)) as w:
        for s in items[:4]:
            w.write(s)
    with pytest.raises(InputError, match=r"shards of 4 samples; cannot add shards of 3: rerun "
                                         r"with --shard-size 4"):  # fmt: skip
        ShardWriter(root, items[0].class_map, 3)
    with ShardWriter(root, items[0].class_map, 4) as w:  # resumed without the extra column
        for s in items[4:]:
            w.write(s)
    assert [s.meta.get("split") for s in ShardDataset(root)] == ["train"] * 8
