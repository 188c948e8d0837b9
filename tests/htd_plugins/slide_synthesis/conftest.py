"""A tiny model for slide synthesis (16 px windows, 2 classes, trained at 2.0 um/px) with a
crop bank, and ``draw``: helpers to draw layouts (blob masks, GeoJSON squares)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from htd_core.testing import synthetic_sample
from htd_core.types import TissueSample

CLASSES = ("stroma", "gland")
MPP = 2.0


@pytest.fixture(scope="session", autouse=True)
def _tiatoolbox_imported() -> None:
    """Import tiatoolbox first (it reroutes warnings to logging when imported)."""
    import tiatoolbox.wsicore.wsireader  # noqa: F401


def samples(size: int = 16, n: int = 4) -> list[TissueSample]:
    out = []
    for s in range(n):
        x = synthetic_sample(size, classes=CLASSES, seed=s)
        out.append(TissueSample(x.image, x.mask, x.class_map, {**x.meta, "mpp": MPP}))
    return out


@pytest.fixture(scope="session")
def slide_model(tmp_path_factory) -> Path:
    """Folder with ``model/`` (a saved pipeline: semantic_map + crop, tiny controlnet_ldm) and
    ``bank.safetensors``."""
    from htd_core import Pipeline
    from htd_plugins.condition_builders import CropBank

    root = tmp_path_factory.mktemp("slide-model")
    data = samples()
    pipe = Pipeline(
        condition_builders=["semantic_map", {"name": "crop", "fixed_size": 6, "min_size": 2}],
        backbone={"name": "controlnet_ldm", "preset": "tiny"},
        stage_options={"generate": {"num_inference_steps": 2}},  # saved as the model's default
    )
    pipe.fit(data, steps=2, vae_steps=2, batch_size=2, progress=False, tensorboard=False)
    pipe.save_pretrained(root / "model")
    CropBank.from_samples(data, size=6, min_size=2).save(root / "bank.safetensors")
    return root


@pytest.fixture
def pipe(slide_model, builtin_manager):
    from htd_core import Pipeline

    return Pipeline.from_pretrained(
        slide_model / "model", builder_options={"bank": str(slide_model / "bank.safetensors")}
    )


def blob_mask(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 layout of 'stroma' (0) with round 'gland' (1) blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), np.uint8)
    for _ in range(max(2, height * width // 600)):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 12)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
    return mask


def write_geojson(path: Path, shapes: list[tuple[str, list[list[float]]]]) -> Path:
    """QuPath-style GeoJSON with one polygon per (class name, ring)."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]},
            "properties": {"objectType": "annotation", "classification": {"name": name}},
        }
        for name, ring in shapes
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def square(x: float, y: float, side: float) -> list[list[float]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]


@pytest.fixture(scope="session")
def draw() -> SimpleNamespace:
    """``mpp``, ``blob_mask(h, w, seed)``, ``write_geojson(path, shapes)``, ``square(x, y, side)``."""
    return SimpleNamespace(mpp=MPP, blob_mask=blob_mask, write_geojson=write_geojson, square=square)
