from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_core.testing import PatchSamplerConformance
from htd_plugins.samplers.entropy import EntropySampler
from htd_plugins.samplers.heterogeneous import HeterogeneousSampler

PATCH_GRID = 64  # level-0 pixels per pseudo-map cell (a discovery-style patch grid)


@pytest.fixture(scope="module")
def pseudo_map(tcga, tmp_path_factory) -> dict:
    """A discovery-style pseudo map of the real slide: one code per 64-px grid cell covering
    the slide (ceil), 255 where no tissue, names in a JSON sidecar (codes in another order
    than the sampler's classes). Drawn from the hand-made GeoJSON map, cell-centre sampled."""
    cells = (
        HeterogeneousSampler(**tcga).plan(0).cells
    )  # 8-px cells, classes tumor/stroma/inflammation
    rows, cols = math.ceil(3567 / PATCH_GRID), math.ceil(4443 / PATCH_GRID)
    r = np.minimum(((np.arange(rows) + 0.5) * PATCH_GRID / 8).astype(int), cells.shape[0] - 1)
    c = np.minimum(((np.arange(cols) + 0.5) * PATCH_GRID / 8).astype(int), cells.shape[1] - 1)
    grid = cells[r[:, None], c[None, :]]
    codes = np.full(grid.shape, 255, np.uint8)
    for code, cls in enumerate((1, 0, 2)):  # code 0 = stroma, 1 = tumor, 2 = inflammation
        codes[grid == cls] = code
    root = tmp_path_factory.mktemp("pseudo")
    Image.fromarray(codes).save(root / "k3.png")
    names = {"names": ["stroma", "tumor", "inflammation"], "downsample": PATCH_GRID}
    (root / "k3.json").write_text(json.dumps(names))
    options = {k: v for k, v in tcga.items() if k != "annotations"}
    return {**options, "label_mask": str(root / "k3.png"), "codes": codes}


class TestConformanceOnPseudoMap(PatchSamplerConformance):
    min_samples = 4

    @pytest.fixture(autouse=True)
    def _options(self, pseudo_map):
        self.options = {k: v for k, v in pseudo_map.items() if k != "codes"}

    def make_sampler(self):
        return EntropySampler(**self.options, limit=4)


def entropies(sampler: EntropySampler) -> tuple[np.ndarray, np.ndarray]:
    """Entropy of every grid window (brute force) and of the selected ones."""
    plan = sampler.plan(0)
    k, c, p = len(sampler.class_map), plan.grid.cell_px, sampler.patch_size

    def h(x, y):
        block = plan.cells[y // c : (y + p) // c, x // c : (x + p) // c]
        labelled = block[block < k]
        if labelled.size < 0.5 * block.size:
            return -1.0
        frac = np.bincount(labelled, minlength=k) / labelled.size
        return float(-(frac[frac > 0] * np.log(frac[frac > 0])).sum())

    every = np.array(
        [
            h(x, y)
            for y in range(0, plan.grid.height - p + 1, 64)
            for x in range(0, plan.grid.width - p + 1, 64)
        ]
    )
    chosen = np.array([h(int(x), int(y)) for x, y in plan.xy])
    return every, chosen


def test_top_q_keeps_the_most_diverse_regions(pseudo_map):
    opts = {k: v for k, v in pseudo_map.items() if k != "codes"}
    sampler = EntropySampler(**opts, q=0.2, max_overlap=1.0)
    every, chosen = entropies(sampler)
    eligible = np.sort(every[every > 0])[::-1]
    assert len(chosen) == math.ceil(0.2 * len(eligible))
    assert np.all(np.diff(chosen) <= 1e-12)  # yielded from the highest entropy down
    assert chosen.min() >= eligible[len(chosen) - 1] - 1e-12
    assert chosen.mean() > every[every >= 0].mean() + 0.3  # vs all windows, pure ones included


def test_power_selection_prefers_high_entropy_and_is_seeded(pseudo_map):
    opts = {k: v for k, v in pseudo_map.items() if k != "codes"}
    a = EntropySampler(**opts, selection="power", beta=20.0, max_overlap=1.0, seed=3)
    every, chosen = entropies(a)
    assert len(chosen) == int((every > 0).sum())  # a weighted order of every eligible region
    half = len(chosen) // 2
    assert chosen[:half].mean() > chosen[half:].mean() + 0.02  # H^beta: diverse regions first
    b = EntropySampler(**opts, selection="power", beta=20.0, max_overlap=1.0, seed=3)
    c = EntropySampler(**opts, selection="power", beta=20.0, max_overlap=1.0, seed=4)
    assert np.array_equal(a.plan(0).xy, b.plan(0).xy) and not np.array_equal(
        a.plan(0).xy, c.plan(0).xy
    )


def test_pseudo_map_codes_are_mapped_by_name(pseudo_map):
    """Code 0 is 'stroma' (class 1) and code 1 'tumor' (class 0): the sidecar's names win."""
    opts = {k: v for k, v in pseudo_map.items() if k != "codes"}
    cells = EntropySampler(**opts).plan(0).cells
    codes = pseudo_map["codes"]
    for code, cls in ((0, 1), (1, 0), (2, 2)):
        rows, cols = np.nonzero(codes[:-1, :-1] == code)
        assert len(rows) > 10
        for r, c in zip(rows[::7], cols[::7], strict=True):
            block = cells[r * 8 : r * 8 + 8, c * 8 : c * 8 + 8]  # 64-px cell = 8 x 8 map cells
            assert set(np.unique(block)) <= {cls, 255}


def test_unmapped_pseudo_map_codes(pseudo_map, tmp_path):
    codes = pseudo_map["codes"].copy()
    codes[10, 10] = 7
    Image.fromarray(codes).save(tmp_path / "k.png")
    (tmp_path / "k.json").write_text(
        json.dumps({"names": ["stroma", "tumor", "inflammation"], "downsample": 64})
    )
    opts = {k: v for k, v in pseudo_map.items() if k not in ("codes", "label_mask")}
    with pytest.raises(InputError, match=r"codes 7 \(unnamed\)"):
        EntropySampler(**opts, label_mask=str(tmp_path / "k.png")).take(1)
    assert EntropySampler(
        **opts, label_mask=str(tmp_path / "k.png"), unknown_labels="ignore", limit=2
    ).take(2)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"selection": "best"}, "selection='best'"), ({"q": 0}, "q=0"), ({"beta": -1}, "beta=-1")],
)
def test_options_are_validated(tcga, options, message):
    with pytest.raises(InputError, match=message):
        EntropySampler(**tcga, **options)


def test_classes_default_to_the_pseudo_map_names(pseudo_map, tcga):
    opts = {k: v for k, v in pseudo_map.items() if k not in ("codes", "classes")}
    assert EntropySampler(**opts).class_map.names == ("stroma", "tumor", "inflammation")
    with pytest.raises(InputError, match="give classes"):
        EntropySampler(**{k: v for k, v in tcga.items() if k != "classes"})


def test_background_class_is_not_a_tissue_in_the_entropy(drawn_slide):
    """Tumour | stroma on glass, background kept as a class: only windows across the
    tumour/stroma border are diverse; tissue/glass edges (tumour + background) are not."""
    from .conftest import drawn_options

    sampler = EntropySampler(
        **drawn_options(drawn_slide), background="class", q=1.0, max_overlap=1.0
    )
    plan = sampler.plan(0)
    assert plan.accepted > 0
    bg = sampler.class_map.names.index("background")
    c, p = plan.grid.cell_px, sampler.patch_size
    for x, y in plan.xy:
        block = plan.cells[y // c : (y + p) // c, x // c : (x + p) // c]
        tissue = set(np.unique(block).tolist()) - {bg, 255}
        assert tissue == {0, 1}, (x, y, tissue)  # both tissues, never tissue + glass alone
    # the map does hold glass as a class next to each tissue (so edges could have ranked)
    labelled = plan.cells[plan.cells != 255]
    assert (labelled == bg).any() and len(np.unique(labelled)) == 3


def test_region_splits_one_slide_into_disjoint_parts(drawn_slide):
    """``region`` keeps the windows wholly inside it: a left / right split of one slide shares
    no pixel, and together they lose only the windows across the border."""
    from .conftest import drawn_options

    options = drawn_options(drawn_slide, q=1.0, max_overlap=1.0, min_entropy=0.0)
    whole = EntropySampler(**options).plan(0)
    left = EntropySampler(**options, region=[0, 0, 0.5, 1]).plan(0)
    right = EntropySampler(**options, region=[0.5, 0, 1, 1]).plan(0)
    width, p = whole.grid.width, 128
    assert len(left.xy) and len(right.xy)
    assert (left.xy[:, 0] + p <= width / 2).all() and (right.xy[:, 0] >= width / 2).all()
    assert len(left.xy) + len(right.xy) < len(whole.xy)  # windows across x = W/2 are dropped
    with pytest.raises(InputError, match="region"):
        EntropySampler(**options, region=[0.5, 0, 0.4, 1])
