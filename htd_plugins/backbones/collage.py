"""``collage``: a training-free reference arm. Each class region of the layout is filled with
its crop's texture (mirror-tiled from a seeded offset, seams between classes feathered); no
model at all.

It is what a copy-paste augmentation gives a segmentation network (cf. Ghiasi et al. 2021,
"Simple Copy-Paste"): real pixels, the layout's classes where the mask says, but no tissue
structure across the region. A diffusion arm that does not beat it on layout adherence and on
DeepLabv3+ (real + synthetic) adds nothing a user needs (issue "Synthetic tissue good enough
to train on", item 3). It reads the conditions of ``semantic_map + crop``: the map channels
``map:<class>`` and each class's crop (``crop:<class>:{r,g,b}`` where ``valid:<class>`` is 1).
A class of the layout with no crop is filled with the mean colour of the layout's crops (the
experiment's placement table counts such classes per arm).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core import Backbone, ClassMap, Condition, ConditionBuilder, TissueSample, hookimpl
from htd_core.errors import InputError
from htd_core.generation import GenerationOptions
from htd_core.options import check_number

CONFIG = "htd_config.json"


class CollageBackbone(Backbone):
    """Fill each class region with its crop's texture (see the module docstring).

    Args:
        blend: standard deviation in px of the Gaussian that feathers class boundaries (0:
            hard edges at the mask's boundary).

    Raises:
        InputError: ``blend`` negative.
    """

    name = "collage"

    def __init__(self, blend: float = 1.5) -> None:
        self.blend = float(check_number(blend, "collage blend", 0.0))
        self.options = {"blend": self.blend}
        self.class_map: ClassMap | None = None
        self.mpp: float | None = None

    def fit(
        self, samples: Iterable[TissueSample], builder: ConditionBuilder, **options: Any
    ) -> dict[str, Any]:
        """Nothing is learnt: records the training samples' class map and mpp, checks that
        ``builder`` gives a semantic map and crops, and saves to ``output_dir/model`` when
        given. Training options (steps, batch size...) do not apply and are listed as unused.

        Raises:
            InputError: no samples, or a builder without ``map:`` and ``crop:`` channels.
        """
        start = time.perf_counter()
        samples = list(samples)
        if not samples:
            raise InputError("collage: no training samples (it needs their class map)")
        self.class_map = samples[0].class_map
        channels = set(builder.channels(self.class_map))
        for kind in ("map", "crop"):
            if not any(c.startswith(f"{kind}:") for c in channels):
                raise InputError(
                    f"collage needs the condition builders semantic_map + crop; this builder "
                    f"gives no {kind}: channels"
                )
        mpps = [float(s.meta["mpp"]) for s in samples if s.meta.get("mpp") not in (None, "")]
        self.mpp = float(np.median(mpps)) if mpps else None
        unused = sorted(k for k in options if k != "output_dir")
        summary: dict[str, Any] = {"steps": 0, "backbone": self.name, "unused_options": unused}
        if options.get("output_dir"):
            summary["model_dir"] = str(Path(options["output_dir"]) / "model")
            self.save(summary["model_dir"])
        summary["seconds"] = round(time.perf_counter() - start, 3)
        return summary

    def generate(self, conditions: Sequence[Condition], options: GenerationOptions) -> np.ndarray:
        """uint8 N x H x W x 3; image ``i`` depends on ``options.seed + i`` (its tiling
        offsets and flips) and its condition only. Sampler settings do not apply."""
        out = [self._one(c, options.seed + i) for i, c in enumerate(conditions)]
        if not out:
            return np.zeros((0, 0, 0, 3), np.uint8)
        return np.stack(out)

    def _one(self, condition: Condition, seed: int) -> np.ndarray:
        if condition.spatial is None:
            raise InputError("collage: a condition without a semantic map and crops")
        spatial = condition.spatial.detach().float().cpu().numpy()
        index = {name: i for i, name in enumerate(condition.channels)}
        classes = [n.split(":", 1)[1] for n in condition.channels if n.startswith("map:")]
        if not classes:
            raise InputError("collage: the condition has no map: channels (semantic_map)")
        rng = np.random.default_rng(seed)
        h, w = spatial.shape[1:]
        crops = {c: _crop(spatial, index, c) for c in classes}
        present = [v for v in crops.values() if v is not None]
        fallback = np.mean([v.reshape(-1, 3).mean(0) for v in present], 0) if present else None
        weights = np.stack([spatial[index[f"map:{c}"]] for c in classes])
        if self.blend > 0:
            from scipy.ndimage import gaussian_filter

            weights = np.stack([gaussian_filter(m, self.blend, mode="nearest") for m in weights])
        total = weights.sum(0, keepdims=True)
        weights = np.where(total > 1e-6, weights / np.maximum(total, 1e-6), 1.0 / len(classes))
        image = np.zeros((h, w, 3), np.float32)
        for k, c in enumerate(classes):
            if crops[c] is not None:
                texture = _tile(crops[c], h, w, rng)
            else:
                base = fallback if fallback is not None else np.zeros(3, np.float32)
                texture = np.broadcast_to(base, (h, w, 3))
            image += weights[k][..., None] * texture
        return np.clip(np.round((image + 1) * 127.5), 0, 255).astype(np.uint8)

    def save(self, path: str | Path) -> None:
        """``htd_config.json`` (backbone name, options, class map, mpp): there are no weights."""
        from htd_core.io import atomic_write_folder

        def write(tmp: Path) -> None:
            (tmp / CONFIG).write_text(json.dumps({
                "backbone": self.name, "options": self.options, "mpp": self.mpp,
                "class_map": self.class_map.to_dict() if self.class_map else None,
            }, indent=1))  # fmt: skip

        atomic_write_folder(path, write, kind="model", legacy=(CONFIG,))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> CollageBackbone:
        """Read a folder written by :meth:`save` (``device`` does not apply).

        Raises:
            InputError: not a collage model folder.
        """
        file = Path(path) / CONFIG
        config = json.loads(file.read_text()) if file.is_file() else {}
        if config.get("backbone") != cls.name:
            raise InputError(
                f"{path} is not a collage model folder ({CONFIG} naming backbone 'collage')"
            )
        backbone = cls(**config.get("options", {}))
        backbone.mpp = config.get("mpp")
        if config.get("class_map"):
            backbone.class_map = ClassMap.from_dict(config["class_map"])
        return backbone


def _crop(spatial: np.ndarray, index: dict[str, int], name: str) -> np.ndarray | None:
    """The crop of class ``name``: float h x w x 3 in [-1, 1] (the bounding box of its valid
    pixels), or None when the condition holds none."""
    keys = [f"crop:{name}:{c}" for c in "rgb"]
    valid_key = f"valid:{name}"
    if any(k not in index for k in keys) or valid_key not in index:
        return None
    valid = spatial[index[valid_key]] > 0.5
    if not valid.any():
        return None
    ys, xs = np.nonzero(valid)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return np.stack([spatial[index[k]][box] for k in keys], -1).astype(np.float32)


def _tile(crop: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """``crop`` mirror-tiled (seamless: each copy is the reflection of its neighbour) over
    h x w from a random offset, after a random flip / 90-degree rotation."""
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    ch, cw = crop.shape[:2]
    oy, ox = int(rng.integers(ch)), int(rng.integers(cw))
    reps = (-(-(h + oy) // ch) + 1, -(-(w + ox) // cw) + 1)
    row = np.concatenate([crop if j % 2 == 0 else crop[:, ::-1] for j in range(reps[1])], 1)
    grid = np.concatenate([row if i % 2 == 0 else row[::-1] for i in range(reps[0])], 0)
    return grid[oy : oy + h, ox : ox + w]


@hookimpl
def htd_register_backbones(registry) -> None:
    registry.register("collage", CollageBackbone)
