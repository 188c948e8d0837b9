"""The dataset layout: atomic pairs, manifest rows, crash recovery and resume."""

from __future__ import annotations

import numpy as np
import pytest

from htd_core.dataset import Dataset, DatasetWriter, composition_entropy
from htd_core.errors import InputError
from htd_core.testing import synthetic_sample
from htd_core.types import ClassMap


def test_write_read_roundtrip(tmp_path):
    samples = [synthetic_sample(16, seed=s) for s in range(3)]
    with DatasetWriter(tmp_path, samples[0].class_map) as w:
        for s in samples:
            w.write(s)
    ds = Dataset(tmp_path)
    assert len(ds) == 3 and ds.class_map == samples[0].class_map
    for got, want in zip(ds, samples, strict=True):
        assert np.array_equal(got.image, want.image) and np.array_equal(got.mask, want.mask)
    assert float(ds.rows[0]["entropy"]) == pytest.approx(
        composition_entropy(list(samples[0].composition().values())), abs=1e-5
    )


def test_recovers_from_kill_between_files_and_row(tmp_path):
    cm = synthetic_sample().class_map
    with DatasetWriter(tmp_path, cm) as w:
        w.write(synthetic_sample(16))
        w.write(synthetic_sample(16, seed=1))
    # a kill after writing pair 2's files but before its row, with a torn row of pair 1
    (tmp_path / "images" / "000002.png").write_bytes(b"x")
    (tmp_path / "masks" / "000002.png").write_bytes(b"x")
    (tmp_path / "images" / ".000003.png.abc.tmp").write_bytes(b"partial")
    text = (tmp_path / "manifest.csv").read_text()
    (tmp_path / "manifest.csv").write_text(text[:-10])
    with DatasetWriter(tmp_path, cm) as w:
        assert len(w) == 1  # the torn row is dropped, its files too
        assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["000000.png"]
        w.write(synthetic_sample(16, seed=1))
    assert len(Dataset(tmp_path)) == 2


def test_refuses_other_classes_and_missing_folder(tmp_path):
    DatasetWriter(tmp_path, ClassMap(("a", "b"))).close()
    with pytest.raises(InputError, match="already holds a dataset of classes"):
        DatasetWriter(tmp_path, ClassMap(("a", "c")))
    with pytest.raises(InputError, match="is not an htd dataset"):
        Dataset(tmp_path / "nothing")
