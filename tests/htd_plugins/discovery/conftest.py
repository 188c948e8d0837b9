"""Fixtures of the discovery tests: a tiny encoder and one low-resolution real-slide run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from htd_core import Encoder
from htd_core.images import opaque_id

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class TinyEncoder(Encoder):
    """Fixed random 3x3 convolutions + mean/std pooling: colour and texture statistics."""

    name = "tiny"
    embed_dim = 16
    input_size = 32

    def __init__(self, seed: int = 0, fail_after: int | None = None) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(8, 3, 3, 3, generator=gen) * 0.5
        self.weights_id = "random" if seed == 0 else f"random-seed{seed}"
        self.fail_after, self.calls = fail_after, 0

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        h = torch.relu(torch.nn.functional.conv2d(pixels, self.weight, padding=1))
        return torch.cat([h.mean((2, 3)), h.std((2, 3))], 1)


#: Low-resolution grid on CMU-1-Small-Region: 4 um/px, 16 px patches, 8 px cells (~650 patches).
LOW_RES = {"read_mpp": 4.0, "patch_size": 16, "stride": 8}


def identity(encoder: Encoder, read_mpp: float, patch_size: int) -> dict:
    return {"encoder": encoder.name, "weights_id": encoder.weights_id,
            "embed_dim": encoder.embed_dim, "read_mpp": read_mpp, "patch_size": patch_size}  # fmt: skip


@pytest.fixture
def tiny_encoder() -> TinyEncoder:
    return TinyEncoder()


@pytest.fixture(scope="session")
def cmu_slide(shared_data: Path) -> Path:
    path = shared_data / "slides" / "CMU-1-Small-Region.svs"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def cmu_run(tmp_path_factory, cmu_slide: Path) -> dict:
    """The whole teacher pipeline on the real CMU slide at low resolution (embed, cluster, maps)."""
    from htd_plugins.discovery.clustering import cluster_stores
    from htd_plugins.discovery.embed import embed_slides
    from htd_plugins.discovery.maps import maps_from_stores
    from htd_plugins.discovery.patches import GridOptions
    from htd_plugins.discovery.store import EmbeddingStore

    root = tmp_path_factory.mktemp("cmu_run")
    encoder = TinyEncoder()
    store = EmbeddingStore(
        root / "store", identity(encoder, LOW_RES["read_mpp"], LOW_RES["patch_size"])
    )
    report = embed_slides(store, [cmu_slide], encoder, GridOptions(**LOW_RES), progress=False)
    phenotypes = cluster_stores([root / "store"], root / "phenotypes", progress=False)
    maps = maps_from_stores([root / "store"], root / "phenotypes", root / "maps", progress=False)
    return {"root": root, "store": store, "report": report, "phenotypes": phenotypes, "maps": maps,
            "slide": cmu_slide, "slide_id": opaque_id(cmu_slide)}  # fmt: skip


def blobs(n_per: list[int], dim: int = 8, seed: int = 0, spread: float = 0.3) -> np.ndarray:
    """Gaussian blobs with centres on a scale of 3 (shape tests of the clustering)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(n_per), dim))
    return np.concatenate(
        [c + rng.normal(0, spread, (n, dim)) for c, n in zip(centres, n_per, strict=True)]
    ).astype(np.float32)


@pytest.fixture
def encoder_cls() -> type[TinyEncoder]:
    return TinyEncoder


@pytest.fixture
def identity_of():
    return identity


@pytest.fixture
def make_blobs():
    return blobs


@pytest.fixture
def low_res() -> dict:
    return dict(LOW_RES)
