"""Stain normalisation before embedding: tiatoolbox's Macenko, Vahadane and Reinhard
normalisers, with the source statistics fitted once per slide.

tiatoolbox's ``StainNormalizer.transform`` re-estimates the source stains of every image it is
given. On a patch of mostly one stain (stroma, mucus, a lymphoid aggregate) that estimate is
unstable, and it rescales every patch's concentrations to the target's 99th percentile, which
erases the differences between tissues that discovery looks for. Here the *source* is fitted
once per slide, with the same tiatoolbox ``fit``, on a sample of the slide's tissue pixels,
and every patch of the slide is mapped with it:

* ``macenko`` / ``vahadane``: concentrations C = OD(patch) pinv(S_source) (the least-squares
  solution of tiatoolbox's ``get_concentrations``, with the pseudo-inverse computed once), scaled by maxC_target / maxC_source (99th percentiles), recombined
  as 255 exp(-C S_target): tiatoolbox's ``transform`` with slide-level source statistics
  (Macenko et al., ISBI 2009; Vahadane et al., IEEE TMI 2016).
* ``reinhard``: each LAB channel moved from the slide's tissue mean / std to the target's
  (Reinhard et al., IEEE CG&A 2001), with tiatoolbox's LAB conversions.

The target is a tile chosen by the user or, by default, tiatoolbox's reference H&E tile
(``data/target_image.png`` in its wheel). Only the fitted numbers are recorded (in
``store.json`` and each slide's ``plan.json``), never a path or pixels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError

METHODS = ("macenko", "vahadane", "reinhard")
#: Tissue pixels a slide's source statistics are fitted on (seeded sample of the thumbnail).
SOURCE_PIXELS = 50_000
#: Longest side of the thumbnail the source pixels come from.
MAX_THUMB_SIDE = 2048
#: Saturation floor of tissue pixels (glass and grey dust are unsaturated; as grid.py).
MIN_SATURATION = 0.07


def tiatoolbox_sample_image() -> Path:
    """The real H&E image inside the tiatoolbox wheel (``data/target_image.png``, 1000 px):
    the default stain target, and the one-image demo's input."""
    import importlib.util

    spec = importlib.util.find_spec("tiatoolbox")
    path = Path(spec.origin).parent / "data" / "target_image.png" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise InputError("tiatoolbox's sample image data/target_image.png is not installed")
    return path


def _normalizer(method: str) -> Any:
    from tiatoolbox.tools.stainnorm import get_normalizer

    return get_normalizer(method)


def fit_stats(method: str, rgb: np.ndarray) -> dict[str, Any]:
    """tiatoolbox's ``fit`` of ``method`` on uint8 ``rgb`` (H x W x 3), as plain numbers.

    Returns:
        ``{"stain_matrix": 2x3, "max_c": 2}`` (macenko, vahadane) or ``{"means": 3, "stds": 3}``
        (reinhard), lists of floats.

    Raises:
        InputError: unknown method, or no stained pixels to fit on.
    """
    if method not in METHODS:
        raise InputError(f"stain normalisation {method!r}: use one of {', '.join(METHODS)}")
    norm = _normalizer(method)
    try:
        norm.fit(np.array(rgb, np.uint8, copy=True))  # tiatoolbox writes into its input
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise InputError(f"cannot fit {method} stain statistics: {exc}") from exc
    if method == "reinhard":
        return {"means": [float(v) for v in norm.target_means],
                "stds": [max(float(v), 1e-6) for v in norm.target_stds]}  # fmt: skip
    return {
        "stain_matrix": np.asarray(norm.stain_matrix_target, float).round(6).tolist(),
        "max_c": np.maximum(np.asarray(norm.maxC_target, float).ravel(), 1e-6).round(6).tolist(),
    }


def fit_target(method: str, target: str | Path | None = None) -> dict[str, Any]:
    """The stain target recorded in a store: method, where the tile came from (``reference``
    or a hash of its pixels; never its path) and its fitted statistics.

    Raises:
        InputError: unknown method, or a target tile that cannot be read.
    """
    from htd_core.images import read_rgb

    if method not in METHODS:
        raise InputError(f"--stain-norm {method!r}: use one of {', '.join(METHODS)}")
    if target is None:
        rgb, origin = read_rgb(tiatoolbox_sample_image()), "tiatoolbox reference tile"
    else:
        if not Path(target).is_file():
            raise InputError(f"stain target {target} is not a file: give an RGB image tile")
        rgb = read_rgb(target)
        origin = (
            "tile sha256:" + hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()[:16]
        )
    stats = fit_stats(method, stained_pixels(rgb, f"stain target ({origin})"))
    return {"method": method, "target": origin, "stats": stats}


def stained_pixels(rgb: np.ndarray, what: str, seed: int = 0) -> np.ndarray:
    """Up to :data:`SOURCE_PIXELS` stained pixels of uint8 ``rgb`` (uint8 N x 1 x 3): not
    white (luminance < 0.9) and saturated (>= :data:`MIN_SATURATION`); a seeded sample.

    Raises:
        InputError: fewer than 100 such pixels (``what`` names the image).
    """
    flat = np.asarray(rgb, np.uint8).reshape(-1, 3)
    f = flat.astype(np.float32)
    hi, lo = f.max(axis=1), f.min(axis=1)
    light = (0.2126 * f[:, 0] + 0.7152 * f[:, 1] + 0.0722 * f[:, 2]) / 255.0
    keep = np.flatnonzero(((hi - lo) / np.maximum(hi, 1) >= MIN_SATURATION) & (light < 0.9))
    if len(keep) < 100:
        raise InputError(
            f"{what} has too few stained pixels ({len(keep)}) to fit stain normalisation: "
            "embed without --stain-norm, or give another target tile"
        )
    if len(keep) > SOURCE_PIXELS:
        keep = np.sort(np.random.default_rng(seed).choice(keep, SOURCE_PIXELS, replace=False))
    return np.ascontiguousarray(flat[keep][:, None, :])


def tissue_pixels(slide: Any, read_mpp: float) -> np.ndarray:
    """:func:`stained_pixels` of ``slide``'s thumbnail at ``read_mpp`` or coarser (longest
    side <= :data:`MAX_THUMB_SIDE`)."""
    width, height = slide.dimensions
    mpp = max(read_mpp, max(width, height) * slide.base_mpp / MAX_THUMB_SIDE)
    return stained_pixels(slide.thumbnail(mpp), f"slide {slide.slide_id}")


class PatchNormalizer:
    """Maps uint8 patches of one slide to the target's stain appearance (picklable, so
    DataLoader worker processes can use it).

    Args:
        target: :func:`fit_target`'s record.
        source: :func:`fit_stats` of the slide's tissue pixels (same method).
    """

    def __init__(self, target: dict[str, Any], source: dict[str, Any]) -> None:
        self.method = target["method"]
        self.target, self.source = target["stats"], source
        if self.method != "reinhard":  # OD = C S: least squares C = OD pinv(S), as lstsq
            self._unmix = np.linalg.pinv(np.asarray(source["stain_matrix"], np.float64))
            ratio = np.asarray(target["stats"]["max_c"]) / np.asarray(source["max_c"])
            self._mix = ratio[:, None] * np.asarray(target["stats"]["stain_matrix"], np.float64)

    @classmethod
    def for_slide(cls, target: dict[str, Any], slide: Any, read_mpp: float) -> PatchNormalizer:
        """Fit the slide's source statistics on its tissue pixels."""
        return cls(target, fit_stats(target["method"], tissue_pixels(slide, read_mpp)))

    def __call__(self, patch: np.ndarray) -> np.ndarray:
        """uint8 H x W x 3 -> uint8 H x W x 3."""
        from tiatoolbox.tools.stainnorm import ReinhardNormalizer
        from tiatoolbox.utils.transforms import rgb2od

        patch = np.array(patch, np.uint8, copy=True)  # tiatoolbox's rgb2od writes into it
        if self.method == "reinhard":
            chans = ReinhardNormalizer.lab_split(patch)
            m_s, s_s = self.source["means"], self.source["stds"]
            m_t, s_t = self.target["means"], self.target["stds"]
            moved = [(c - m_s[i]) * (s_t[i] / s_s[i]) + m_t[i] for i, c in enumerate(chans)]
            return ReinhardNormalizer.merge_back(*moved)
        conc = rgb2od(patch).reshape(-1, 3) @ self._unmix  # (HW x 2) concentrations
        out = 255.0 * np.exp(-conc @ self._mix)  # scaled by maxC_target / maxC_source
        return np.clip(out, 0, 255).reshape(patch.shape).astype(np.uint8)
