"""Curriculum sampler: k'(t) schedule, fixed channel count, masks re-expressed through the tree."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from htd_core import ClassMap, PatchSampler, TissueSample
from htd_core.errors import InputError
from htd_core.testing import PatchSamplerConformance
from htd_plugins.condition_builders.semantic_map import SemanticMapBuilder
from htd_plugins.discovery.grid import PatchGrid, open_for_grid
from htd_plugins.samplers.curriculum import CurriculumSampler, granularity, load_tree, snap
from htd_plugins.slides import class_names


class MapWindows(PatchSampler):
    """Windows of a real slide with its k-level pseudo map, upsampled to pixels (raster order)."""

    def __init__(self, png, entry, k: int, slide, cells: int = 6) -> None:
        self.mask = np.asarray(Image.open(png))
        self.grid, self.slide = PatchGrid.from_dict(entry.meta["grid"]), slide
        self.cells, self._cm = cells, ClassMap(class_names(k))

    @property
    def class_map(self) -> ClassMap:
        return self._cm

    def __iter__(self):
        slide, g, c = open_for_grid(self.slide, self.grid), self.grid, self.cells
        for r in range(0, g.rows - c, c):
            for col in range(0, g.cols - c, c):
                window = self.mask[r : r + c, col : col + c]
                if len(set(np.unique(window)) - {255}) < 2:
                    continue
                loc = (int(col * g.cell_size_base), int(r * g.cell_size_base))
                size = c * g.stride
                image = slide.read_level0(*loc, size, g.read_mpp)
                mask = np.repeat(np.repeat(window, g.stride, 0), g.stride, 1)
                yield TissueSample(image, mask, self._cm, {"x": loc[0], "y": loc[1]})


def make(run, **options) -> CurriculumSampler:
    entry = run["store"].entry(run["slide_id"])
    inner = MapWindows(run["maps"][run["slide_id"]][100], entry, 100, run["slide"])
    return CurriculumSampler(inner, run["root"] / "maps", **options)


def test_schedule_and_snapping():
    levels = (5, 10, 20, 50, 100)
    assert granularity(0, 5, 100, 1000) == 5 and granularity(5000, 5, 100, 1000) == 100
    ks = [snap(granularity(t, 5, 100, 1000), levels) for t in range(0, 1201, 50)]
    assert ks[0] == 5 and ks[-1] == 100 and ks == sorted(ks) and set(ks) == set(levels)
    assert snap(14.5, levels, "down") == 10 and snap(14.5, levels, "up") == 20


def test_channel_count_fixed_and_masks_nested(cmu_run):
    sampler = make(cmu_run, k_min=5, warmup_steps=3)
    tree = load_tree(cmu_run["root"] / "maps")
    builder = SemanticMapBuilder()
    originals = sampler.take(6)  # iterating yields the k_max maps; the step decides k
    assert all(s.meta["granularity"] == 100 for s in originals)
    for step, orig in enumerate(originals):
        s = sampler.for_step(orig, step)
        k = s.meta["granularity"]
        assert k == sampler.current_k(step) and s.meta["curriculum_step"] == step
        cond = builder.build(s)
        assert cond.spatial.shape[0] == 100  # k_max channels at every step
        on = np.unique(s.mask[s.mask != 255])
        assert len(on) <= k
        # each pixel carries the representative of its original class's group at level k
        tissue = orig.mask != 255
        group_of = tree.parent_map(100, k)
        assert np.array_equal(group_of[s.mask[tissue]], group_of[orig.mask[tissue]])
        assert np.array_equal(s.mask[~tissue], orig.mask[~tissue])
    ks = [sampler.current_k(t) for t in range(6)]
    assert ks[0] == 5 and ks[3:] == [100, 100, 100] and ks == sorted(ks)
    first = sampler.for_step(originals[0], 0)
    assert len(np.unique(first.mask)) < len(np.unique(originals[0].mask))


class Stripes(PatchSampler):
    """16 px samples whose masks hold all ``k`` classes (vertical stripes, shifted per sample)."""

    def __init__(self, k: int, n: int = 6) -> None:
        self.k, self.n, self._cm = k, n, ClassMap(class_names(k))

    @property
    def class_map(self) -> ClassMap:
        return self._cm

    def __iter__(self):
        rng = np.random.default_rng(0)
        cols = np.arange(16) * self.k // 16
        for i in range(self.n):
            mask = np.tile(np.roll(cols, i), (16, 1)).astype(np.uint8)
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            yield TissueSample(image, mask, self._cm, {"i": i})


class RecordingBuilder(SemanticMapBuilder):
    """Records the classes of every mask it builds a condition for, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[set[int]] = []

    def build(self, sample, seed=None):
        self.seen.append(set(np.unique(sample.mask).tolist()))
        return super().build(sample, seed=seed)


@pytest.mark.parametrize("through", ["backbone", "pipeline"])
def test_fit_trains_each_step_at_its_granularity(through):
    """Through ``fit`` (the backbone's, and ``Pipeline.fit`` as ``htd train`` calls it): the
    batch of optimizer step t is expressed at k'(t), whatever the number of patches the
    sampler yields (6 here, far fewer than steps x batch)."""
    from htd_core import Pipeline
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.slides import PhenotypeTree

    centers = np.array([[0.0], [1], [10], [11], [100], [101], [110], [111]])
    tree, _ = PhenotypeTree.build(centers, np.ones(8), levels=(2, 4, 8))
    sampler = CurriculumSampler(Stripes(8), tree, k_min=2, warmup_steps=4)
    builder, batch = RecordingBuilder(), 2
    run = dict(steps=6, batch_size=batch, vae_steps=1, progress=False, tensorboard=False,
               augment={"dihedral": True})  # fmt: skip
    if through == "backbone":
        ControlNetLDM(preset="tiny").fit(sampler, builder, **run)
    else:
        Pipeline(sampler, [builder], ControlNetLDM(preset="tiny")).fit(**run)
    per_step = [builder.seen[s * batch : (s + 1) * batch] for s in range(6)]
    assert len(builder.seen) == 6 * batch
    counts = [{len(classes) for classes in seen} for seen in per_step]
    # k'(0) = k_min = 2; k'(T/2) = 5 -> level 4; k'(t >= T) = k_max = 8
    assert counts[0] == {2} and counts[2] == {4} and counts[4] == counts[5] == {8}
    # a coarse mask holds each class's group representative (the lowest k_max id of the group)
    assert per_step[0][0] == {0, 4} and per_step[2][0] == {0, 2, 4, 6}


def test_bad_options(cmu_run):
    with pytest.raises(InputError, match="k_max"):
        make(cmu_run, k_max=30)
    with pytest.raises(InputError, match="warmup_steps"):
        make(cmu_run, warmup_steps=-1)
    entry = cmu_run["store"].entry(cmu_run["slide_id"])
    coarse = MapWindows(cmu_run["maps"][cmu_run["slide_id"]][20], entry, 20, cmu_run["slide"])
    with pytest.raises(InputError, match="k_max=100"):
        CurriculumSampler(coarse, cmu_run["root"] / "maps")
    with pytest.raises(InputError, match="tree"):
        CurriculumSampler(coarse, cmu_run["root"] / "nowhere")


class TestCurriculumConformance(PatchSamplerConformance):
    @pytest.fixture(autouse=True)
    def _run(self, cmu_run):
        self.run = cmu_run

    def make_sampler(self) -> PatchSampler:
        return make(self.run, k_min=5, warmup_steps=2)


def test_registered_as_plugin(builtin_manager):
    assert "curriculum" in builtin_manager.patch_samplers.names()


def test_crop_slots_follow_the_curriculum_and_train(cmu_run, tmp_path):
    """The k = 100 dual condition in 1 + 5S channels at every step of the curriculum: the
    slots hold the classes of the coarsened map (the representatives of level k'(t)), and a
    backbone trains through the schedule with it."""
    from htd_plugins.backbones.controlnet_ldm import ControlNetLDM
    from htd_plugins.condition_builders.crop_slots import SLOTS, CropSlotsBuilder

    sampler = make(cmu_run, k_min=5, warmup_steps=3)
    builder = CropSlotsBuilder(slots=3, crop_options={"d_base": 8, "min_size": 4})
    names = sampler.class_map.names
    for step, orig in enumerate(sampler.take(5)):
        s = sampler.for_step(orig, step)
        cond = builder.build(s, seed=step)
        assert cond.num_channels == 16 and cond.channels[0] == "class_index:100"
        held = np.unique(s.mask[s.mask != 255])
        assert [n for n in cond.meta[SLOTS] if n] == [
            names[i] for i in sorted(held, key=lambda i: (-(s.mask == i).sum(), i))[:3]
        ]
        index = cond.spatial[0].numpy()
        assert set(np.unique(index[index > 0]) - 1) == set(held)  # coarse ids, not the fine ones
    backbone = ControlNetLDM(preset="tiny", image_size=32)
    summary = backbone.fit(sampler, builder, steps=2, vae_steps=2, batch_size=2, max_samples=4,
                           progress=False, tensorboard=False)  # fmt: skip
    assert summary["steps"] == 2 and backbone.channels == builder.channels(sampler.class_map)
