"""The ``privacy`` evaluator: copies are found, crop regions are masked exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from htd_core.errors import InputError
from htd_core.testing import EvaluatorConformance, real_tiles
from htd_core.types import TissueSample
from htd_plugins.evaluators.privacy import PrivacyEvaluator
from htd_plugins.evaluators.privacy_audit import distances as pm


class TestPrivacyConformance(EvaluatorConformance):
    @pytest.fixture(autouse=True)
    def _encoder(self, tiny_encoder) -> None:
        self.tiny = tiny_encoder

    def make_evaluator(self) -> PrivacyEvaluator:
        return PrivacyEvaluator(encoder=self.tiny(), pixel_size=16, top_k=3)


def _as(sample: TissueSample, **meta) -> TissueSample:
    return TissueSample(sample.image.copy(), sample.mask, sample.class_map, {**sample.meta, **meta})


@pytest.fixture(scope="module")
def glas(shared_data) -> list[TissueSample]:
    return real_tiles(shared_data, "glas", n=40)  # ten source images


def test_copies_of_training_tiles_are_flagged(glas, tiny_encoder, tmp_path) -> None:
    train, novel = glas[:24], glas[24:40]  # disjoint source images
    copies = [_as(glas[i], slide_id=f"gen{i}") for i in (3, 10, 17)]
    synthetic = copies + [_as(s, slide_id=f"gen-novel{i}") for i, s in enumerate(novel[:9])]
    ev = PrivacyEvaluator(encoder=tiny_encoder(), pixel_size=32, top_k=3, output_dir=tmp_path)
    m = ev.evaluate(train, synthetic)
    for space in ("feature", "pixel"):
        for level in ("image", "crop"):
            res = m[space][level]
            assert res["threshold"] is not None and res["masked"] is None
            assert res["unmasked"]["fraction_below"] >= 3 / 12  # the copies at least
            assert res["unmasked"]["summary"]["min"] == pytest.approx(0.0, abs=1e-6)
    assert m["pixel"]["image"]["unmasked"]["fraction_below"] < 0.5  # novel tissue is not flagged
    assert {p["synthetic"] for p in m["top_pairs"]} == {0, 1, 2}
    assert [m["nearest_real"][i] for i in range(3)] == [3, 10, 17]
    assert m["calibration"].startswith("each real training image")
    for name in ("privacy_top_pairs.png", "privacy_distances.png", "privacy_nearest.csv"):
        assert (tmp_path / name).stat().st_size > 0
    json.dumps(m)


def test_masked_variant_ignores_exactly_the_crop_region(glas, tiny_encoder) -> None:
    train, other = glas[:16], glas[20]
    box = [16, 16, 112, 112]
    pasted = other.image.copy()
    x, y, w, h = box
    pasted[y : y + h, x : x + w] = train[0].image[y : y + h, x : x + w]  # a real crop pasted in
    synthetic = [
        TissueSample(pasted, other.mask, other.class_map, {"crop_boxes": json.dumps([box])}),
        TissueSample(
            other.image, other.mask, other.class_map, {"crop_boxes": [{"x": x, "y": y, "size": w}]}
        ),
    ]
    held_out = [_as(s, split="test") for s in glas[24:32]]
    m = PrivacyEvaluator(encoder=tiny_encoder(), pixel_size=32, crop_grid=0).evaluate(
        train + held_out, synthetic
    )
    assert m["n_with_crop_boxes"] == 2 and m["n_real_held_out"] == 8
    assert m["calibration"].startswith("8 held-out")
    pix = pm.masked_rms_distances(
        np.stack([pm.resize_uint8(s.image, 32).reshape(-1) / 255.0 for s in synthetic]),
        np.stack(
            [
                np.repeat(
                    ~pm.region_on_grid(pm.crop_region(s.meta, (224, 224)), 32)[..., None], 3, -1
                ).reshape(-1)
                for s in synthetic
            ]
        ).astype(float),
        np.stack([pm.resize_uint8(s.image, 32).reshape(-1) / 255.0 for s in train]),
    )
    assert np.allclose(pix[0], pix[1])  # the pasted crop is invisible once masked
    plain = pm.masked_rms_distances(
        np.stack([pm.resize_uint8(s.image, 32).reshape(-1) / 255.0 for s in synthetic]),
        np.ones((2, 32 * 32 * 3)),
        np.stack([pm.resize_uint8(s.image, 32).reshape(-1) / 255.0 for s in train]),
    )
    assert plain[0, 0] < plain[1, 0] - 0.01  # unmasked, the pasted crop brings it closer
    assert m["pixel"]["image"]["masked"]["summary"]["min"] == pytest.approx(pix.min(1).min())
    assert "crop" not in m["pixel"]


def test_crop_region_formats_and_errors() -> None:
    assert pm.crop_region({}, (8, 8)) is None
    r = pm.crop_region({"crop_boxes": "[[1, 2, 3, 4]]"}, (8, 8))
    assert r.sum() == 12 and r[2, 1] and not r[1, 1]
    assert pm.crop_region({"crop_boxes": [{"x": 0, "y": 0, "w": 2, "h": 1}]}, (8, 8)).sum() == 2
    prov = {
        "gland": {"x": 90, "y": 9, "size": 3, "placed_x": 1, "placed_y": 2, "placed_size": 3},
        "stroma": None,
    }
    assert (
        pm.crop_region({"crop_provenance": json.dumps(prov)}, (8, 8))
        == pm.crop_region({"crop_boxes": [[1, 2, 3, 3]]}, (8, 8))
    ).all()
    assert (
        pm.crop_region({"crop_provenance": {"gland": {"empty": "region too small"}}}, (8, 8))
        is None
    )
    with pytest.raises(InputError, match="not JSON"):
        pm.crop_region({"crop_boxes": "[oops"}, (8, 8))
    with pytest.raises(InputError, match="no area"):
        pm.crop_region({"crop_boxes": [[0, 0, 0, 4]]}, (8, 8))


def test_empty_sets_and_bad_options(tiny_encoder, glas) -> None:
    ev = PrivacyEvaluator(encoder=tiny_encoder(), pixel_size=16)
    with pytest.raises(InputError, match="0 synthetic"):
        ev.evaluate(glas[:4], [])
    with pytest.raises(InputError, match="0 real training"):
        ev.evaluate([_as(s, split="test") for s in glas[:4]], glas[4:6])
    with pytest.raises(InputError, match="divisible"):
        PrivacyEvaluator(pixel_size=30, crop_grid=4)
    with pytest.raises(InputError, match="quantile"):
        PrivacyEvaluator(quantile=1.5)


def test_single_source_gives_no_threshold_but_no_crash(tiny_encoder, glas) -> None:
    same = [_as(s, slide_id="one", source_id="one") for s in glas[:4]]
    m = PrivacyEvaluator(encoder=tiny_encoder(), pixel_size=16).evaluate(same, glas[8:10])
    assert m["feature"]["image"]["threshold"] is None
    assert any("one source" in n for n in m["notes"])


def test_real_features_come_from_the_cache_the_second_time(glas, tiny_encoder, tmp_path) -> None:
    """With a ``cache_dir`` the real images and their windows are embedded once for every
    synthetic set (the audit of the second set embeds only its own images); the audit is the
    same with or without the cache."""
    encoder = tiny_encoder()
    seen: list[int] = []
    forward = encoder.forward

    def counting(pixels):
        seen.append(len(pixels))
        return forward(pixels)

    encoder.forward = counting
    train, synthetic = glas[:8], [_as(s, slide_id=f"gen{i}") for i, s in enumerate(glas[20:24])]
    options = {"encoder": encoder, "pixel_size": 16, "top_k": 2, "cache_dir": tmp_path}
    first = PrivacyEvaluator(**options).evaluate(train, synthetic)
    embedded_first = sum(seen)
    seen.clear()
    second = PrivacyEvaluator(**options).evaluate(train, synthetic[:2])
    # the second run embeds the 2 synthetic images, their masked copies and windows only
    assert 0 < sum(seen) < embedded_first and sum(seen) <= 2 * (1 + 1 + 2 * 4)
    plain = PrivacyEvaluator(**{**options, "cache_dir": None}).evaluate(train, synthetic)
    assert plain["nearest_real"] == first["nearest_real"]
    assert second["n_synthetic"] == 2
