"""``crop_slots``: the dual condition (semantic map + one real crop per class) in a size that
does not grow with the number of classes K.

``semantic_map + crop`` gives 5K channels (K one-hot, 3K crop, K validity): about 500 at the
K = 100 phenotypes of discovery, nearly all of them empty in any one patch, which holds a few
phenotypes. ``crop_slots`` writes instead

- ``class_index:<K>``: per pixel the class index + 1 (0: ignored), which the backbone turns
  into a learned class embedding (:data:`htd_core.types.CLASS_INDEX`): the semantic map, every
  class of the patch with its identity;
- S slots, one per class the patch holds, largest region first (ties: lower class index), each
  ``slot<s>:mask`` (the class's region), ``slot<s>:crop:{r,g,b}`` and ``slot<s>:valid`` (its
  crop, chosen and placed exactly as the ``crop`` builder does: bank, explicit crops,
  placement, sizes).

1 + 5S channels for any K. A slot of no class (the patch holds fewer than S) is all zero, and
``meta["slots"]`` names each slot's class (None: empty); classes beyond the S largest keep
their identity in the class-index channel but get no crop.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from htd_core import ClassMap, Condition, ConditionBuilder, TissueSample, hookimpl
from htd_core.options import check_int
from htd_core.types import CLASS_INDEX, CROP_PROVENANCE
from htd_plugins.condition_builders.crops.bank import CropBank
from htd_plugins.condition_builders.crops.inner import inner_cropper
from htd_plugins.condition_builders.crops.provenance import crop_provenance

#: Key of the slots' classes in ``Condition.meta``: one class name (or None) per slot.
SLOTS = "slots"
#: Channels of one slot, after its ``slot<s>:`` prefix.
SLOT_CHANNELS = ("mask", "crop:r", "crop:g", "crop:b", "valid")


class CropSlotsBuilder(ConditionBuilder):
    """Class-index map + S slots of (region mask, crop, validity): 1 + 5S channels for any K.

    Args:
        slots: S, the classes per patch that get a slot (default 4; the patches of the
            heterogeneous samplers hold 2-5 classes).
        crop_options: options of the :class:`~.crop.CropBuilder` that picks and places the
            crops (``placement``, ``d_base``, ``max_fraction``, ``crops``, ...).
        bank: a :class:`CropBank` or the path of a saved one (crops for layouts, and for
            ``placement="outside"``); given to the cropper over any ``crop_options["bank"]``.
        classes: expected class names; a sample with another class list is refused.
        seed: used when ``build`` gets ``seed=None``.

    Raises:
        InputError: ``slots`` not an integer >= 1, ``classes`` or ``seed`` inside
            ``crop_options``, or an invalid crop option (named by the crop builder).
    """

    def __init__(
        self,
        slots: int = 4,
        crop_options: Mapping[str, Any] | None = None,
        bank: CropBank | str | Path | None = None,
        classes: list[str] | tuple[str, ...] | None = None,
        seed: int = 0,
    ) -> None:
        self.slots = check_int(slots, "crop_slots: slots", 1)
        self.cropper = inner_cropper("crop_slots", crop_options, bank, classes, seed)

    def channels(self, class_map: ClassMap) -> tuple[str, ...]:
        self.cropper.check_classes(class_map)
        slots = (f"slot{s}:{c}" for s in range(self.slots) for c in SLOT_CHANNELS)
        return (f"{CLASS_INDEX}:{len(class_map)}", *slots)

    def slot_classes(self, mask: np.ndarray, num_classes: int) -> list[int]:
        """Indices of the classes in ``mask`` (H x W ints, >= K ignored) that get a slot:
        at most S, largest region first, ties by lower index."""
        counts = np.bincount(mask.ravel().astype(np.int64), minlength=num_classes + 1)
        present = np.flatnonzero(counts[:num_classes])
        order = sorted(present, key=lambda k: (-counts[k], k))
        return [int(k) for k in order[: self.slots]]

    def build(self, sample: TissueSample, *, seed: int | None = None) -> Condition:
        """``1 + 5S`` x H x W float32: the class-index channel, then per slot its mask, crop
        (pixels in [-1, 1]) and validity; ``meta`` holds :data:`SLOTS` and, under
        :data:`~htd_core.types.CROP_PROVENANCE`, the slotted classes' crops (other classes:
        None)."""
        cm = sample.class_map
        channels = self.channels(cm)
        k = len(cm)
        cm.check_mask(sample.mask, f"mask of sample {sample.meta.get('slide_id', '')}".strip())
        mask = np.asarray(sample.mask)
        h, w = mask.shape
        spatial = np.zeros((len(channels), h, w), np.float32)
        spatial[0] = np.where(mask < k, mask.astype(np.float32) + 1.0, 0.0)
        chosen = self.slot_classes(mask, k)
        choices = self.cropper.select(sample, seed, only=chosen)
        for s, i in enumerate(chosen):
            at = 1 + len(SLOT_CHANNELS) * s
            spatial[at] = mask == i
            c = choices.get(i)
            if c is None or not c.placed:
                continue
            rows, cols = slice(c.y, c.y + c.image.shape[0]), slice(c.x, c.x + c.image.shape[1])
            rgb = spatial[at + 1 : at + 4, rows, cols]
            np.multiply(c.image.transpose(2, 0, 1), 2.0 / 255.0, out=rgb, casting="unsafe")
            rgb -= 1.0
            spatial[at + 4, rows, cols] = 1.0
        names = [cm.names[i] for i in chosen] + [None] * (self.slots - len(chosen))
        return Condition(
            spatial=torch.from_numpy(spatial),
            channels=channels,
            meta={SLOTS: names, CROP_PROVENANCE: crop_provenance(cm, choices)},
        )

    def __repr__(self) -> str:
        return f"CropSlotsBuilder(slots={self.slots}, cropper={self.cropper!r})"


@hookimpl
def htd_register_condition_builders(registry) -> None:
    registry.register("crop_slots", CropSlotsBuilder)
