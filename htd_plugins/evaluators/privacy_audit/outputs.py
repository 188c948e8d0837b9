"""The privacy audit's files: closest-pairs figure, distance histogram, per-sample CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.io import atomic_write_text
from htd_plugins.evaluators.privacy_audit.entries import Entry


def write_outputs(
    out: Path,
    ref: list[Entry],
    synthetic: list[Entry],
    metrics: dict[str, Any],
    *,
    f_d: np.ndarray,
    p_d: np.ndarray,
    feat_cal: np.ndarray,
) -> dict[str, str]:
    """Write ``privacy_top_pairs.png``, ``privacy_distances.png`` and ``privacy_nearest.csv``.

    Args:
        out: the folder (created).
        ref: the real training entries searched.
        synthetic: the synthetic entries audited.
        metrics: the audit's metrics (``top_pairs``, ``nearest_real``, ``encoder``, ``feature``).
        f_d, p_d: float per synthetic image, distance to its nearest real image in feature and
            pixel space.
        feat_cal: float feature distances of the calibration images.

    Returns:
        figure key -> file name inside ``out``.
    """
    from htd_plugins.evaluators.figures import save_grid, save_histograms

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_index = {r.index: r for r in ref}
    figures = {}
    if metrics["top_pairs"]:
        rows, labels = [], []
        for pair in metrics["top_pairs"]:
            s = synthetic[pair["synthetic"]]
            row = {"synthetic": s.thumb}
            if s.region is not None:
                dimmed = np.where(s.region[..., None], s.thumb, s.thumb // 3)
                row["crop region"] = dimmed.astype(np.uint8)
            row["nearest real (features)"] = by_index[pair["real"]].thumb
            row["nearest real (pixels)"] = by_index[pair["pixel_real"]].thumb
            rows.append(row)
            labels.append(
                f"#{pair['synthetic']}\nfeat {pair['feature_distance']:.3f}\n"
                f"pix {pair['pixel_distance']:.3f}"
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
