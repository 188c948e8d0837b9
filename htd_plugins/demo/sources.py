"""Where the demo's real tissue comes from: the seam between data and the rest of the demo.

:func:`load_demo_data` returns train and held-out samples (real H&E, each with a class-index
mask), split by source image. In order of preference:

1. a slide or image the user gives (``htd demo --slide PATH``);
2. the GlaS tiles in the shared data folder (``HTD_SHARED_DATA`` or ``../shared/data``), through
   the ``tiles`` sampler with its heterogeneous rule;
3. the H&E image shipped inside the tiatoolbox wheel (``tiatoolbox/data/target_image.png``).

Unannotated images (1 and 3) get a three-class map from stain thresholds (cellular,
stroma, background) by :func:`stain_map`. That is the place where the discovery pipeline's
pseudo maps (foundation-model embeddings + clustering) plug in once available: replace
:func:`layouts_from_image` and nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from htd_core.errors import InputError
from htd_core.types import ClassMap, TissueSample

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
) -> DemoData:
    """Real samples of ``patch_size`` px at :data:`DEMO_MPP` (see the module docstring)."""
    from htd_core.data import shared_data_dir

    if slide is not None:
        return from_image(Path(slide), patch_size, max_train, max_test, seed, slide_mpp=None)
    root = Path(data_dir) if data_dir else shared_data_dir()
    if root is not None and (root / "glas" / "images").is_dir():
        return from_tiles(root / "glas", patch_size, max_train, max_test, seed)
    import tiatoolbox

    target = Path(tiatoolbox.__file__).parent / "data" / "target_image.png"
    return from_image(target, patch_size, max_train, max_test, seed, slide_mpp=0.25)


def from_tiles(folder: Path, patch_size: int, max_train: int, max_test: int, seed: int) -> DemoData:
    """Heterogeneous GlaS patches (160 px at about 0.9 um/px, downscaled to ``patch_size``)."""
    from htd_core.plugins import create
    from htd_core.splits import sources_of, split_by_source

    cut = 160
    sampler = create(
        "patch_samplers",
        "tiles",
        root=folder,
        patch_size=cut,
        stride=64,
        rule="heterogeneous",
        mpp=0.9,
    )
    samples = [resize_sample(s, patch_size, 0.9 * cut / patch_size) for s in sampler]
    train_idx, test_idx = split_by_source(sources_of(samples), test_fraction=0.2, seed=seed)
    train = _subset(samples, train_idx, max_train, seed)
    test = _subset(samples, test_idx, max_test, seed + 1)
    return DemoData(train, test, f"GlaS tiles in {folder} ({len(samples)} heterogeneous patches)")


def from_image(
    path: Path, patch_size: int, max_train: int, max_test: int, seed: int, slide_mpp: float | None
) -> DemoData:
    """Patches of an unannotated slide or image with stain-threshold maps; held-out patches
    come from the right quarter of the image, training ones from the rest."""
    image, mpp = read_overview(path, slide_mpp)
    samples = layouts_from_image(image, patch_size, mpp, str(path))
    if len(samples) < 8:
        raise InputError(
            f"{path}: only {len(samples)} heterogeneous {patch_size} px patches; give a larger slide"
        )
    width = image.shape[1]
    test_idx = [i for i, s in enumerate(samples) if s.meta["x"] >= 0.75 * width]
    train_idx = [i for i, s in enumerate(samples) if s.meta["x"] + patch_size <= 0.75 * width]
    train = _subset(samples, train_idx, max_train, seed)
    test = _subset(samples, test_idx, max_test, seed + 1)
    return DemoData(train, test, f"{path.name} ({len(samples)} patches, stain-threshold maps)")


def read_overview(path: Path, slide_mpp: float | None) -> tuple[np.ndarray, float]:
    """The whole slide or image at about :data:`DEMO_MPP` (tiatoolbox; plain images are read
    as virtual slides)."""
    if not path.is_file():
        raise InputError(f"slide {path} does not exist")
    from tiatoolbox.wsicore.wsireader import WSIReader

    kwargs = {"mpp": slide_mpp} if slide_mpp else {}
    try:
        reader = WSIReader.open(path, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the file is unusable
        raise InputError(f"cannot read slide {path}: {exc}") from None
    base_mpp = reader.info.mpp
    if base_mpp is None or base_mpp[0] is None:
        raise InputError(
            f"slide {path} has no resolution metadata: run the demo on a slide with mpp"
        )
    # small images (the tiatoolbox sample is 1000 px) are read finer, to keep >= 256 px a side
    mpp = min(DEMO_MPP, float(base_mpp[0]) * min(reader.info.slide_dimensions) / 256)
    image = reader.slide_thumbnail(resolution=mpp, units="mpp")
    return np.ascontiguousarray(image[..., :3]), mpp


def layouts_from_image(
    image: np.ndarray, patch_size: int, mpp: float, name: str
) -> list[TissueSample]:
    """Heterogeneous patches of an unannotated image, with :func:`stain_map` as their map."""
    mask = stain_map(image)
    out = []
    h, w = mask.shape
    stride = patch_size // 4 if min(mask.shape) < 8 * patch_size else patch_size // 2
    for y in range(0, h - patch_size + 1, stride):
        for x in range(0, w - patch_size + 1, stride):
            m = mask[y : y + patch_size, x : x + patch_size]
            frac = np.bincount(m.ravel(), minlength=3)[:3] / m.size
            if ((frac >= 0.2) & (frac <= 0.8)).sum() >= 2:  # the paper's heterogeneity rule
                meta = {"slide_id": Path(name).stem, "x": x, "y": y, "mpp": mpp}
                out.append(
                    TissueSample(
                        image[y : y + patch_size, x : x + patch_size].copy(),
                        m.copy(),
                        STAIN_CLASSES,
                        meta,
                    )
                )
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


def resize_sample(sample: TissueSample, size: int, mpp: float) -> TissueSample:
    """Downscale a patch (area filter for the image, nearest for the mask)."""
    from PIL import Image

    image = np.asarray(Image.fromarray(sample.image).resize((size, size), Image.Resampling.BOX))
    mask = np.asarray(Image.fromarray(sample.mask).resize((size, size), Image.Resampling.NEAREST))
    return TissueSample(image, mask, sample.class_map, {**sample.meta, "mpp": mpp})


def _subset(
    samples: list[TissueSample], indices: list[int], limit: int, seed: int
) -> list[TissueSample]:
    chosen = (
        sorted(np.random.default_rng(seed).permutation(indices)[:limit].tolist())
        if len(indices) > limit
        else indices
    )
    return [samples[i] for i in chosen]
