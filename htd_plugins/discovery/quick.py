"""One image -> pseudo maps in about a minute on a CPU (the ``make demo`` no-data fallback).

Runs the whole discovery pipeline (embed, diversity sample, hierarchical k-means, merge tree,
maps) on a single image opened as a virtual slide, with the phenotype count reduced to what
the patch count supports.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from htd_core.interfaces import Encoder
from htd_plugins.discovery.stain import tiatoolbox_sample_image  # also stain's default target

__all__ = ["pseudo_maps_for_image", "tiatoolbox_sample_image"]


def pseudo_maps_for_image(
    path: str | Path,
    out: str | Path,
    *,
    mpp: float = 0.5,
    patch_size: int = 128,
    stride: int = 100,
    encoder: Encoder | str = "inception_fid",
    levels: tuple[int, ...] = (3, 5, 10),
    n_phenotypes: int = 10,
    min_tissue: float = 0.25,
    progress: bool = False,
) -> dict[str, Any]:
    """Pseudo maps of one image, each with its overlay on the image and its phenotype
    gallery beside it (:mod:`.pictures`); returns ``{"maps": {k: png}, "slide_id",
    "encoder", ...}``.

    Args:
        path: an RGB image (PNG/JPEG/TIFF) or a slide.
        out: folder for ``store/``, ``phenotypes/`` and ``maps/`` (rerunning resumes).
        mpp: the image's resolution (plain images carry none).
        patch_size, stride: patch side and map cell side in pixels at ``mpp``.
        encoder: an Encoder or a registered name (default: the FID Inception, real weights).
        levels: granularities of the maps (those above the phenotype count are dropped).
        n_phenotypes: phenotypes asked (reduced automatically to about patches / 5); kept
            small because one image holds few tissue types.
    """
    from htd_core import create
    from htd_plugins.discovery.clustering import cluster_stores
    from htd_plugins.discovery.embed import embed_slide
    from htd_plugins.discovery.kmeans import KMeansOptions
    from htd_plugins.discovery.maps import maps_from_stores
    from htd_plugins.discovery.patches import GridOptions
    from htd_plugins.discovery.store import EmbeddingStore

    out = Path(out)
    enc = create("encoders", encoder) if isinstance(encoder, str) else encoder
    identity = {"encoder": enc.name, "weights_id": enc.weights_id, "embed_dim": enc.embed_dim,
                "read_mpp": mpp, "patch_size": patch_size}  # fmt: skip
    store = EmbeddingStore(out / "store", identity)
    options = GridOptions(read_mpp=mpp, patch_size=patch_size, stride=stride,
                          min_tissue=min_tissue, slide_mpp=mpp)  # fmt: skip
    meta = embed_slide(store, path, enc, options, batch_size=16, progress=progress)
    kmeans = KMeansOptions(n_phenotypes=n_phenotypes, coarse_k=min(5, n_phenotypes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phenotypes = cluster_stores([out / "store"], out / "phenotypes", levels=levels,
                                    options=kmeans, progress=progress)  # fmt: skip
    slide_id = meta["slide_id"]
    maps = maps_from_stores([out / "store"], phenotypes, out / "maps",
                            slide_files={slide_id: Path(path)}, progress=progress)  # fmt: skip
    return {
        "slide_id": slide_id,
        "maps": maps[slide_id],
        "maps_dir": out / "maps",
        "levels": list(phenotypes.levels),
        "n_patches": meta["n_patches"],
        "encoder": enc.label,
    }
