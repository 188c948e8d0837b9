"""Generation settings: call arguments, decided in one place, recorded as used.

diffusers keeps guidance, scheduler and steps as arguments of a pipeline's ``__call__``, never
as saved model state; htd does the same. :class:`GenerationOptions` holds them;
:meth:`htd_core.Pipeline.generation_options` resolves them once (the caller's arguments over
the pipeline's ``generate:`` defaults over the defaults below, then the backbone's check) and
passes the result whole to :meth:`htd_core.Backbone.generate`; the dataset manifest records
what was used. A saved pipeline folder may store *defaults* (``pipeline.yaml``'s ``generate:``
section), which the resolution shows in what it returns; a backbone never reads its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from htd_core.options import check_int, check_number, field_names, make_options
from htd_core.splits import CROP_SOURCES, LAYOUT_SOURCE, crop_sources, layout_source
from htd_core.types import CROP_PROVENANCE, Condition, TissueSample

#: ``Condition.meta`` key of a null condition's (H, W) in pixels: the size of the layout it
#: stands for (a backbone generates at that size instead of its default).
NULL_SIZE = "size"
#: What every generated sample's meta records (and a dataset manifest in its columns): how it
#: was made, and the opaque sources of its layout and crops.
GENERATION_COLUMNS = ("seed", "guidance_scale", "scheduler", "num_inference_steps",
                      CROP_PROVENANCE, LAYOUT_SOURCE, CROP_SOURCES)  # fmt: skip


@dataclass(frozen=True)
class GenerationOptions:
    """How one generation call samples.

    Attributes:
        guidance_scale: classifier-free guidance g >= 1 (Ho & Salimans 2022): the model output
            is ``null + g * (cond - null)``; 1 runs the conditional branch only (no guidance).
            A null condition is never guided (what a manifest records for it is 1).
        scheduler: the sampler's registered name in the backbone (``ddim``, ``dpmsolver++``
            for the latent diffusion backbones).
        num_inference_steps: sampler steps.
        batch_size: conditions per model call.
        seed: image ``i`` of a call (``i`` counted from the call's first condition) starts from
            the noise of ``torch.Generator().manual_seed(seed + i)``.

    Raises:
        InputError: a value of the wrong type or out of range (names the field).
    """

    guidance_scale: float = 2.0
    scheduler: str = "ddim"
    num_inference_steps: int = 25
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "guidance_scale", check_number(self.guidance_scale, "guidance_scale", 1.0)
        )
        check_int(self.num_inference_steps, "num_inference_steps", 1)
        check_int(self.batch_size, "batch_size", 1)
        check_int(self.seed, "seed", 0)
        if not isinstance(self.scheduler, str) or not self.scheduler:
            from htd_core.errors import InputError

            raise InputError(f"scheduler={self.scheduler!r} must be a sampler name, e.g. ddim")

    @classmethod
    def fields(cls) -> list[str]:
        """The option names (``guidance_scale``, ``scheduler``, ...)."""
        return field_names(cls)

    @classmethod
    def layered(
        cls,
        *layers: Mapping[str, Any] | None,
        what: str = "generation option",
        unconditional: bool = False,
    ) -> GenerationOptions:
        """The defaults overridden by each layer in turn (later layers win; ``None`` values
        and ``None`` layers are skipped). ``unconditional`` (null conditions, which are never
        guided): guidance resolves to 1, and guidance > 1 in the last layer (the caller's) is
        refused.

        Raises:
            InputError: a key that is not a generation option (closest name and the list), a
                bad value, or guidance asked for with ``unconditional``.
        """
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update({k: v for k, v in (layer or {}).items() if v is not None})
        if unconditional:
            asked = (layers[-1] or {}).get("guidance_scale") if layers else None
            if asked is not None and asked > 1:
                from htd_core.errors import InputError

                raise InputError(
                    f"guidance_scale={asked} with unconditional generation: a null condition "
                    "has nothing to guide by; drop the guidance (or give 1)"
                )
            merged["guidance_scale"] = 1.0
        return make_options(cls, merged, what)

    def replace(self, **changes: Any) -> GenerationOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


def check_layouts(
    backbone: Any,
    layouts: Sequence[TissueSample],
    batch_size: int,
    names: Sequence[str] | None = None,
) -> None:
    """Every layout at a size ``backbone`` generates at, and one size per batch (batches
    count from layout 0, as :func:`generate_samples` makes them), before the first image: a
    refusal part-way would leave a half-written output.

    Args:
        names: how errors name layout ``i`` (its file); default its ``meta["layout"]``.

    Raises:
        InputError: naming the layout (and, for a batch of mixed sizes, two of its layouts
            and their sizes), what is wrong and a valid value.
    """
    from htd_core.errors import InputError

    def name(i: int) -> str:
        return str(names[i]) if names is not None else str(layouts[i].meta.get("layout", i))

    sizes = [tuple(layout.mask.shape[:2]) for layout in layouts]
    for i, (h, w) in enumerate(sizes):
        backbone.check_layout_size(h, w, f"layout {name(i)}")
    for begin in range(0, len(sizes), batch_size):
        batch = sizes[begin : begin + batch_size]
        other = next((begin + k for k, size in enumerate(batch) if size != batch[0]), None)
        if other is not None:
            (h0, w0), (h1, w1) = sizes[begin], sizes[other]
            raise InputError(
                f"layouts {name(begin)} ({w0}x{h0} px) and {name(other)} ({w1}x{h1} px) fall "
                f"in one batch of {batch_size}, which shares one size: give layouts of one "
                "size, or batch size 1 (--batch-size 1)"
            )


def generate_samples(
    backbone: Any,
    builder: Any,
    layouts: Sequence[TissueSample],
    options: GenerationOptions,
    start: int = 0,
) -> Iterator[TissueSample]:
    """The generation loop behind :meth:`htd_core.Pipeline.iter_generate` (which resolves
    ``options``). ``builder`` None: null conditions.

    Each sample's meta is its layout's plus :data:`GENERATION_COLUMNS`: ``seed`` (``seed +
    i``), ``guidance_scale`` as applied (1 for a null condition, which is never guided),
    ``scheduler``, ``num_inference_steps``, ``crop_provenance`` (the crops' sources, sizes and
    positions; None when no crop was used), and the opaque source ids of the layout
    (``layout_source_id``) and of its crops (``crop_source_ids``), which ``htd evaluate``
    checks against held-out images.

    Raises:
        InputError: ``start`` < 0.
    """
    from htd_core.errors import InputError

    if start < 0:
        raise InputError(f"start={start} must be >= 0")
    size, seed = options.batch_size, options.seed
    for begin in range(start - start % size, len(layouts), size):
        chunk = list(range(max(begin, start), min(begin + size, len(layouts))))
        if not chunk:  # a finished generation resumed at its end
            break
        conditions = [
            # a null condition keeps the layout's size, so the image matches its mask
            Condition(meta={NULL_SIZE: tuple(layouts[i].mask.shape[:2])})
            if builder is None
            else builder.build(layouts[i], seed=seed + i)
            for i in chunk
        ]
        images = backbone.generate(conditions, options.replace(seed=seed + chunk[0]))
        for i, image, cond in zip(chunk, images, conditions, strict=True):
            layout, prov = layouts[i], cond.meta.get(CROP_PROVENANCE)
            used = {"seed": seed + i, "guidance_scale": 1.0 if cond.is_null else options.guidance_scale,
                    "scheduler": options.scheduler, "num_inference_steps": options.num_inference_steps}  # fmt: skip
            meta = {**layout.meta, **used, CROP_PROVENANCE: prov,
                    LAYOUT_SOURCE: layout_source(layout.meta), CROP_SOURCES: crop_sources(prov)}  # fmt: skip
            yield TissueSample(image, layout.mask, layout.class_map, meta)
