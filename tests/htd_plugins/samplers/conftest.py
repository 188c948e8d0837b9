"""Fixtures for the samplers: the real TCGA slide with hand-drawn annotations, and a drawn
plain-image slide for exact bookkeeping checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ANNOTATIONS = Path(__file__).resolve().parents[2] / "data" / "annotations"
TCGA_CLASSES = ["tumor", "stroma", "inflammation"]


@pytest.fixture(scope="session", autouse=True)
def _tiatoolbox_imported() -> None:
    """Import tiatoolbox first: it routes warnings to logging when imported, which would hide
    them from ``pytest.warns`` if that happened inside one."""
    import tiatoolbox.wsicore.wsireader  # noqa: F401


@pytest.fixture(scope="session")
def tcga(shared_data) -> dict:
    """Options for the TCGA slide (no mpp metadata: 2.0 um/px, see docs/sampling.md)."""
    return {
        "slide": str(shared_data / "slides" / "TCGA-CR-7395-01A-01-TS1.svs"),
        "slide_mpp": 2.0,
        "mpp": 2.0,
        "classes": TCGA_CLASSES,
        "annotations": str(ANNOTATIONS / "tcga_cr_7395.geojson"),
        "patch_size": 128,
        "stride": 64,
    }


@pytest.fixture(scope="session")
def drawn_slide(tmp_path_factory) -> dict:
    """A 1024 x 768 plain-image slide: white glass, a pink block x 128-896, y 128-640,
    annotated 'tumor' (x < 512) and 'stroma' (x >= 512)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("drawn")
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(243, 2, (768, 1024, 3)), 0, 255).astype(np.uint8)
    image[128:640, 128:896] = np.clip(rng.normal((200, 110, 170), 12, (512, 768, 3)), 0, 255)
    Image.fromarray(image).save(root / "slide.png")
    feats = [feature("tumor", 128, 128, 512, 640), feature("stroma", 512, 128, 896, 640)]
    (root / "ann.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    blank = np.clip(rng.normal(242, 2, (512, 512, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(blank).save(root / "blank.png")
    return {
        "slide": str(root / "slide.png"),
        "annotations": str(root / "ann.geojson"),
        "slide_mpp": 0.5,
        "classes": ["tumor", "stroma"],
        "patch_size": 128,
        "stride": 64,
        "blank": str(root / "blank.png"),
        "root": root,
    }


def feature(name: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": name}},
    }


def drawn_options(drawn: dict, **overrides) -> dict:
    keys = ("slide", "annotations", "slide_mpp", "classes", "patch_size", "stride")
    return {**{k: drawn[k] for k in keys}, **overrides}


def window_rule_ok(
    mask: np.ndarray, k: int, min_frac=0.2, max_frac=0.8, min_classes=2, min_labeled=0.5
) -> bool:
    """The heterogeneous rule, recomputed independently from an exported mask."""
    labelled = mask[mask < k]
    if labelled.size < min_labeled * mask.size or labelled.size == 0:
        return False
    frac = np.bincount(labelled.astype(np.int64), minlength=k) / labelled.size
    return int(((frac >= min_frac) & (frac <= max_frac)).sum()) >= min_classes
