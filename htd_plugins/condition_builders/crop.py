"""``crop``: one real tissue crop per class, placed in a sparse tensor with a validity channel.

For each class i present in the mask, a d_i x d_i square that is at least ``min_inside`` class
i is cut from the sample's image (training), drawn from a :class:`CropBank` or taken from
explicit crops (generation from a layout), and placed into C_i (3 channels, pixels scaled to
[-1, 1], zero elsewhere). V_i is 1 exactly where C_i holds crop pixels, so an empty pixel can
never pass for mid-grey tissue. Channels: ``crop:<class>:{r,g,b}`` for every class, then
``valid:<class>`` for every class; ``semantic_map + crop`` is the paper's dual condition
concat(M, C_1..C_K, V_1..V_K).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core import ClassMap, Condition, ConditionBuilder, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.interfaces import require_class_list
from htd_core.options import check_number
from htd_core.types import CROP_PROVENANCE
from htd_plugins.condition_builders.crops.bank import CropBank, sample_mpp
from htd_plugins.condition_builders.crops.explicit import MissingCropError, load_crop
from htd_plugins.condition_builders.crops.provenance import CropChoice, crop_provenance
from htd_plugins.condition_builders.crops.references import draw_outside
from htd_plugins.condition_builders.crops.regions import (
    center_square,
    choose_elsewhere,
    choose_square,
    class_integrals,
    region_complexity,
    resize_square,
    size_range,
)

PLACEMENTS = ("outside", "elsewhere", "same")
ON_SMALL = ("shrink", "empty")


class CropBuilder(ConditionBuilder):
    """Real tissue crop per class plus validity channel (the visual half of the dual condition).

    Args:
        d_base: base crop side in pixels at ``reference_mpp``; d_i = d_base (1 + alpha c_i),
            c_i = :func:`region_complexity` of class i in the sample, clipped to ``d_range``.
        alpha: how much region complexity enlarges the crop (0: always d_base).
        fixed_size: one side for every class (at ``reference_mpp``), instead of the rule above.
        d_range: (min, max) crop side at ``reference_mpp``; the paper uses 50-200 px at 0.5 um/px.
        max_fraction: cap on the crop side as a fraction of the sample's side (default 1: the
            side). At a small model size the paper's 50-200 px (brought to the patch's mpp, or
            taken as they are when the patch records none) may not fit: a square larger than
            half the patch cannot lie in a class region that covers 20-80 % of it (the
            heterogeneous rule), so ``htd experiment`` caps at 0.5.
        min_inside: fraction of the crop square that must be the class (default 0.9).
        placement: where a sample's crops come from. ``outside``: from ``bank`` (crops of
            the training samples with their geometry), from the sample's own source image but
            outside its window, else from another source, as the provenance says
            (:mod:`.crops.references`): the target never contains its own condition.
            ``elsewhere`` (the default, needing no bank): cut from the sample, moved to another
            valid position of its class region (at 64 px the region often holds one square
            only, so it may still overlap its cut). ``same``: kept where cut (ablations only).
            Bank crops for layouts without an image, and explicit crops, go to a random valid
            position.
        on_small: region cannot hold d_i: ``shrink`` to the largest fitting square of at least
            ``min_size``, else leave C_i empty; ``empty`` leaves it empty at once.
        min_size: floor of the crop side when shrinking (pixels at ``reference_mpp``).
        reference_mpp: microns per pixel the sizes refer to; a sample's ``meta['mpp']`` scales
            them (absent: taken to be ``reference_mpp``).
        bank: a :class:`CropBank` or the path of a saved one; used for layouts (no image).
        crops: explicit crops per class name (uint8 H x W x 3 arrays or image paths); they take
            precedence over the sample's image and the bank for their classes.
        crops_mpp: microns per pixel of the explicit crops (None: the sample's).
        classes: expected class names; a sample with another class list is refused.
        seed: used when ``build`` gets ``seed=None``.
    """

    def __init__(
        self,
        d_base: float = 96,
        alpha: float = 1.0,
        fixed_size: int | None = None,
        d_range: tuple[int, int] | list[int] = (50, 200),
        max_fraction: float = 1.0,
        min_inside: float = 0.9,
        placement: str = "elsewhere",
        on_small: str = "shrink",
        min_size: int = 16,
        reference_mpp: float = 0.5,
        bank: CropBank | str | Path | None = None,
        crops: Mapping[str, np.ndarray | str | Path] | None = None,
        crops_mpp: float | None = None,
        classes: list[str] | tuple[str, ...] | None = None,
        seed: int = 0,
    ) -> None:
        for key, value in {"d_base": d_base, "min_size": min_size, "reference_mpp": reference_mpp,
                           "fixed_size": fixed_size, "crops_mpp": crops_mpp}.items():  # fmt: skip
            if value is not None:
                check_number(value, f"crop: {key}", 0.0, above=True)
        if not (isinstance(max_fraction, int | float) and 0 < max_fraction <= 1):
            raise InputError(f"crop: max_fraction={max_fraction!r} must be in (0, 1] (default 1)")
        if not (isinstance(alpha, int | float) and alpha >= 0):
            raise InputError(f"crop: alpha={alpha!r} must be a number >= 0")
        lo, hi = size_range(d_range)
        if not 0 < min_inside <= 1:
            raise InputError(f"crop: min_inside={min_inside!r} must be in (0, 1] (default 0.9)")
        if placement not in PLACEMENTS:
            raise InputError(f"crop: placement={placement!r} is not one of {list(PLACEMENTS)}")
        if placement == "outside" and bank is None:
            raise MissingCropError(
                "crop: placement='outside' draws each crop from a bank of the training samples "
                "(bank=CropBank.from_samples(train, max_per_class=None) or its saved path): "
                "give bank=, or use placement='elsewhere'"
            )
        if on_small not in ON_SMALL:
            raise InputError(f"crop: on_small={on_small!r} is not one of {list(ON_SMALL)}")
        if not (isinstance(seed, int) and seed >= 0):
            raise InputError(f"crop: seed={seed!r} must be an integer >= 0")
        self.d_base, self.alpha, self.fixed_size = float(d_base), float(alpha), fixed_size
        self.d_range, self.max_fraction = (lo, hi), float(max_fraction)
        self.min_inside, self.placement, self.on_small = float(min_inside), placement, on_small
        self.min_size, self.reference_mpp, self.seed = min_size, float(reference_mpp), seed
        self.bank = CropBank.load(bank) if isinstance(bank, str | Path) else bank
        if self.bank is not None and not isinstance(self.bank, CropBank):
            raise InputError(f"crop: bank must be a CropBank or a path, got {type(bank).__name__}")
        self.crops = {str(k): load_crop(k, v) for k, v in (crops or {}).items()}
        self.crops_mpp = crops_mpp
        self.classes = tuple(classes) if classes is not None else None

    # -- names ---------------------------------------------------------------------------
    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        self.check_classes(class_map)
        names = class_map.names
        rgb = tuple(f"crop:{n}:{c}" for n in names for c in "rgb")
        return rgb + tuple(f"valid:{n}" for n in names)

    def check_classes(self, class_map: ClassMap) -> None:
        """Refuse a class list other than the configured one, and unknown explicit crops."""
        require_class_list("crop", self.classes, class_map)
        unknown = sorted(set(self.crops) - set(class_map.names))
        if unknown:
            raise InputError(
                f"crop: explicit crops given for {unknown}, which are not classes of the sample "
                f"({list(class_map.names)})"
            )

    # -- sizes and selection ---------------------------------------------------------------
    def sizes(self, sample: TissueSample) -> np.ndarray:
        """Crop side d_i in pixels of this sample for every class (before fitting)."""
        k = len(sample.class_map)
        scale = self.reference_mpp / sample_mpp(sample, self.reference_mpp)
        if self.fixed_size is not None or self.alpha == 0:
            d_ref = np.full(k, float(self.fixed_size or self.d_base))
        else:
            d_ref = self.d_base * (1.0 + self.alpha * region_complexity(sample.mask, k))
        if self.fixed_size is None:
            d_ref = np.clip(d_ref, *self.d_range)
        cap = max(round(self.max_fraction * min(sample.size)), 1)
        return np.clip(np.rint(d_ref * scale), 1, cap).astype(int)

    def select(
        self, sample: TissueSample, seed: int | None = None, only: list[int] | None = None
    ) -> dict[int, CropChoice | None]:
        """The crop of each class present in the mask (None: its region holds no square);
        ``only``: of these class indices only (each the same crop as without it)."""
        cm = sample.class_map
        self.check_classes(cm)
        cm.check_mask(sample.mask, f"mask of sample {sample.meta.get('slide_id', '')}".strip())
        base = self.seed if seed is None else seed
        if not (isinstance(base, int | np.integer) and base >= 0):
            raise InputError(f"crop: seed={seed!r} must be an integer >= 0")
        mpp = sample_mpp(sample, self.reference_mpp)
        scale = self.reference_mpp / mpp
        if only is None:
            integrals = dict(enumerate(class_integrals(sample.mask, len(cm))))
        else:  # one table per class asked for (K tables cost K x H x W at K = 100)
            integrals = {k: class_integrals(np.where(sample.mask == k, 0, 1), 1)[0] for k in only}
        sides = self.sizes(sample)
        floor = max(round(self.min_size * scale), 1)
        choices: dict[int, CropChoice | None] = {}
        for k in (k for k, table in integrals.items() if table[-1, -1] > 0):
            rng = np.random.default_rng([int(base), int(k)])
            choices[int(k)] = self._select_class(
                sample, int(k), integrals[k], int(sides[k]), floor, mpp, rng
            )
        return choices

    def _select_class(
        self,
        sample: TissueSample,
        k: int,
        integral: np.ndarray,
        side: int,
        floor: int,
        mpp: float,
        rng: np.random.Generator,
    ) -> CropChoice | None:
        name = sample.class_map.names[k]
        shrink = self.on_small == "shrink"
        floor = min(floor, side)
        if self.placement == "outside" and name not in self.crops:
            if name not in self.bank.classes:
                return CropChoice.empty("no crop of this class in the bank")
            items = self.bank.crops(name)
            i, why = draw_outside(items, sample.meta, sample.size, rng)
            if i is None:
                return CropChoice.empty(str(why))
            extra = {"bank_index": i, **({"other_source": why} if why else {})}
            external = (
                np.asarray(items[i].image),
                {"source": "bank", **items[i].provenance, **extra},
            )
        else:
            external = self._external_crop(sample, name, rng)
        if external is None:  # cut from the sample's own image
            sq = choose_square(integral, side, floor, self.min_inside, shrink, rng)
            if sq is None:
                return None
            y, x, d = sq
            prov = {
                "source": "sample", "slide_id": str(sample.meta.get("slide_id", "")),
                "x": x, "y": y, "size": d,
            }  # fmt: skip
            pixels = sample.image[y : y + d, x : x + d]
            if self.placement == "elsewhere":
                y, x = choose_elsewhere(integral, d, self.min_inside, (y, x), rng)
        else:
            crop, prov = external
            src_mpp = prov.get("mpp") or (self.crops_mpp if prov["source"] == "explicit" else None)
            if src_mpp:  # bring the crop to the sample's magnification
                crop = resize_square(crop, max(round(crop.shape[0] * float(src_mpp) / mpp), 1))
            sq = choose_square(
                integral, min(side, crop.shape[0]), floor, self.min_inside, shrink, rng
            )
            if sq is None:
                return None
            y, x, d = sq
            pixels = center_square(crop, d)
        prov.update(placed_x=x, placed_y=y, placed_size=int(pixels.shape[0]))
        return CropChoice(np.ascontiguousarray(pixels), y, x, prov)

    def _external_crop(
        self, sample: TissueSample, name: str, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, Any]] | None:
        """An explicit or bank crop for ``name``; None when the sample's image is used."""
        if name in self.crops:
            return self.crops[name], {
                "source": "explicit",
                "slide_id": "",
                "size": len(self.crops[name]),
            }
        if sample.image is not None:
            return None
        if self.bank is None:
            raise MissingCropError(
                f"crop: sample {sample.meta.get('slide_id', '')!r} is a layout without an image and "
                f"class {name!r} has no crop: pass bank= (a CropBank or its path) or crops="
                "{class: image} to generate from layouts",
                name,
            )
        items = self.bank.crops(name)
        i = int(rng.integers(len(items)))  # as CropBank.draw: the same draws as before
        return np.asarray(items[i].image), {
            "source": "bank",
            **items[i].provenance,
            "bank_index": i,
        }

    # -- build -----------------------------------------------------------------------------
    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        """The crop channels (4K x H x W float32) and, in ``meta[CROP_PROVENANCE]``, where each
        class's crop came from (see :func:`crop_provenance`)."""
        channels = self.channels(sample.class_map)
        choices = self.select(sample, seed)
        k = len(sample.class_map)
        h, w = sample.size
        spatial = np.zeros((4 * k, h, w), np.float32)
        placed = {i: c for i, c in choices.items() if c is not None and c.placed}
        for i, c in placed.items():  # touch only the crop windows: the rest stays 0
            rows, cols = slice(c.y, c.y + c.image.shape[0]), slice(c.x, c.x + c.image.shape[1])
            rgb = spatial[3 * i : 3 * i + 3, rows, cols]
            np.multiply(c.image.transpose(2, 0, 1), 2.0 / 255.0, out=rgb, casting="unsafe")
            rgb -= 1.0
            spatial[3 * k + i, rows, cols] = 1.0
        return Condition(
            spatial=torch.from_numpy(spatial),
            channels=channels,
            meta={CROP_PROVENANCE: crop_provenance(sample.class_map, choices)},
        )

    def __repr__(self) -> str:
        size = f"fixed_size={self.fixed_size}" if self.fixed_size else f"d_base={self.d_base:g}"
        return f"CropBuilder({size}, placement={self.placement!r})"


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("crop", CropBuilder)
