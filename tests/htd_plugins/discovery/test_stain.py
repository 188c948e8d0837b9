"""Stain normalisation before embedding: tiatoolbox's maths, slide-level fit, store identity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from htd_core.errors import InputError
from htd_core.images import opaque_id
from htd_plugins.discovery import tiatoolbox_sample_image
from htd_plugins.discovery.embed import embed_slides
from htd_plugins.discovery.patches import GridOptions
from htd_plugins.discovery.stain import PatchNormalizer, fit_stats, fit_target, stained_pixels
from htd_plugins.discovery.store import EmbeddingStore
from htd_plugins.slides import Slide

OPTIONS = GridOptions(read_mpp=2.0, patch_size=32, stride=32, slide_mpp=0.5)


def restained(rgb: np.ndarray) -> np.ndarray:
    """The same tissue with other stains: optical densities mixed by a fixed 3x3 matrix (more
    haematoxylin-blue, less eosin), as another lab's H&E would give."""
    od = -np.log(np.maximum(rgb.astype(np.float64), 1) / 255.0)
    mix = np.array([[1.25, 0.1, 0.0], [0.15, 0.7, 0.1], [0.0, 0.2, 1.2]])
    return np.clip(255 * np.exp(-(od @ mix)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def two_labs(tmp_path_factory):
    root = tmp_path_factory.mktemp("labs")
    rgb = np.asarray(Image.open(tiatoolbox_sample_image()).convert("RGB"))
    Image.fromarray(rgb).save(root / "lab_a.png")
    Image.fromarray(restained(rgb)).save(root / "lab_b.png")
    return root / "lab_a.png", root / "lab_b.png"


def test_patch_normaliser_is_tiatoolbox_transform_when_fitted_on_the_patch():
    from tiatoolbox.tools.stainnorm import MacenkoNormalizer

    rgb = np.asarray(Image.open(tiatoolbox_sample_image()).convert("RGB"))
    patch = rgb[300:428, 300:428].copy()  # tiatoolbox writes into its input
    target = fit_target("macenko")
    reference = MacenkoNormalizer()
    reference.fit(stained_pixels(rgb, "target"))
    expected = reference.transform(patch.copy())
    ours = PatchNormalizer(target, fit_stats("macenko", patch))(patch)
    assert np.abs(ours.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_two_labs_look_alike_after_normalisation(two_labs, method):
    target = fit_target(method)
    slides = [Slide(p, default_mpp=0.5) for p in two_labs]
    raw = [s.read_level0(300, 300, 128, 1.0) for s in slides]
    norm = [PatchNormalizer.for_slide(target, s, 2.0)(r) for s, r in zip(slides, raw, strict=True)]
    before = np.abs(raw[0].astype(float) - raw[1]).mean()
    after = np.abs(norm[0].astype(float) - norm[1]).mean()
    assert after < 0.5 * before, (before, after)  # the lab difference is mostly gone


def test_embed_with_stain_normalisation(tmp_path, two_labs, tiny_encoder, identity_of):
    target = fit_target("macenko")
    label = f"macenko: {target['target']}"
    ident = {**identity_of(tiny_encoder, 2.0, 32), "stain": label, "stain_target": target}
    store = EmbeddingStore(tmp_path / "norm", ident)
    embed_slides(store, list(two_labs), tiny_encoder, OPTIONS, progress=False)
    plain = EmbeddingStore(tmp_path / "plain", identity_of(tiny_encoder, 2.0, 32))
    embed_slides(plain, list(two_labs), tiny_encoder, OPTIONS, progress=False)
    a, b = (opaque_id(p) for p in two_labs)
    info = json.loads((tmp_path / "norm" / "store.json").read_text())
    assert info["stain"] == label == "macenko: tiatoolbox reference tile"
    assert "target_image" not in json.dumps(info) and str(tmp_path) not in json.dumps(info)
    assert "stain_source" in json.loads((store.slide_folder(a) / "plan.json").read_text())

    def gap(s: EmbeddingStore) -> float:  # the two labs' embeddings of the same tissue
        x, y = (np.asarray(s.entry(i).embeddings(), np.float32) for i in (a, b))
        return float(np.linalg.norm(x - y, axis=1).mean())

    assert gap(store) < 0.5 * gap(plain)
    with pytest.raises(InputError, match="stain"):  # a store is normalised or not, never both
        EmbeddingStore(tmp_path / "norm", identity_of(tiny_encoder, 2.0, 32))
    # the student sees the pixels the teacher saw: it records the target and normalises the
    # slides it labels (each with its own source stains)
    from htd_plugins.discovery.clustering import cluster_stores
    from htd_plugins.discovery.distill import distill, maps_with_classifier

    cluster_stores([tmp_path / "norm"], tmp_path / "phen", levels=(2, 4), progress=False)
    config = distill([tmp_path / "norm"], tmp_path / "phen", tmp_path / "student",
                     slides=list(two_labs), epochs=1, input_size=16, depth=1, block=2,
                     arch="vit_tiny_patch16_224", progress=False)  # fmt: skip
    assert config["stain"] == target
    written, skipped = maps_with_classifier(tmp_path / "student", tmp_path / "phen",
                                            [two_labs[1]], tmp_path / "maps", slide_mpp=0.5,
                                            progress=False)  # fmt: skip
    assert not skipped and list(written) == [b]


def test_bad_stain_options(tmp_path):
    from htd_core.cli import main

    with pytest.raises(InputError, match="vahadane"):
        fit_target("hed")
    with pytest.raises(InputError, match="not a file"):
        fit_target("macenko", tmp_path / "missing.png")
    Image.fromarray(np.full((64, 64, 3), 250, np.uint8)).save(tmp_path / "white.png")
    with pytest.raises(InputError, match="stained pixels"):
        fit_target("macenko", tmp_path / "white.png")
    code = main(["discover", "embed", str(tiatoolbox_sample_image()), "--out",
                 str(tmp_path / "s"), "--stain-target", str(tmp_path / "white.png")])  # fmt: skip
    assert code == 2 and not (tmp_path / "s").exists()
