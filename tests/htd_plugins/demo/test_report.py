"""The demo's scores: FD under both default encoders, with the two reference rows."""

from __future__ import annotations

import numpy as np

from htd_core.testing import real_tiles
from htd_plugins.demo.report import REAL_TRAIN, RECONSTRUCTION, frechet_scores, score_lines


class Darkener:
    """A stand-in backbone whose autoencoder darkens images (the floor row needs one)."""

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        return (images // 2).astype(np.uint8)


def test_scores_under_both_encoders_with_reference_rows(shared_data, tmp_path) -> None:
    tiles = real_tiles(shared_data, "glas", n=9, size=64)
    test, train = tiles[:3], tiles[3:6]
    synthetic = [s.image[::-1] for s in tiles[6:9]]  # flipped real tissue
    scores = frechet_scores(test, train, {"conditioned": synthetic}, tmp_path, model=Darkener())
    assert list(scores["encoders"]) == ["inception_fid", "efficientnet_lite0"]
    assert scores["n_real"] == 3
    rows = scores["sets"]
    assert list(rows) == ["conditioned", REAL_TRAIN, RECONSTRUCTION]
    for row in rows.values():
        assert set(row) == {"inception_fid", "efficientnet_lite0"}
        assert all(v["fd"] > 0 and v["n"] == 3 for v in row.values())
    lines = score_lines(scores)
    assert "efficientnet_lite0" in lines[0] and len(lines) == 4
