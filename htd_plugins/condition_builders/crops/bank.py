"""CropBank: real tissue crops per class, with provenance, for generation from layouts.

At generation time a user gives only a semantic map; the ``crop`` builder then draws one
real crop per class from a bank built from real samples. A bank is one ``.safetensors`` file
(uint8 crops; provenance and options as JSON in its header, no pickle) plus a readable
``.json`` sidecar with the same provenance. Both are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_core.io import atomic_write_bytes, atomic_write_json
from htd_core.types import TissueSample
from htd_plugins.condition_builders.crops.explicit import MissingCropError
from htd_plugins.condition_builders.crops.regions import choose_square, class_integrals

FORMAT = "htd-crop-bank"
VERSION = "1"


@dataclass(frozen=True)
class BankCrop:
    """One real crop: uint8 S x S x 3 pixels and where it came from.

    ``provenance`` holds ``slide_id`` (opaque, never a patient identifier), ``x``, ``y``
    (top-left inside the source patch), ``size`` (side in pixels), ``mpp`` (None when the
    source did not say) and, when the sample's meta had them, ``patch_x`` / ``patch_y``.
    """

    image: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)


class CropBank:
    """Crops per class name, drawn with a seed.

    Args:
        crops: class name -> crops of that class.
        options: how the bank was built (recorded in the saved file).
    """

    def __init__(
        self, crops: Mapping[str, Sequence[BankCrop]], options: Mapping[str, Any] | None = None
    ) -> None:
        self._crops = {str(k): list(v) for k, v in crops.items() if len(v) > 0}
        self.options = dict(options or {})
        self.path: Path | None = None
        for name, items in self._crops.items():
            for c in items:
                img = np.asarray(c.image)
                if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                    raise InputError(
                        f"crop bank: crops of class {name!r} must be uint8 S x S x 3, got "
                        f"{img.dtype} {img.shape}"
                    )

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names with at least one crop (sorted)."""
        return tuple(sorted(self._crops))

    def counts(self) -> dict[str, int]:
        """Number of crops per class name."""
        return {n: len(self._crops[n]) for n in self.classes}

    def __len__(self) -> int:
        return sum(len(v) for v in self._crops.values())

    def crops(self, class_name: str) -> list[BankCrop]:
        """All crops of ``class_name`` (error listing what the bank has when absent)."""
        if class_name not in self._crops:
            where = f" ({self.path})" if self.path else ""
            have = ", ".join(f"{n} ({c})" for n, c in self.counts().items()) or "nothing"
            raise MissingCropError(
                f"crop bank{where} has no crops of class {class_name!r}; it has: {have}. "
                "Rebuild the bank from samples that contain this class, or pass crops= "
                "explicitly for it",
                class_name,
                have,
            )
        return self._crops[class_name]

    def draw(self, class_name: str, seed: int | np.random.Generator = 0) -> BankCrop:
        """One crop of ``class_name``, chosen uniformly with ``seed`` (deterministic)."""
        items = self.crops(class_name)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return items[int(rng.integers(len(items)))]

    # -- building ------------------------------------------------------------------------
    @classmethod
    def from_samples(
        cls,
        samples: Iterable[TissueSample],
        *,
        size: int = 200,
        min_size: int = 32,
        min_inside: float = 0.9,
        per_sample: int = 1,
        max_per_class: int | None = 64,
        reference_mpp: float = 0.5,
        max_fraction: float = 1.0,
        seed: int = 0,
    ) -> CropBank:
        """Cut crops from real samples: per class present, ``per_sample`` squares that are at
        least ``min_inside`` that class.

        Args:
            size: crop side in pixels at ``reference_mpp`` (scaled by each sample's ``mpp``);
                shrinks to the largest fitting square down to ``min_size`` where needed.
            max_per_class: bank capacity per class; when more candidates come, a seeded
                reservoir keeps a uniform sample of all of them (None: keep every crop, as a
                bank of references for ``placement="outside"`` does).
            max_fraction: at most this fraction of the sample's side (a crop larger than half
                a patch cannot sit in a class region that covers 20-80 % of it).

        Each crop records where it was cut (``x``, ``y``, ``size`` in the sample) and, when the
        sample's meta says where the sample lies in its source image (``tile_id``, ``x``,
        ``y``, ``patch_size``), its ``box`` there, so :mod:`.references` can tell whether it
        overlaps another sample's window.
        """
        _check_positive(size=size, min_size=min_size, per_sample=per_sample)
        _check_positive(reference_mpp=reference_mpp, max_fraction=max_fraction)
        if max_per_class is not None:
            _check_positive(max_per_class=max_per_class)
        if not 0 < min_inside <= 1:
            raise InputError(f"crop bank: min_inside={min_inside} must be in (0, 1]")
        rng = np.random.default_rng(seed)
        kept: dict[str, list[BankCrop]] = {}
        seen: dict[str, int] = {}
        for n, sample in enumerate(samples):
            if sample.image is None:
                raise InputError(
                    f"crop bank: sample {n} ({sample.meta.get('slide_id', '?')}) is a layout "
                    "without an image; build banks from real image+mask samples"
                )
            cm = sample.class_map
            cm.check_mask(sample.mask, f"mask of sample {n}")
            mpp = sample_mpp(sample, reference_mpp)
            scale = reference_mpp / mpp
            limit = max(min(round(max_fraction * min(sample.size)), min(sample.size)), 1)
            side = min(max(round(size * scale), 1), limit)
            floor = min(max(round(min_size * scale), 1), side)
            integrals = class_integrals(sample.mask, len(cm))
            for k in np.flatnonzero(integrals[:, -1, -1] > 0):
                name = cm.names[k]
                taken: set[tuple[int, int, int]] = set()
                for _ in range(per_sample):
                    sq = choose_square(integrals[k], side, floor, min_inside, True, rng)
                    if sq is None or sq in taken:
                        continue
                    taken.add(sq)
                    known = sample.meta.get("mpp") not in (None, "")
                    crop = _cut(sample, sq, mpp if known else None)
                    _reservoir(kept.setdefault(name, []), crop, seen, name, max_per_class, rng)
        options = {
            "size": size, "min_size": min_size, "min_inside": min_inside,
            "per_sample": per_sample, "max_per_class": max_per_class,
            "reference_mpp": reference_mpp, "max_fraction": max_fraction, "seed": seed,
        }  # fmt: skip
        return cls(kept, options)

    # -- files ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.safetensors`` appended if missing) and a ``.json`` sidecar."""
        from safetensors.numpy import save

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        classes = self.classes
        tensors = {
            f"{ci}_{j}": np.ascontiguousarray(c.image)
            for ci, name in enumerate(classes)
            for j, c in enumerate(self._crops[name])
        }
        header = self._header()
        atomic_write_bytes(
            path, save(tensors, metadata={"format": FORMAT, "bank": json.dumps(header)})
        )
        atomic_write_json(path.with_suffix(".json"), header)
        self.path = path
        return path

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "classes": list(self.classes),
            "counts": self.counts(),
            "options": self.options,
            "provenance": {n: [c.provenance for c in self._crops[n]] for n in self.classes},
        }

    @classmethod
    def load(cls, path: str | Path) -> CropBank:
        """Read a bank written by :meth:`save`."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file() and path.with_name(path.name + ".safetensors").is_file():
            path = path.with_name(path.name + ".safetensors")
        if not path.is_file():
            raise InputError(
                f"crop bank file {path} does not exist; build one from real data with "
                f"`htd crop-bank DATA --out {path}` (Python: CropBank.from_samples(samples).save(path))"
            )
        try:
            with safe_open(str(path), framework="np") as fh:
                meta = fh.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise InputError(
                        f"{path} is a safetensors file but not an htd crop bank (no "
                        f"'format: {FORMAT}' in its header)"
                    )
                header = json.loads(meta["bank"])
                arrays = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"cannot read crop bank {path}: {exc}") from exc
        crops = {
            name: [
                BankCrop(arrays[f"{ci}_{j}"], prov)
                for j, prov in enumerate(header["provenance"][name])
            ]
            for ci, name in enumerate(header["classes"])
        }
        bank = cls(crops, header.get("options"))
        bank.path = path
        return bank

    def __repr__(self) -> str:
        return f"CropBank({self.counts()})"


def sample_mpp(sample: TissueSample, default: float) -> float:
    """The sample's microns per pixel from ``meta['mpp']`` (``default`` when absent/empty)."""
    value = sample.meta.get("mpp")
    if value in (None, ""):
        return default
    try:
        mpp = float(value)
    except (TypeError, ValueError):
        raise InputError(f"sample meta mpp={value!r} is not a number") from None
    if not mpp > 0:
        raise InputError(f"sample meta mpp={value!r} must be > 0")
    return mpp


def _cut(sample: TissueSample, square: tuple[int, int, int], mpp: float | None) -> BankCrop:
    from htd_plugins.condition_builders.crops.references import source_box

    y, x, side = square
    prov: dict[str, Any] = {
        "slide_id": str(sample.meta.get("slide_id", "")), "x": x, "y": y, "size": side,
        "mpp": mpp,
    }  # fmt: skip
    for key in ("x", "y"):
        if key in sample.meta and sample.meta[key] not in ("", None):
            prov[f"patch_{key}"] = sample.meta[key]
    box = source_box(sample.meta, sample.size, (y, x, side))
    if box is not None:
        prov["tile_id"], prov["box"] = box
    return BankCrop(np.ascontiguousarray(sample.image[y : y + side, x : x + side]), prov)


def _reservoir(
    kept: list[BankCrop],
    crop: BankCrop,
    seen: dict[str, int],
    name: str,
    capacity: int | None,
    rng: np.random.Generator,
) -> None:
    """Algorithm R: after n offers, each offered crop is kept with probability capacity/n."""
    seen[name] = seen.get(name, 0) + 1
    if capacity is None or len(kept) < capacity:
        kept.append(crop)
        return
    j = int(rng.integers(seen[name]))
    if j < capacity:
        kept[j] = crop


def _check_positive(**values: float) -> None:
    for key, value in values.items():
        if not (isinstance(value, int | float) and value > 0):
            raise InputError(f"crop bank: {key}={value!r} must be a positive number")
