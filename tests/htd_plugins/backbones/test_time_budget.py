"""``max_minutes`` bounds the whole fit (autoencoder + diffusion), with a fake clock."""

from __future__ import annotations

import pytest

from htd_core.errors import InputError
from htd_plugins.backbones.ldm.progress import BoundedProgress, Clock
from htd_plugins.backbones.ldm.training import TrainOptions

from .conftest import tiny_samples


class FakeClock:
    """Every reading advances time by one second: a stage's step count is bounded by the
    seconds of its budget (each step reads the clock at least once)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def fake_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(Clock, "now", clock)
    return clock


def _fit(**options):
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder

    backbone = ControlNetLDM(preset="tiny")
    common = {"progress": False, "tensorboard": False, "batch_size": 2}
    return backbone.fit(tiny_samples(), SemanticMapBuilder(), **common, **options)


def test_max_minutes_bounds_autoencoder_and_diffusion(fake_clock):
    # 30 s in all: the autoencoder gets 20 % (6 s), the diffusion stage the rest
    summary = _fit(steps=200, vae_steps=40, max_minutes=0.5)
    assert 2 <= summary["vae"]["steps"] <= 6  # stopped by its 6 s share, not by its 40 steps
    assert summary["stopped_early"] and 1 <= summary["steps"] < 30
    assert fake_clock.t <= 30 + 5  # the whole fit, up to the few readings of its last step


def test_explicit_autoencoder_share(fake_clock):
    summary = _fit(steps=200, vae_steps=40, max_minutes=0.5, vae_max_minutes=0.05)
    assert 1 <= summary["vae"]["steps"] <= 3  # 3 s
    assert summary["stopped_early"]


def test_autoencoder_share_must_leave_time():
    with pytest.raises(InputError, match="leaves nothing"):
        TrainOptions(max_minutes=2, vae_max_minutes=2)
    assert TrainOptions(max_minutes=10).vae_seconds() == pytest.approx(120)
    assert TrainOptions(vae_max_minutes=3).vae_seconds() == 180
    assert TrainOptions().vae_seconds() is None


def test_stage_clock_never_outlives_its_parent(fake_clock):
    total = Clock(10)
    assert total.stage(100).deadline == total.deadline
    assert total.stage(2).deadline < total.deadline
    assert Clock(None).stage(None).deadline is None


def test_bar_counts_down_to_the_bound_that_stops_the_job(fake_clock):
    bar = BoundedProgress("train", 100_000, Clock(60), disable=True)
    fake_clock.t += 9  # 10 steps in about 10 s of a 60 s bound: the time bound will stop the job
    assert bar.fraction(10) == pytest.approx(1 / 6, abs=0.05)
    steps_bound = BoundedProgress("train", 20, Clock(3600), disable=True)
    assert steps_bound.fraction(10) == pytest.approx(0.5)
