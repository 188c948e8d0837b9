"""Seam measurements of a synthetic slide against its window grid.

The grid is every interior window edge (:meth:`WindowPlan.edges`, in image pixels); its cells'
midlines are the lines farthest from any edge ("interior lines").

- **Gradient ratio**: the mean absolute difference between the two pixel rows (or columns)
  that meet at a line, averaged over channels and the line's length, over all edge lines,
  divided by the same over all interior lines. A seam adds a step at edges, so a tiling
  without blending has a ratio above 1; a seamless slide has about 1 (target <= 1.10).
- **Patch Frechet distance**: patches of ``size`` px centred on crossings of edge lines
  ("straddling" four windows' edges) against patches centred on crossings of interior lines,
  under a feature encoder; compared with the FD between two disjoint sets of real patches of
  the same size and count (the sampling noise of FD at that N, as the issue asks) and with
  the FD between two disjoint sets of centred patches of the same slide (the noise within
  one slide: far smaller, since one slide varies less than many real images, so it is the
  stricter reference: a plain tiling is within the real-vs-real noise but not this one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htd_core.errors import InputError


def interior_lines(edges: np.ndarray, length: int) -> np.ndarray:
    """Midlines of the cells between consecutive edges (canvas borders count as edges)."""
    bounds = np.concatenate([[0], np.asarray(edges, np.int64), [length]])
    mids = (bounds[:-1] + bounds[1:]) // 2
    return np.unique(mids[(mids > 0) & (mids < length)])


def line_gradients(image: np.ndarray, lines: np.ndarray, axis: int) -> np.ndarray:
    """Mean |I[line] - I[line - 1]| per line, across rows (``axis=0``) or columns (``axis=1``)."""
    img = np.asarray(image, np.float32)
    if axis == 0:
        return np.abs(img[lines] - img[lines - 1]).mean(axis=(1, 2))
    return np.abs(img[:, lines] - img[:, lines - 1]).mean(axis=(0, 2))


def gradient_ratio(
    image: np.ndarray, edge_rows: np.ndarray, edge_cols: np.ndarray
) -> dict[str, Any]:
    """Seam gradient ratio of a uint8 H x W x 3 image for a grid of edge lines (module doc).

    Returns:
        ``ratio``, ``edge`` and ``interior`` means (grey levels), and the line counts.

    Raises:
        InputError: the grid has no interior edge (a single window has no seam).
    """
    h, w = image.shape[:2]
    rows, cols = np.asarray(edge_rows, np.int64), np.asarray(edge_cols, np.int64)
    if len(rows) + len(cols) == 0:
        raise InputError("no window edge inside the image: a single window has no seam to measure")
    mid_r, mid_c = interior_lines(rows, h), interior_lines(cols, w)
    edge = np.concatenate([line_gradients(image, rows, 0), line_gradients(image, cols, 1)])
    inner = np.concatenate([line_gradients(image, mid_r, 0), line_gradients(image, mid_c, 1)])
    return {
        "ratio": float(edge.mean() / max(inner.mean(), 1e-9)),
        "edge": float(edge.mean()),
        "interior": float(inner.mean()),
        "edge_lines": int(len(edge)),
        "interior_lines": int(len(inner)),
    }


def patches_at(
    image: np.ndarray, rows: Sequence[int], cols: Sequence[int], size: int
) -> list[np.ndarray]:
    """``size`` px patches centred on every crossing (row, col) that fits inside the image."""
    h, w = image.shape[:2]
    half = size // 2
    return [
        np.ascontiguousarray(image[r - half : r - half + size, c - half : c - half + size])
        for r in rows
        for c in cols
        if r - half >= 0 and c - half >= 0 and r - half + size <= h and c - half + size <= w
    ]


def seam_patches(
    image: np.ndarray, edge_rows: np.ndarray, edge_cols: np.ndarray, size: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(straddling, centred) patches: centred on edge crossings and on cell centres."""
    h, w = image.shape[:2]
    straddling = patches_at(image, edge_rows, edge_cols, size)
    centred = patches_at(image, interior_lines(edge_rows, h), interior_lines(edge_cols, w), size)
    return straddling, centred


def patch_fd(encoder: Any, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Frechet distance between the encoder features of two patch sets (float64 maths)."""
    return features_fd(embed(encoder, a), embed(encoder, b))


def embed(encoder: Any, patches: Sequence[np.ndarray]) -> np.ndarray:
    """float32 N x D features of uint8 patches of one size."""
    return encoder(np.stack(list(patches))).numpy()


def features_fd(fa: np.ndarray, fb: np.ndarray) -> float:
    """Frechet distance between two feature sets N x D."""
    from htd_plugins.evaluators import frechet_distance, statistics

    if len(fa) < 2 or len(fb) < 2:
        raise InputError(f"FD needs at least 2 patches per set, got {len(fa)} and {len(fb)}")
    (m1, s1), (m2, s2) = statistics(fa), statistics(fb)
    return frechet_distance(m1, s1, m2, s2)


def subsample(items: Sequence[Any], n: int, seed: int) -> list[Any]:
    """``n`` of ``items`` chosen without replacement (all when fewer), in a seeded order."""
    order = np.random.default_rng(seed).permutation(len(items))[: min(n, len(items))]
    return [items[i] for i in sorted(order)]


def read_level0(slide: str | Path) -> np.ndarray:
    """Level 0 of a slide TIFF written by ``generate_slide`` (uint8 H x W x 3)."""
    import tifffile

    return tifffile.imread(slide, key=0)


def manifest_edges(manifest: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Interior window edges (rows, columns) in pixels, from a slide manifest's windows."""
    side = int(manifest["windows"]["side_px"])
    h, w = int(manifest["height"]), int(manifest["width"])
    ys = np.unique([int(p["y"]) for p in manifest["crop_provenance"]])
    xs = np.unique([int(p["x"]) for p in manifest["crop_provenance"]])

    def axis(starts: np.ndarray, length: int) -> np.ndarray:
        lines = np.unique(np.concatenate([starts, starts + side]))
        return lines[(lines > 0) & (lines < length)]

    return axis(ys, h), axis(xs, w)


def seam_report(
    slides: str | Path | Sequence[str | Path],
    *,
    encoders: Sequence[Any] = (),
    reference: Sequence[np.ndarray] | None = None,
    reference_groups: Sequence[Any] | None = None,
    patch_size: int | None = None,
    max_patches: int = 400,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Seam measurements of slides written by ``generate_slide`` (module doc).

    Args:
        slides: a slide TIFF (its ``.manifest.json`` gives the window grid), or several
            (then a report per file name; each reference patch is embedded once for all, and
            only the patches some real-vs-real draw uses).
        encoders: registered encoder names or Encoder instances for the patch FD.
        reference: real uint8 patches (the size of ``patch_size``) for the real-vs-real FD at
            the same N; at least ``2 N``.
        reference_groups: the source image of each reference patch; each repeat splits the
            sources in two halves and draws N patches from each, so the two sets never share
            a source (default: random halves of the patches).
        patch_size: patch side in px (default: the model's window side).
        max_patches: N, the patches per set (subsampled with ``seed``).
        repeats: real-vs-real draws (disjoint halves of ``reference``, reshuffled).

    Raises:
        InputError: a number out of range (``patch_size`` 0 never means the default).

    Returns:
        ``gradient`` (:func:`gradient_ratio`) and ``fd``: per encoder, ``n`` and the FD of N
        straddling patches vs N centred ones (``straddling_vs_centred``), of N other centred
        patches of the same slide vs the same N centred (``centred_vs_centred``: the noise
        within the slide), and of two disjoint real sets of N (``real_vs_real``, one value
        per repeat).
    """
    import json

    from htd_core.options import check_int
    from htd_plugins.evaluators import build_encoder, encoder_spec_name
    from htd_plugins.slide_synthesis.api import output_paths

    if patch_size is not None:  # None is the window side; 0 never means it
        check_int(patch_size, "seam_report: patch_size", 1)
    check_int(max_patches, "seam_report: max_patches", 1)
    check_int(repeats, "seam_report: repeats", 1)
    check_int(seed, "seam_report: seed", 0)
    single = isinstance(slides, str | Path)
    paths = [Path(slides)] if single else [Path(s) for s in slides]
    reports: dict[str, Any] = {}
    sets: dict[str, tuple[list[np.ndarray], ...]] = {}  # straddling, centred, other centred
    for path in paths:
        manifest = json.loads(output_paths(path)["manifest"].read_text())
        image = read_level0(path)
        rows, cols = manifest_edges(manifest)
        size = int(patch_size or manifest["windows"]["side_px"])
        straddling, centred = seam_patches(image, rows, cols, size)
        n = min(len(straddling), len(centred) // 2, max_patches)
        if reference is not None:
            n = min(n, len(reference) // 2)
        order = np.random.default_rng(seed + 1).permutation(len(centred)).tolist()
        sets[path.name] = (
            subsample(straddling, n, seed),
            [centred[i] for i in sorted(order[:n])],
            [centred[i] for i in sorted(order[n : 2 * n])],
        )
        reports[path.name] = {"gradient": gradient_ratio(image, rows, cols), "fd": {}}
    draws: dict[int, list[tuple[list[int], list[int]]]] = {}  # N -> repeats of index halves
    if reference is not None:
        for a, *_ in sets.values():
            draws[len(a)] = [
                _halves(len(reference), reference_groups, len(a), seed + 10 + r)
                for r in range(repeats)
            ]
    needed = sorted({i for d in draws.values() for pair in d for half in pair for i in half})
    for spec in encoders:
        encoder = build_encoder(spec)
        feats = embed(encoder, [reference[i] for i in needed]) if needed else []
        real = dict(zip(needed, feats, strict=True))
        for name, (a, b, c) in sets.items():
            fa, fb, fc = embed(encoder, a), embed(encoder, b), embed(encoder, c)
            entry: dict[str, Any] = {
                "n": len(a),
                "straddling_vs_centred": features_fd(fa, fb),
                "centred_vs_centred": features_fd(fc, fb),
            }
            if reference is not None:
                entry["real_vs_real"] = [
                    features_fd(np.stack([real[k] for k in i]), np.stack([real[k] for k in j]))
                    for i, j in draws[len(a)]
                ]
            reports[name]["fd"][encoder_spec_name(spec)] = entry
    return reports[paths[0].name] if single else reports


def _halves(
    count: int, groups: Sequence[Any] | None, n: int, seed: int
) -> tuple[list[int], list[int]]:
    """Indices of two disjoint sets of ``n`` of ``count`` items; with ``groups``, no group in
    both."""
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(count).tolist()
        return order[:n], order[n : 2 * n]
    names = sorted(set(groups), key=str)
    half = {names[j]: k % 2 for k, j in enumerate(rng.permutation(len(names)))}
    pools = [[i for i, g in enumerate(groups) if half[g] == h] for h in (0, 1)]
    if min(len(p) for p in pools) < n:
        raise InputError(
            f"the reference sources split into halves of {[len(p) for p in pools]} "
            f"patches; {n} per half are needed: give more reference patches"
        )
    a, b = (sorted(rng.permutation(p)[:n].tolist()) for p in pools)
    return a, b
