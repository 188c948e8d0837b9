"""Splits by source image: tiles of one image never straddle train and test."""

from __future__ import annotations

import pytest

from htd_core.errors import InputError
from htd_core.splits import (
    check_disjoint,
    partition,
    sample_source,
    source_id,
    sources_of,
    split_by_prefix,
    split_by_source,
)


def test_source_id_strips_tile_suffixes() -> None:
    assert source_id("glas/images/testA_10_r1_c0.png") == "testA_10"
    assert source_id("train_5_r0_c0") == "train_5"
    assert source_id("slide7_x512_y1024.png") == "slide7"
    assert source_id("slide7_tile_12.png") == "slide7"
    assert source_id("10679.jpg") == "10679"  # no suffix: the name itself
    assert source_id("testA_10") == "testA_10"


def test_sample_source_prefers_explicit_keys() -> None:
    assert sample_source({"source_id": "abc", "slide_id": "x_r0_c0"}) == "abc"
    assert sample_source({"slide_id": "testA_3_r1_c1"}) == "testA_3"
    assert sample_source({"image": "images/train_2_r0_c1.png"}) == "train_2"
    assert sample_source({}) == ""


def test_split_by_source_keeps_sources_whole_and_is_seeded(shared_data) -> None:
    names = sorted(p.name for p in (shared_data / "glas" / "images").iterdir())
    sources = [source_id(n) for n in names]
    train, test = split_by_source(sources, test_fraction=0.2, seed=3)
    assert sorted(train + test) == list(range(len(names)))
    check_disjoint(partition(sources, train), partition(sources, test))
    n_sources = len(set(sources))
    assert n_sources == 165  # as the data README says
    assert len(set(partition(sources, test))) == round(0.2 * n_sources)
    assert split_by_source(sources, 0.2, seed=3) == (train, test)
    assert split_by_source(sources, 0.2, seed=4) != (train, test)


def test_split_by_prefix_gives_the_official_glas_split(shared_data) -> None:
    names = sorted(p.name for p in (shared_data / "glas" / "images").iterdir())
    split = split_by_prefix(names, {"train": ["train_"], "test": ["testA_", "testB_"]})
    assert len(split["train"]) == 85 * 4 and len(split["test"]) == 80 * 4
    check_disjoint(
        [source_id(names[i]) for i in split["train"]], [source_id(names[i]) for i in split["test"]]
    )


def test_tiny_split_leaves_one_source_each_side() -> None:
    train, test = split_by_source(["a", "a", "b"], test_fraction=0.01)
    assert len({("a", "b")[i >= 2] for i in test}) == 1 and train and test


def test_bad_splits_are_refused() -> None:
    with pytest.raises(InputError, match="at least two"):
        split_by_source([source_id("a_r0_c0"), source_id("a_r1_c0")], 0.5)
    with pytest.raises(InputError, match="between 0 and 1"):
        split_by_source(["a", "b"], 1.0)
    with pytest.raises(InputError, match="both train and test"):
        check_disjoint(["a", "b"], ["b", "c"])
    with pytest.raises(InputError, match="matches the prefixes"):
        split_by_prefix(["testA_1.png"], {"a": ["test"], "b": ["testA"]})


def test_sources_of_reads_sample_meta_or_names() -> None:
    class Item:
        def __init__(self, meta):
            self.meta = meta

    assert sources_of([Item({"slide_id": "x_r0_c1"}), "y_r1_c1.png"]) == ["x", "y"]
    assert sources_of(["p", "q"], key=str.upper) == ["P", "Q"]


def test_spread_by_source_takes_one_of_each_source_in_turn_seeded() -> None:
    from htd_core.splits import spread_by_source

    sources = ["a"] * 6 + ["b"] * 3 + ["c"]  # the first files are all one source image
    picked = spread_by_source(sources, 3, seed=0)
    assert sorted({sources[i] for i in picked}) == ["a", "b", "c"] and picked == sorted(picked)
    five = spread_by_source(sources, 5, seed=0)
    assert [sources[i] for i in five].count("c") == 1 and len(set(five)) == 5
    assert {sources[i] for i in five} == {"a", "b", "c"}
    assert spread_by_source(sources, 5, seed=0) == five  # seeded
    assert {tuple(spread_by_source(sources, 4, seed=s)) for s in range(8)} != {tuple(five[:4])}
    assert spread_by_source(sources, None) == spread_by_source(sources, 99) == list(range(10))
