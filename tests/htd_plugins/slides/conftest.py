"""Fixtures for the slide helpers: a drawn virtual slide and the shared TCGA slide."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "annotations"


@pytest.fixture(scope="session", autouse=True)
def _tiatoolbox_imported() -> None:
    """Import tiatoolbox before any test: it routes warnings to logging at import time, which
    would hide warnings from ``pytest.warns`` if it happened inside one."""
    import tiatoolbox.wsicore.wsireader  # noqa: F401


@pytest.fixture(scope="session")
def drawn_slide(tmp_path_factory) -> dict:
    """A 1024 x 768 plain-image slide: white glass, a pink tissue block x 128-896, y 128-640,
    annotated 'tumor' (x < 512) and 'stroma' (x >= 512) in a QuPath-style GeoJSON."""
    root = tmp_path_factory.mktemp("drawn")
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(243, 2, (768, 1024, 3)), 0, 255).astype(np.uint8)
    tissue = np.clip(rng.normal((200, 110, 170), 12, (512, 768, 3)), 0, 255).astype(np.uint8)
    image[128:640, 128:896] = tissue
    from PIL import Image

    Image.fromarray(image).save(root / "slide.png")
    feats = [_feature("tumor", 128, 128, 512, 640), _feature("stroma", 512, 128, 896, 640)]
    (root / "ann.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return {"slide": root / "slide.png", "geojson": root / "ann.geojson", "root": root, "mpp": 0.5}


def _feature(name: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": name}},
    }


@pytest.fixture
def feature():
    return _feature
