"""``generate_slide``: a layout in, a synthetic pyramidal slide (and its annotations) out."""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError
from htd_plugins.slide_synthesis.layout import SlideLayout

#: A layout mpp within this relative distance of the model's is used as it is.
MPP_TOLERANCE = 0.25
SUFFIXES = (".tif", ".tiff")


def output_paths(out: str | Path) -> dict[str, Path]:
    """Every file ``generate_slide`` writes for slide ``out``, and its checkpoint folder."""
    out = Path(out)
    stem = out.parent / out.stem
    return {
        "slide": out,
        "label_mask": Path(f"{stem}.labels.tif"),
        "label_names": Path(f"{stem}.labels.json"),
        "geojson": Path(f"{stem}.geojson"),
        "manifest": Path(f"{stem}.manifest.json"),
        "preview": Path(f"{stem}.preview.png"),
        "checkpoint": Path(f"{stem}.htd-partial"),
    }


def check_output(out: str | Path) -> dict[str, Path]:
    """Refuse an output path before any work: a folder (or, for a folder to create, its
    nearest existing parent) that is a file or is not writable, another suffix than .tif/.tiff, or files that exist (htd never replaces a file;
    sidecars of an interrupted run of this slide are replaced only while its checkpoint
    folder exists), or a slide another live process is writing (its lock).

    Raises:
        InputError: one line naming the path and the fix.
    """
    from htd_core.locks import beside, check_free
    from htd_core.outputs import writable

    paths = output_paths(out)
    slide = paths["slide"]
    if slide.suffix.lower() not in SUFFIXES:
        raise InputError(f"output {slide}: a slide is written as .tif (or .tiff); rename it")
    folder = slide.parent
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder {folder} is a file: choose another --out")
    if not folder.exists():  # created by generate_slide: its nearest existing parent must allow it
        folder = next(p for p in slide.absolute().parents if p.exists())
    if not folder.is_dir() or not writable(folder):
        raise InputError(f"output folder {folder} is not writable: choose another --out")
    if slide.exists():
        raise InputError(
            f"{slide} exists; htd does not replace it: remove it or choose another --out"
        )
    check_free(beside(slide), "--out", slide)  # another run writing this slide: named
    if not paths["checkpoint"].is_dir():
        taken = [p.name for k, p in paths.items() if k != "checkpoint" and p.exists()]
        if taken:
            raise InputError(
                f"{', '.join(taken)} already exist in {folder}; htd does not replace them: "
                "choose another --out or remove them"
            )
    return paths


def generate_slide(
    pipeline: Any,
    layout: SlideLayout,
    out: str | Path,
    *,
    seed: int = 0,
    overlap: float = 0.5,
    crops: str = "window",
    model_mpp: float | None = None,
    rescale: bool = False,
    guidance_scale: float | None = None,
    scheduler: str | None = None,
    num_inference_steps: int | None = None,
    batch_size: int | None = None,
    decode_tile: int | None = None,
    decode_overlap: float = 0.25,
    quality: int = 90,
    tile: int = 256,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Synthesise a slide for ``layout`` with a pipeline's builders and latent diffusion model.

    Args:
        pipeline: an ``htd_core.Pipeline`` (``Pipeline.from_pretrained(model, builder_options=
            {"bank": ...})``) with a latent diffusion backbone.
        layout: from :func:`read_layout`, in the model's classes.
        out: the slide's path (``.tif``); sidecars are written beside it (:func:`output_paths`).
        seed: canvas noise and crop choice; the same seed gives the same slide.
        overlap: fraction of a window shared with each neighbour (0: plain tiling, the
            seam-prone reference; default 0.5).
        crops: ``window`` (one crop per class per window) or ``region`` (one per connected
            region), see :mod:`conditions`.
        model_mpp: um/px of the model's training patches (default: what the model recorded).
        rescale: resample a layout whose mpp is more than 25 % from the model's to the model's
            mpp (the slide is then written at the model's mpp); otherwise such a layout is an
            error.
        guidance_scale, scheduler, num_inference_steps: generation options, as ``htd
            generate`` (None: the pipeline's ``generate:`` defaults, else
            :class:`htd_core.GenerationOptions`'; resolved by ``pipeline.generation_options``).
        batch_size: windows per model call (None: as the other generation options); the
            decoder takes a quarter as many tiles per call (a tile is four windows' area).
        decode_tile: autoencoder tile side in latent cells (default: two windows);
            ``decode_overlap``: its blended overlap (0: plain tiles).
        quality: JPEG quality of the slide's tiles (1-100).
        tile: TIFF tile side in px (a multiple of 16).
        callback: ``callback(step, total)`` after each denoising step.

    Returns:
        A summary: paths, size, mpp, windows, levels (also in the manifest).

    Raises:
        InputError: bad output path, a backbone without a latent canvas, an unknown mpp, an
            mpp far from the model's (without ``rescale``), a layout smaller than one window,
            or one whose memory estimate exceeds the memory available (:mod:`.memory`).
    """
    from tqdm.auto import tqdm

    from htd_core import __version__
    from htd_core.io import atomic_write_json
    from htd_core.outputs import whole_output_lock
    from htd_plugins.slide_synthesis.canvas import Checkpoint, decode_rows, denoise_canvas
    from htd_plugins.slide_synthesis.conditions import WindowConditions
    from htd_plugins.slide_synthesis.memory import check_memory, estimate_memory, gib
    from htd_plugins.slide_synthesis.outputs import layout_geojson, write_label_mask, write_pyramid
    from htd_plugins.slide_synthesis.preview import write_preview
    from htd_plugins.slide_synthesis.windows import WindowPlan, axis_starts

    paths = check_output(out)
    if not (isinstance(tile, int) and tile >= 16 and tile % 16 == 0):
        raise InputError(f"tile={tile!r}: a TIFF tile side is a multiple of 16 px (default 256)")
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise InputError(f"quality={quality!r}: give a JPEG quality in 1..100")
    for name, value in (("overlap", overlap), ("decode_overlap", decode_overlap)):
        if not (isinstance(value, int | float) and 0 <= value < 1):
            raise InputError(f"{name}={value!r} must be in [0, 1) (0: no overlap, 0.5: half)")
    if decode_tile is not None and not (isinstance(decode_tile, int) and decode_tile >= 1):
        raise InputError(f"decode_tile={decode_tile!r}: give a tile side in latent cells (>= 1)")
    from htd_core.interfaces import LatentBackbone

    backbone, builder = pipeline.backbone, pipeline.condition_builder
    if not isinstance(backbone, LatentBackbone) or backbone.autoencoder is None:
        raise InputError(
            f"backbone {getattr(backbone, 'name', backbone)!r} has no latent canvas to denoise "
            "in windows: slide synthesis needs a trained latent diffusion backbone "
            "(controlnet_ldm, concat_ldm)"
        )
    if builder is None:
        raise InputError(
            "the pipeline has no condition builders: load it with Pipeline.from_pretrained"
        )
    options = pipeline.generation_options(
        guidance_scale=guidance_scale, scheduler=scheduler, num_inference_steps=num_inference_steps,
        batch_size=batch_size, seed=seed,
    )  # fmt: skip
    layout, mpp_note = _at_model_mpp(layout, backbone, model_mpp, rescale)
    f, size = backbone.autoencoder.factor, backbone.image_size
    h, w = layout.size
    if h < size or w < size:
        raise InputError(
            f"the layout is {w} x {h} px, smaller than one window of the model ({size} x {size} px "
            f"at {layout.mpp:g} um/px): draw a larger layout, or use `htd generate` for single patches"
        )
    hp, wp = math.ceil(h / f) * f, math.ceil(w / f) * f
    mask = layout.mask
    if (hp, wp) != (h, w):  # the canvas is whole latent cells: repeat the last rows/columns
        mask = np.pad(mask, ((0, hp - h), (0, wp - w)), mode="edge")
    plan = WindowPlan.create(hp // f, wp // f, size // f, overlap)
    memory = estimate_memory(
        hp, wp, factor=f, channels=backbone.autoencoder.latent_channels, window=size,
        batch_size=options.batch_size, decode_tile=int(decode_tile or 2 * size // f),
        scheduler=options.scheduler,
    )  # fmt: skip
    check_memory(memory, h, w, options.batch_size)  # before the first window
    if progress:
        print(f"htd generate-slide: {w} x {h} px, {len(plan)} windows x "
              f"{options.num_inference_steps} steps, about {gib(memory.total)} of memory "
              f"({memory.describe()})", file=sys.stderr)  # fmt: skip
    positions = [tuple(int(v) * f for v in plan.position(i)) for i in range(len(plan))]
    registry = pipeline.manager.registry("htd_register_condition_builders")
    windows = WindowConditions(builder, mask, layout.class_map, layout.mpp, positions, size,
                               seed, crops, registry)  # fmt: skip
    settings = {
        "seed": seed, "overlap": overlap, "crops": crops, "mpp": layout.mpp,
        "scheduler": options.scheduler, "steps": options.num_inference_steps,
        "guidance_scale": options.guidance_scale,
        "decode_tile": int(decode_tile or 2 * size // f), "decode_overlap": decode_overlap,
    }  # fmt: skip
    # every window's condition once, before the expensive work: a missing crop fails now
    provenance = [
        {"window": i, "x": x, "y": y, "crops": windows.provenance(i)}
        for i, (y, x) in enumerate(positions)
    ]
    paths["slide"].parent.mkdir(parents=True, exist_ok=True)
    with whole_output_lock(paths["slide"], "--out"):  # one run per slide and checkpoint
        check = Checkpoint(paths["checkpoint"], {**settings, "layout": _digest(mask),
                                                "model": backbone.weights_digest(), "builders": _specs(builder)})  # fmt: skip
        bs = options.batch_size
        latents = denoise_canvas(
            backbone, windows.build, plan, options, checkpoint=check, progress=progress,
            callback=callback,
        )  # fmt: skip
        write_label_mask(paths["label_mask"], layout.mask, layout.class_map, layout.mpp)
        atomic_write_json(paths["geojson"], layout_geojson(layout.mask, layout.class_map))
        bands = decode_rows(backbone, latents, tile=settings["decode_tile"], overlap=decode_overlap,
                            batch_size=max(1, bs // 4))  # fmt: skip
        rows = len(axis_starts(plan.height, min(settings["decode_tile"], plan.height, plan.width),
                               decode_overlap))  # fmt: skip
        bands = tqdm(bands, total=rows, unit="row", desc="decode and write", disable=not progress)
        levels = write_pyramid(
            paths["slide"], bands, height=h, width=w, mpp=layout.mpp, tile=tile, quality=quality
        )
        write_preview(paths["slide"], layout.mask, layout.class_map, layout.mpp, paths["preview"])
        summary = {
            "format": "htd-synthetic-slide", "htd_version": __version__,
            "files": {k: p.name for k, p in paths.items() if k != "checkpoint"},
            "width": w, "height": h, "mpp": layout.mpp, "levels": [list(d) for d in levels],
            "associated_images": [], "layout": layout.info, "mpp_check": mpp_note,
            "model": {"backbone": backbone.name, "image_size": size, "classes": list(layout.class_map.names)},
            "windows": {"grid": list(plan.grid), "count": len(plan), "side_px": size,
                        "stride_px": _stride(plan) * f, "overlap": overlap},
            **{k: v for k, v in settings.items() if k not in ("overlap", "mpp")},
            "crop_provenance": provenance,
        }  # fmt: skip
        atomic_write_json(paths["manifest"], summary)
        check.remove()
    return {**summary, "paths": {k: str(p) for k, p in paths.items() if k != "checkpoint"}}


def _at_model_mpp(
    layout: SlideLayout, backbone: Any, model_mpp: float | None, rescale: bool
) -> tuple[SlideLayout, str]:
    """The layout at a resolution the model was trained at (module doc of the API)."""
    from htd_plugins.slide_synthesis.layout import check_mpp

    known = model_mpp if model_mpp is not None else getattr(backbone, "mpp", None)
    if known is None:
        raise InputError(
            "the model does not record the mpp of its training patches (models trained before "
            "htd recorded it): pass model_mpp=<um/px> (--model-mpp), e.g. 2.25 for `htd demo`'s "
            "GlaS model (160 px at 0.9 um/px cut, shown at 64 px)"
        )
    known = check_mpp(known, "model_mpp")
    ratio = layout.mpp / known
    if abs(math.log(ratio)) <= math.log1p(MPP_TOLERANCE):
        return layout, f"layout {layout.mpp:g} um/px, model {known:g} um/px: used as is"
    if not rescale:
        raise InputError(
            f"the layout is at {layout.mpp:g} um/px but the model was trained at {known:g} um/px "
            f"({ratio:.2f}x): its tissue would come out at the wrong scale. Pass rescale=True "
            f"(--rescale) to resample the layout to {known:g} um/px (the slide is then written at "
            f"{known:g} um/px), or give a layout at the model's mpp"
        )
    note = f"layout rescaled from {layout.mpp:g} to the model's {known:g} um/px"
    return layout.rescaled(known), note


def _stride(plan: Any) -> int:
    starts = plan.xs if len(plan.xs) > 1 else plan.ys
    return int(np.diff(starts).min()) if len(starts) > 1 else plan.window


def _specs(builder: Any) -> list[Any]:
    """The builders' registered names and options (a resume must build the same conditions;
    a crop bank given as a path is named by it), else their repr."""
    from htd_core.registry import SPEC_ATTRIBUTE

    def stable(value: Any) -> Any:  # objects (a CropBank given as an object) by content
        if isinstance(value, dict):
            return {str(k): stable(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [stable(v) for v in value]
        if value is None or isinstance(value, str | int | float | bool):
            return value
        counts = getattr(value, "counts", None)
        return {"type": type(value).__name__, "counts": counts() if callable(counts) else None}

    parts = getattr(builder, "builders", [builder])
    return [stable(getattr(p, SPEC_ATTRIBUTE, None) or repr(p)) for p in parts]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
