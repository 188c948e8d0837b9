"""PNG figures for reports (matplotlib, Agg backend; imported lazily).

The grid is the figure every stage shows: one row per example, one column per named view,
e.g. ``{"map": ..., "crops": ..., "synthetic": ..., "nearest real": ...}``::

    from htd_plugins.evaluators import save_grid
    save_grid("grid.png", [{"map": cm.colorize(s.mask), "synthetic": s.image} for s in samples])
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from htd_core.errors import InputError
from htd_core.io import atomic_open


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def save_grid(
    path: str | Path,
    rows: Sequence[Mapping[str, np.ndarray | None]],
    *,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    tile: float = 1.6,
) -> Path:
    """Write a grid of images as a PNG: one row per mapping, one column per key.

    Args:
        path: output PNG (written atomically).
        rows: per row, column name -> uint8 image (H x W x 3 RGB or H x W grey); the columns
            are the keys in first-seen order; a missing key or None leaves the cell blank.
            Images may differ in size (each cell shows its image whole).
        row_labels: one caption per row (e.g. a distance), shown left of the row.
        title: figure title.
        tile: cell size in inches.

    Returns:
        ``path``.
    """
    if not rows:
        raise InputError(f"save_grid({path}): no rows to draw")
    if row_labels is not None and len(row_labels) != len(rows):
        raise InputError(f"save_grid: {len(row_labels)} row labels for {len(rows)} rows")
    columns = list(dict.fromkeys(k for row in rows for k in row))
    plt = _pyplot()
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(tile * len(columns), tile * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, col in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            image = row.get(col)
            if image is not None:
                image = np.asarray(image)
                if image.dtype != np.uint8 or image.ndim not in (2, 3):
                    raise InputError(
                        f"save_grid: cell ({r}, {col!r}) is {image.dtype} {image.shape}; give uint8 "
                        "H x W x 3 or H x W images"
                    )
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            if r == 0:
                ax.set_title(textwrap.fill(col, 18), fontsize=8)
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_bar_chart(
    path: str | Path,
    values: Mapping[str, Mapping[str, float]],
    *,
    ylabel: str,
    title: str | None = None,
) -> Path:
    """Grouped bars: ``values[group][series]`` (e.g. FD per encoder, one bar per synthetic set).

    Missing or non-finite values leave a gap. The legend names the series, even a single one.
    """
    groups = list(values)
    series = list(dict.fromkeys(s for g in groups for s in values[g]))
    if not groups or not series:
        raise InputError(f"save_bar_chart({path}): nothing to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(
        figsize=(max(4.0, 1.2 * len(groups) * max(1, len(series)) ** 0.5 + 2), 3.2)
    )
    width = 0.8 / len(series)
    x = np.arange(len(groups))
    for i, s in enumerate(series):
        ys = [float(values[g].get(s, np.nan)) for g in groups]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, ys, width, label=s)
        ax.bar_label(bars, fmt="%.3g", fontsize=7)
    ax.set_xticks(x, groups, rotation=20 if len(groups) > 3 else 0, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, title="set" if len(series) == 1 else None)  # one set is named too
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def save_histograms(
    path: str | Path,
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    threshold: float | None = None,
    title: str | None = None,
) -> Path:
    """Overlaid density histograms of distance distributions, with an optional threshold line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    finite = [np.asarray(v, float) for v in series.values()]
    finite = [v[np.isfinite(v)] for v in finite]
    everything = np.concatenate(finite) if finite else np.zeros(0)
    if everything.size == 0:
        raise InputError(f"save_histograms({path}): no finite values to plot")
    bins = np.histogram_bin_edges(everything, bins=30)
    for (name, _), values in zip(series.items(), finite, strict=True):
        if values.size:
            ax.hist(values, bins=bins, alpha=0.5, density=True, label=f"{name} (n={values.size})")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
