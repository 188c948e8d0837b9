"""Pipeline.fit with explicit samples while the pipeline's sampler has a per-step schedule
(the curriculum): the schedule used to be dropped in silence; now one warning says so."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from htd_core import Backbone, ClassMap, PatchSampler, Pipeline, TissueSample
from htd_core.testing import synthetic_sample


class Recorder(Backbone):
    name, options = "recorder", {}

    def fit(self, samples, builder, **options):
        self.hook = getattr(samples, "for_step", None)  # what a trainer would apply per step
        self.seen = list(samples)
        return {"steps": 1}

    def generate(self, conditions, options):
        return np.zeros((len(conditions), 8, 8, 3), np.uint8)

    def save(self, path):
        pass

    @classmethod
    def load(cls, path, device=None):
        return cls()


class Plain(PatchSampler):
    def __init__(self, samples):
        self.samples = samples

    @property
    def class_map(self) -> ClassMap:
        return self.samples[0].class_map

    def __iter__(self):
        return iter(self.samples)


class Coarsening(Plain):
    """Merges every class into class 0 before step 10 (a two-level curriculum)."""

    def for_step(self, sample: TissueSample, step: int) -> TissueSample:
        mask = np.where(sample.mask < 3, 0, sample.mask) if step < 10 else sample.mask
        return TissueSample(sample.image, mask.astype(np.uint8), sample.class_map, sample.meta)


@pytest.fixture
def split():
    return [synthetic_sample(8, seed=s) for s in range(2)]


def test_explicit_samples_over_a_scheduled_sampler_warn_once(builtin_manager, split):
    pipe = Pipeline(sampler=Coarsening(split), condition_builders=["semantic_map"],
                    backbone=Recorder())  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        pipe.fit(split)
    ours = [w for w in caught if "schedule" in str(w.message)]
    assert len(ours) == 1 and "\n" not in str(ours[0].message)
    assert "Coarsening.for_step" in str(ours[0].message)
    assert "fit() without samples" in str(ours[0].message)
    assert ours[0].filename == __file__  # points at the caller's fit line
    assert pipe.backbone.hook is None or pipe.backbone.hook.__self__ is not pipe.sampler


@pytest.mark.parametrize("case", ["sampler's own", "no schedule", "scheduled samples"])
def test_no_warning_when_nothing_is_dropped(builtin_manager, split, case):
    sampler = Plain(split) if case == "no schedule" else Coarsening(split)
    pipe = Pipeline(sampler=sampler, condition_builders=["semantic_map"], backbone=Recorder())
    given = {"sampler's own": None, "no schedule": split, "scheduled samples": Coarsening(split)}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*schedule.*")
        pipe.fit(given[case])
    if case == "sampler's own":  # the trainer gets the schedule
        assert pipe.backbone.hook.__self__ is sampler
