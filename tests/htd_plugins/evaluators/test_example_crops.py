"""The report's example grid shows the real conditioning crops, or says why it cannot."""

from __future__ import annotations

import json

import numpy as np

from htd_core.dataset import Dataset, DatasetWriter
from htd_core.testing import synthetic_sample
from htd_core.types import CROP_PROVENANCE, TissueSample
from htd_plugins.evaluation import example_rows


def _write(folder, samples, columns=()):
    with DatasetWriter(folder, samples[0].class_map, columns) as writer:
        for s in samples:
            writer.write(s)
    return Dataset(folder)


def test_real_crop_pixels_come_from_the_layout_image(tmp_path):
    real = _write(tmp_path / "real", [synthetic_sample(32, seed=s) for s in range(2)])
    crop = {"source": "sample", "slide_id": "x", "x": 4, "y": 6, "size": 8,
            "placed_x": 20, "placed_y": 2, "placed_size": 8}  # fmt: skip
    bank = {**crop, "source": "bank"}
    synthetic = []
    for prov in ({"a": crop}, {"a": bank}):
        image = np.full((32, 32, 3), 7, np.uint8)  # synthetic pixels: never shown as crops
        meta = {"layout": "../real#1", "seed": 0, CROP_PROVENANCE: prov}
        synthetic.append(TissueSample(image, real[1].mask, real[1].class_map, meta))
    syn = _write(tmp_path / "syn", synthetic, ("layout", "seed", CROP_PROVENANCE))
    rows = example_rows(syn, root=syn.root)
    view = rows[0]["real crops"]
    assert np.array_equal(view[2:10, 20:28], real[1].image[6:14, 4:12])  # placed real pixels
    assert (view[20:, :20] == 40).all()  # grey where no crop was placed
    note = rows[1]["real crops"]  # a bank crop: a note, not the synthetic image
    assert not np.array_equal(note, synthetic[1].image) and not (note == 7).all()
    assert json.loads(syn.rows[0][CROP_PROVENANCE])["a"]["x"] == 4


def test_columns_without_content_are_left_out(tmp_path):
    samples = [synthetic_sample(16, seed=0)]
    rows = example_rows(samples)
    assert list(rows[0]) == ["map", "synthetic"]  # no crops, no nearest real: not promised
