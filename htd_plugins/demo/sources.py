"""Where the demo's real tissue comes from: the seam between data and the rest of the demo.

:func:`load_demo_data` returns train and held-out samples (real H&E, each with a class-index
mask), split by source image. In order of preference:

1. a slide or image the user gives (``htd demo --slide PATH``);
2. the GlaS tiles in the shared data folder (``HTD_SHARED_DATA`` or ``../shared/data``), through
   the ``tiles`` sampler with its heterogeneous rule and GlaS's official split (training
   patches from ``train_*`` images, held-out ones from ``testA_*`` / ``testB_*``);
3. the H&E image shipped inside the tiatoolbox wheel (``tiatoolbox/data/target_image.png``),
   labelled by the discovery pipeline (FID-Inception embeddings, hierarchical k-means, merge
   tree): pseudo maps, as the paper does for unannotated TCGA slides.

A user's slide (1) gets a quick three-class map from stain thresholds (cellular, stroma,
background) by :func:`stain_map`, so the demo stays fast on large slides; run
``htd discover`` for pseudo maps of your own slides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap, TissueSample
from htd_plugins.experiment.data import resize_sample, subset

#: Resolution the demo works at (microns per pixel of its 64 px patches).
DEMO_MPP = 2.0
STAIN_CLASSES = ClassMap(("cellular", "stroma", "background"))


@dataclass
class DemoData:
    """Training and held-out samples plus a one-line description of the source."""

    train: list[TissueSample]
    test: list[TissueSample]
    source: str


def load_demo_data(
    patch_size: int = 64,
    *,
    slide: str | Path | None = None,
    data_dir: str | Path | None = None,
    max_train: int = 600,
    max_test: int = 48,
    seed: int = 0,
    work_dir: str | Path = "htd-output/demo",
) -> DemoData:
    """Real samples of ``patch_size`` px at :data:`DEMO_MPP` (see the module docstring)."""
    from htd_core.data import shared_data_dir

    if slide is not None:
        return from_image(Path(slide), patch_size, max_train, max_test, seed, slide_mpp=None)
    root = Path(data_dir) if data_dir else shared_data_dir()
    if root is not None and (root / "glas" / "images").is_dir():
        return from_tiles(root / "glas", patch_size, max_train, max_test, seed)
    from htd_plugins.discovery.quick import tiatoolbox_sample_image

    return from_discovery(
        tiatoolbox_sample_image(),
        patch_size,
        max_train,
        max_test,
        seed,
        Path(work_dir) / "discovery",
    )


def from_tiles(folder: Path, patch_size: int, max_train: int, max_test: int, seed: int) -> DemoData:
    """Heterogeneous GlaS patches (160 px at about 0.9 um/px, downscaled to ``patch_size``):
    training patches from the official training images (``train_*``) only, held-out ones from
    the test images (``testA_*``, ``testB_*``), so the model never sees a test image."""
    from htd_core.plugins import create

    cut = 160
    parts = {}
    for split in ("train", "test"):
        sampler = create(
            "patch_samplers", "tiles", root=folder, split=split, patch_size=cut, stride=64,
            rule="heterogeneous", mpp=0.9,
        )  # fmt: skip
        parts[split] = [resize_sample(s, patch_size) for s in sampler]  # mpp scaled from 0.9
    train = subset(parts["train"], max_train, seed)
    test = subset(parts["test"], max_test, seed + 1)
    n = len(parts["train"]) + len(parts["test"])
    return DemoData(train, test, f"GlaS tiles ({n} heterogeneous patches; official split)")


def from_image(
    path: Path, patch_size: int, max_train: int, max_test: int, seed: int, slide_mpp: float | None
) -> DemoData:
    """Patches of an unannotated slide or image with stain-threshold maps."""
    image, mpp = read_overview(path, slide_mpp)
    samples = layouts_from_image(image, patch_size, mpp, str(path), stain_map(image), STAIN_CLASSES)
    return _split_left_right(
        path, image, samples, patch_size, max_train, max_test, seed, "stain-threshold maps"
    )


#: Resolution of the tiatoolbox sample image (a 40x crop) and the discovery grid on it.
SAMPLE_IMAGE_MPP = 0.25
DISCOVERY_LEVEL = 5


def from_discovery(
    path: Path, patch_size: int, max_train: int, max_test: int, seed: int, work_dir: Path
) -> DemoData:
    """Patches of an unannotated image labelled by discovery's pseudo map at k <= 5."""
    from htd_plugins.discovery.maps import read_map
    from htd_plugins.discovery.quick import pseudo_maps_for_image

    result = pseudo_maps_for_image(path, work_dir, mpp=SAMPLE_IMAGE_MPP)
    level = max(k for k in result["levels"] if k <= DISCOVERY_LEVEL)
    grid, sidecar = read_map(result["maps"][level])
    class_map = ClassMap.from_dict(sidecar["classes"])
    image, mpp = read_overview(path, SAMPLE_IMAGE_MPP)
    mask = upsample_grid(grid, image.shape[:2], mpp / SAMPLE_IMAGE_MPP, sidecar["downsample"])
    samples = layouts_from_image(image, patch_size, mpp, str(path), mask, class_map)
    what = f"discovery pseudo maps, k={level}, {result['encoder']}"
    return _split_left_right(path, image, samples, patch_size, max_train, max_test, seed, what)


def upsample_grid(
    grid: np.ndarray, shape: tuple[int, int], image_downsample: float, cell_downsample: float
) -> np.ndarray:
    """Nearest-cell lookup of a pseudo map (one pixel per grid cell) at an image's pixels.

    Args:
        grid: the map, one value per cell.
        shape: (height, width) of the image to label.
        image_downsample, cell_downsample: base-resolution pixels per image pixel and per cell.
    """
    scale = image_downsample / cell_downsample
    rows = np.minimum((np.arange(shape[0]) * scale).astype(int), grid.shape[0] - 1)
    cols = np.minimum((np.arange(shape[1]) * scale).astype(int), grid.shape[1] - 1)
    return grid[np.ix_(rows, cols)]


def _split_left_right(
    path: Path, image: np.ndarray, samples: list[TissueSample], patch_size: int,
    max_train: int, max_test: int, seed: int, what: str,
) -> DemoData:  # fmt: skip
    """Held-out patches from the right quarter of the image, training ones from the rest.

    The description names the slide by its opaque id: it goes into the demo's results.md and results.json.
    """
    from htd_core.images import opaque_id

    if len(samples) < 8:
        raise InputError(
            f"{path}: only {len(samples)} heterogeneous {patch_size} px patches; give a larger slide"
        )
    width = image.shape[1]
    test_idx = [i for i, s in enumerate(samples) if s.meta["x"] >= 0.75 * width]
    train_idx = [i for i, s in enumerate(samples) if s.meta["x"] + patch_size <= 0.75 * width]
    train = subset([samples[i] for i in train_idx], max_train, seed)
    test = subset([samples[i] for i in test_idx], max_test, seed + 1)
    return DemoData(train, test, f"slide {opaque_id(path)} ({len(samples)} patches, {what})")


def read_overview(path: Path, slide_mpp: float | None) -> tuple[np.ndarray, float]:
    """The whole slide or image at about :data:`DEMO_MPP` um/px: (uint8 H x W x 3, its mpp).

    Opened through the slide layer (:class:`htd_plugins.slides.Slide`; plain images are read
    as virtual slides); ``slide_mpp`` is the level-0 um/px to use instead of the metadata.

    Raises:
        InputError: the file is missing or unreadable, or it has no mpp and none is given.
    """
    from htd_plugins.slides import Slide

    slide = Slide(path, slide_mpp)
    # small images (the tiatoolbox sample is 1000 px) are read finer, to keep >= 256 px a side
    mpp = min(DEMO_MPP, slide.base_mpp * min(slide.dimensions) / 256)
    return slide.thumbnail(mpp), mpp


def layouts_from_image(
    image: np.ndarray, patch_size: int, mpp: float, name: str, mask: np.ndarray, class_map: ClassMap
) -> list[TissueSample]:
    """Heterogeneous patches of an image and its class map (the paper's rule: >= 2 classes
    each covering 20-80% of the labelled pixels, at least half the patch labelled).

    ``name`` is the image's file name or path; the samples' ``slide_id`` is its opaque id
    (:func:`htd_core.images.opaque_id`), never the name.
    """
    from htd_core.images import opaque_id

    slide_id = opaque_id(name)
    out = []
    h, w = mask.shape
    k = len(class_map)
    stride = patch_size // 4 if min(mask.shape) < 8 * patch_size else patch_size // 2
    for y in range(0, h - patch_size + 1, stride):
        for x in range(0, w - patch_size + 1, stride):
            m = mask[y : y + patch_size, x : x + patch_size]
            counts = np.bincount(m[m != class_map.ignore_index].ravel(), minlength=k)[:k]
            if counts.sum() < 0.5 * m.size:
                continue
            frac = counts / counts.sum()
            if ((frac >= 0.2) & (frac <= 0.8)).sum() >= 2:
                meta = {
                    "slide_id": slide_id,
                    "tile_id": slide_id,
                    "x": x,
                    "y": y,
                    "patch_size": patch_size,
                    "mpp": mpp,
                }  # its window in the image
                crop = image[y : y + patch_size, x : x + patch_size].copy()
                out.append(TissueSample(crop, m.copy(), class_map, meta))
    return out


def stain_map(image: np.ndarray) -> np.ndarray:
    """Three classes from colour alone: background (bright), cellular (haematoxylin-rich after
    smoothing), stroma (the rest). A stand-in for discovery's pseudo maps."""
    from scipy.ndimage import uniform_filter
    from skimage.color import rgb2hed
    from skimage.filters import threshold_otsu

    hed = rgb2hed(image)
    haem = uniform_filter(hed[..., 0], size=5)
    background = uniform_filter(image.mean(axis=2), size=5) > 215
    tissue = ~background
    cut = threshold_otsu(haem[tissue]) if tissue.sum() > 16 else np.inf
    mask = np.where(background, 2, np.where(haem > cut, 0, 1)).astype(np.uint8)
    return mask
