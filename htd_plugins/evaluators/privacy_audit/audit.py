"""The privacy audit's computation: nearest real neighbours of synthetic images, calibrated.

Takes an :class:`~.entries.AuditOptions` and the :class:`~.entries.Entry` of every image
(features, small pixels, crop regions), never an evaluator: the ``privacy`` evaluator builds
the entries, this module answers with JSON-serialisable metrics (and writes figures through
:mod:`.outputs`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from htd_core.interfaces import Encoder
from htd_plugins.evaluators.privacy_audit import distances as pm
from htd_plugins.evaluators.privacy_audit.entries import AuditOptions, Entry, require_entries


def _pixels(entries: list[Entry], grid: int = 1) -> np.ndarray:
    """Flattened [0, 1] pixels, one row per image (grid=1) or per window."""
    rows = [w.reshape(-1) for e in entries for w in pm.windows(e.pixels, grid)]
    return np.stack(rows).astype(np.float64) / 255.0


def _keep(entries: list[Entry], size: int, grid: int = 1) -> np.ndarray:
    """Per-row 0/1 weights: 1 outside the synthetic image's crop region (all 1 without one)."""
    rows = []
    for e in entries:
        keep = e.keep if e.keep is not None else np.ones((size, size), bool)
        rows += [np.repeat(w[..., None], 3, -1).reshape(-1) for w in pm.windows(keep, grid)]
    return np.stack(rows).astype(np.float64)


def _space_level(
    syn_plain: np.ndarray, syn_masked: np.ndarray | None, cal: np.ndarray, quantile: float
) -> dict[str, Any]:
    """Threshold, distributions and fractions for one distance (rows already reduced)."""
    finite = cal[np.isfinite(cal)]
    threshold = float(np.quantile(finite, quantile)) if finite.size else None

    def variant(d: np.ndarray) -> dict[str, Any]:
        ok = d[np.isfinite(d)]
        frac = float((ok < threshold).mean()) if threshold is not None and ok.size else None
        return {"summary": pm.summary(d), "fraction_below": frac}

    return {
        "threshold": threshold,
        "calibration": pm.summary(cal),
        "unmasked": variant(syn_plain),
        "masked": variant(syn_masked) if syn_masked is not None else None,
    }


def _calibration(ref: list[Entry], held_out: list[Entry]) -> tuple[Any, str, list[str]]:
    """(pairs to exclude or None, calibration description, notes)."""
    if held_out:
        return None, f"{len(held_out)} held-out real images vs the real training images", []
    src = [r.source or f"#{r.index}" for r in ref]
    exclude = np.equal.outer(np.asarray(src, object), np.asarray(src, object))
    notes = []
    n_sources = len(set(src))
    if exclude.all():
        notes.append("all real images share one source: no calibration threshold")
    elif n_sources < 30:
        notes.append(
            f"only {n_sources} real source images: leave-source-out calibration compares each "
            "real image with fewer images than the synthetic ones meet, so its distances run "
            "high and the fractions below threshold run high too; give a held-out real set "
            "(--real-test) for an exact calibration"
        )
    return exclude, "each real training image vs training images of other source images", notes


def _crop_level(
    opt: AuditOptions, ref: list[Entry], cal: list[Entry], syn: list[Entry], exclude: Any
) -> dict[str, dict[str, Any]]:
    """Windows against all real windows, reduced per image, in feature and pixel space."""
    g, size, q = opt.crop_grid, opt.pixel_size, opt.quantile
    has_regions = any(s.keep is not None for s in syn)
    w2 = g * g
    wex = None if exclude is None else np.repeat(np.repeat(exclude, w2, 0), w2, 1)
    s_groups, c_groups = np.repeat(np.arange(len(syn)), w2), np.repeat(np.arange(len(cal)), w2)
    ref_win = np.concatenate([r.win for r in ref])
    cal_d = pm.nearest_by_group(
        pm.cosine_distances(np.concatenate([c.win for c in cal]), ref_win), c_groups, wex
    )[1]
    plain = pm.nearest_by_group(
        pm.cosine_distances(np.concatenate([s.win for s in syn]), ref_win), s_groups
    )
    masked = None
    if has_regions:
        masked_feats = np.concatenate([s.win_masked for s in syn])
        masked = pm.nearest_by_group(pm.cosine_distances(masked_feats, ref_win), s_groups)
    feature = _space_level(plain[1], masked[1] if masked else None, cal_d, q)
    ref_wpix = _pixels(ref, g)
    ones = np.ones((len(cal) * w2, ref_wpix.shape[1]))
    cal_d = pm.nearest_by_group(
        pm.masked_rms_distances(_pixels(cal, g), ones, ref_wpix), c_groups, wex
    )[1]
    syn_wpix = _pixels(syn, g)
    plain = pm.nearest_by_group(
        pm.masked_rms_distances(syn_wpix, np.ones_like(syn_wpix), ref_wpix), s_groups
    )
    masked = None
    if has_regions:
        masked_d = pm.masked_rms_distances(syn_wpix, _keep(syn, size, g), ref_wpix)
        masked = pm.nearest_by_group(masked_d, s_groups)
    return {
        "feature": feature,
        "pixel": _space_level(plain[1], masked[1] if masked else None, cal_d, q),
    }


def audit(
    options: AuditOptions,
    ref: list[Entry],
    held_out: list[Entry],
    synthetic: list[Entry],
    *,
    encoder: Encoder,
) -> dict[str, Any]:
    """Nearest-neighbour distances of synthetic (and calibration) images to the real training set.

    Args:
        options: the audit's options; with ``output_dir``, figures and a CSV are written there.
        ref: real training images (the reference searched).
        held_out: held-out real images (calibration); empty: leave-source-out on ``ref``.
        synthetic: the synthetic images audited.
        encoder: the encoder that made the features (its label and weights id are reported).

    Returns:
        JSON-serialisable metrics (see ``docs/evaluation.md``).

    Raises:
        InputError: ``ref`` or ``synthetic`` is empty.
    """
    require_entries(ref, synthetic)
    syn, size, q = synthetic, options.pixel_size, options.quantile
    has_regions = any(s.keep is not None for s in syn)
    cal = held_out or ref
    exclude, calibration, notes = _calibration(ref, held_out)
    if not has_regions:
        notes.append(
            "no synthetic image records its crops (crop_provenance or crop_boxes in its meta): "
            "the masked variant is not computed"
        )
    results: dict[str, Any] = {"feature": {}, "pixel": {}}

    # image level
    ref_feat = np.stack([r.feat for r in ref])
    cal_feat = np.stack([c.feat for c in cal])
    feat_cal = pm.nearest(pm.cosine_distances(cal_feat, ref_feat), exclude)[1]
    f_plain = pm.nearest(pm.cosine_distances(np.stack([s.feat for s in syn]), ref_feat))
    f_mask = None
    if has_regions:
        masked_feat = np.stack([s.feat_masked for s in syn])
        f_mask = pm.nearest(pm.cosine_distances(masked_feat, ref_feat))
    results["feature"]["image"] = _space_level(
        f_plain[1], f_mask[1] if f_mask else None, feat_cal, q
    )
    ref_pix = _pixels(ref)
    ones_cal = np.ones((len(cal), ref_pix.shape[1]))
    pix_cal = pm.nearest(pm.masked_rms_distances(_pixels(cal), ones_cal, ref_pix), exclude)[1]
    syn_pix = _pixels(syn)
    p_plain = pm.nearest(pm.masked_rms_distances(syn_pix, np.ones_like(syn_pix), ref_pix))
    p_mask = None
    if has_regions:
        p_mask = pm.nearest(pm.masked_rms_distances(syn_pix, _keep(syn, size), ref_pix))
    results["pixel"]["image"] = _space_level(p_plain[1], p_mask[1] if p_mask else None, pix_cal, q)
    if options.crop_grid:
        for space, level in _crop_level(options, ref, cal, syn, exclude).items():
            results[space]["crop"] = level

    # nearest real per synthetic (features, image level; masked when crops are known)
    f_idx, f_d = f_mask if f_mask else f_plain
    p_idx, p_d = p_mask if p_mask else p_plain
    order = np.argsort(np.where(np.isfinite(f_d), f_d, np.inf))[: options.top_k]
    top = [
        {
            "synthetic": int(i),
            "real": int(ref[f_idx[i]].index),
            "real_id": ref[f_idx[i]].id,
            "feature_distance": float(f_d[i]),
            "pixel_real": int(ref[p_idx[i]].index),
            "pixel_distance": float(p_d[i]),
        }
        for i in order
        if f_idx[i] >= 0
    ]
    metrics: dict[str, Any] = {
        "encoder": encoder.label,
        "weights_id": encoder.weights_id,
        "n_real_train": len(ref),
        "n_real_held_out": len(held_out),
        "n_synthetic": len(syn),
        "n_with_crop_boxes": sum(s.keep is not None for s in syn),
        "calibration": calibration,
        "quantile": q,
        **results,
        "top_pairs": top,
        "nearest_real": [int(ref[i].index) if i >= 0 else -1 for i in f_idx],
        "notes": notes,
    }
    if options.output_dir is not None:
        from htd_plugins.evaluators.privacy_audit.outputs import write_outputs

        metrics["figures"] = write_outputs(
            options.output_dir, ref, syn, metrics, f_d=f_d, p_d=p_d, feat_cal=feat_cal
        )
    return metrics
