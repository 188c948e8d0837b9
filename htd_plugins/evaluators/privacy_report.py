"""The privacy audit's computation and figures (helper of :mod:`.privacy`)."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import numpy as np

from htd_core.io import atomic_write_text
from htd_plugins.evaluators import privacy_math as pm

if TYPE_CHECKING:
    from htd_plugins.evaluators.privacy import PrivacyEvaluator


def _pixels(entries: list[dict[str, Any]], grid: int = 1) -> np.ndarray:
    """Flattened [0, 1] pixels, one row per image (grid=1) or per window."""
    rows = [w.reshape(-1) for e in entries for w in pm.windows(e["pixels"], grid)]
    return np.stack(rows).astype(np.float64) / 255.0


def _keep(entries: list[dict[str, Any]], size: int, grid: int = 1) -> np.ndarray:
    """Per-row 0/1 weights: 1 outside the synthetic image's crop region (all 1 without one)."""
    rows = []
    for e in entries:
        keep = e["keep"] if e.get("keep") is not None else np.ones((size, size), bool)
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


def audit(
    ev: PrivacyEvaluator, ref: list[dict[str, Any]], held_out: list[dict[str, Any]]
) -> dict[str, Any]:
    """Nearest-neighbour distances of synthetic (and calibration) images to the real training set."""
    syn = ev._synthetic
    g, size, q = ev.crop_grid, ev.pixel_size, ev.quantile
    has_regions = any(s["keep"] is not None for s in syn)
    cal = held_out or ref
    notes = []
    if held_out:
        exclude = None
        calibration = f"{len(held_out)} held-out real images vs the real training images"
    else:
        src = [r["source"] or f"#{r['index']}" for r in ref]
        exclude = np.equal.outer(np.asarray(src, object), np.asarray(src, object))
        calibration = "each real training image vs training images of other source images"
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
    if not has_regions:
        notes.append(
            "no synthetic image records its crops (crop_provenance or crop_boxes in its meta): "
            "the masked variant is not computed"
        )
    results: dict[str, Any] = {"feature": {}, "pixel": {}}

    # image level
    ref_feat = np.stack([r["feat"] for r in ref])
    feat_cal = pm.nearest(
        pm.cosine_distances(np.stack([c["feat"] for c in cal]), ref_feat), exclude
    )[1]
    f_plain = pm.nearest(pm.cosine_distances(np.stack([s["feat"] for s in syn]), ref_feat))
    f_mask = (
        pm.nearest(pm.cosine_distances(np.stack([s["feat_masked"] for s in syn]), ref_feat))
        if has_regions
        else None
    )
    results["feature"]["image"] = _space_level(
        f_plain[1], f_mask[1] if f_mask else None, feat_cal, q
    )
    ref_pix = _pixels(ref)
    ones_cal = np.ones((len(cal), ref_pix.shape[1]))
    pix_cal = pm.nearest(pm.masked_rms_distances(_pixels(cal), ones_cal, ref_pix), exclude)[1]
    syn_pix = _pixels(syn)
    p_plain = pm.nearest(pm.masked_rms_distances(syn_pix, np.ones_like(syn_pix), ref_pix))
    p_mask = (
        pm.nearest(pm.masked_rms_distances(syn_pix, _keep(syn, size), ref_pix))
        if has_regions
        else None
    )
    results["pixel"]["image"] = _space_level(p_plain[1], p_mask[1] if p_mask else None, pix_cal, q)

    # crop level: windows against all real windows, reduced per synthetic image
    if g:
        w2 = g * g
        wex = None if exclude is None else np.repeat(np.repeat(exclude, w2, 0), w2, 1)
        s_groups = np.repeat(np.arange(len(syn)), w2)
        c_groups = np.repeat(np.arange(len(cal)), w2)
        ref_win = np.concatenate([r["win"] for r in ref])
        cal_d = pm.nearest_by_group(
            pm.cosine_distances(np.concatenate([c["win"] for c in cal]), ref_win), c_groups, wex
        )[1]
        plain = pm.nearest_by_group(
            pm.cosine_distances(np.concatenate([s["win"] for s in syn]), ref_win), s_groups
        )
        masked = (
            pm.nearest_by_group(
                pm.cosine_distances(np.concatenate([s["win_masked"] for s in syn]), ref_win),
                s_groups,
            )
            if has_regions
            else None
        )
        results["feature"]["crop"] = _space_level(plain[1], masked[1] if masked else None, cal_d, q)
        ref_wpix = _pixels(ref, g)
        cal_d = pm.nearest_by_group(
            pm.masked_rms_distances(
                _pixels(cal, g), np.ones((len(cal) * w2, ref_wpix.shape[1])), ref_wpix
            ),
            c_groups,
            wex,
        )[1]
        syn_wpix = _pixels(syn, g)
        plain = pm.nearest_by_group(
            pm.masked_rms_distances(syn_wpix, np.ones_like(syn_wpix), ref_wpix), s_groups
        )
        masked = (
            pm.nearest_by_group(
                pm.masked_rms_distances(syn_wpix, _keep(syn, size, g), ref_wpix), s_groups
            )
            if has_regions
            else None
        )
        results["pixel"]["crop"] = _space_level(plain[1], masked[1] if masked else None, cal_d, q)

    # nearest real per synthetic (features, image level; masked when crops are known)
    f_idx, f_d = f_mask if f_mask else f_plain
    p_idx, p_d = p_mask if p_mask else p_plain
    order = np.argsort(np.where(np.isfinite(f_d), f_d, np.inf))[: ev.top_k]
    top = [
        {
            "synthetic": int(i),
            "real": int(ref[f_idx[i]]["index"]),
            "real_id": ref[f_idx[i]]["id"],
            "feature_distance": float(f_d[i]),
            "pixel_real": int(ref[p_idx[i]]["index"]),
            "pixel_distance": float(p_d[i]),
        }
        for i in order
        if f_idx[i] >= 0
    ]
    enc = ev.encoder
    metrics: dict[str, Any] = {
        "encoder": enc.label,
        "weights_id": enc.weights_id,
        "n_real_train": len(ref),
        "n_real_held_out": len(held_out),
        "n_synthetic": len(syn),
        "n_with_crop_boxes": sum(s["keep"] is not None for s in syn),
        "calibration": calibration,
        "quantile": q,
        **results,
        "top_pairs": top,
        "nearest_real": [int(ref[i]["index"]) if i >= 0 else -1 for i in f_idx],
        "notes": notes,
    }
    if ev.output_dir is not None:
        metrics["figures"] = _write_outputs(ev, ref, metrics, f_d, p_d, feat_cal)
    return metrics


def _write_outputs(ev, ref, metrics, f_d, p_d, feat_cal) -> dict[str, str]:
    """Top-k figure, distance histogram and a per-sample CSV in ``ev.output_dir``."""
    from htd_plugins.evaluators.figures import save_grid, save_histograms

    out = ev.output_dir
    out.mkdir(parents=True, exist_ok=True)
    by_index = {r["index"]: r for r in ref}
    figures = {}
    if metrics["top_pairs"]:
        rows, labels = [], []
        for pair in metrics["top_pairs"]:
            s = ev._synthetic[pair["synthetic"]]
            row = {"synthetic": s["thumb"]}
            if s["region"] is not None:
                row["crop region"] = np.where(
                    s["region"][..., None], s["thumb"], s["thumb"] // 3
                ).astype(np.uint8)
            row["nearest real (features)"] = by_index[pair["real"]]["thumb"]
            row["nearest real (pixels)"] = by_index[pair["pixel_real"]]["thumb"]
            rows.append(row)
            labels.append(
                f"#{pair['synthetic']}\nfeat {pair['feature_distance']:.3f}\npix {pair['pixel_distance']:.3f}"
            )
        save_grid(
            out / "privacy_top_pairs.png",
            rows,
            row_labels=labels,
            title=f"closest pairs under {metrics['encoder']}",
        )
        figures["top_pairs"] = "privacy_top_pairs.png"
    save_histograms(
        out / "privacy_distances.png",
        {"synthetic -> real train": f_d, "real calibration": feat_cal},
        xlabel=f"cosine distance to nearest real ({metrics['encoder']})",
        threshold=metrics["feature"]["image"]["threshold"],
    )
    figures["distances"] = "privacy_distances.png"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["synthetic", "nearest_real", "feature_distance", "pixel_distance"])
    for i, (j, fd, pd) in enumerate(zip(metrics["nearest_real"], f_d, p_d, strict=True)):
        w.writerow([i, j, f"{fd:.6g}", f"{pd:.6g}"])
    atomic_write_text(out / "privacy_nearest.csv", buf.getvalue())
    figures["csv"] = "privacy_nearest.csv"
    return figures
