"""Draw ``glands.geojson``: a QuPath-style layout of colon glands on a 1024 x 1024 px canvas
at 2.25 um/px (2.3 mm square), for ``glas_slide.py``.

Glands are irregular closed outlines (a perturbed ellipse each, 150-320 um long, some bent),
labelled ``gland``; everything else is left unannotated and filled with ``non_gland`` when
the layout is read (``--fill non_gland``). The same seed draws the same file; it is kept in
the repository, so rerunning this is only needed to change the layout.

    python examples/slide_synthesis/draw_layout.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE, MPP = 1024, 2.25


def gland(rng: np.random.Generator, cx: float, cy: float) -> list[list[float]]:
    """A closed ring of 48 points: an ellipse with a low-frequency wobble and a bend."""
    a, b = rng.uniform(34, 72), rng.uniform(22, 40)  # semi-axes in px (75-160 um)
    theta, bend = rng.uniform(0, np.pi), rng.uniform(-0.35, 0.35)
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + 0.12 * np.sin(3 * t + rng.uniform(0, 6)) + 0.06 * np.sin(5 * t + rng.uniform(0, 6))
    x, y = a * np.cos(t) * wobble, b * np.sin(t) * wobble
    y = y + bend * x**2 / a  # a banana-shaped bend, as glands cut obliquely look
    xr = cx + x * np.cos(theta) - y * np.sin(theta)
    yr = cy + x * np.sin(theta) + y * np.cos(theta)
    ring = np.clip(np.stack([xr, yr], 1), 0, SIZE).round(1).tolist()
    return ring + ring[:1]


def main(seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    centres: list[tuple[float, float]] = []
    while len(centres) < 90:  # centres at least 230 um apart
        c = tuple(rng.uniform(40, SIZE - 40, 2))
        if all((c[0] - x) ** 2 + (c[1] - y) ** 2 > 102**2 for x, y in centres):
            centres.append(c)
        if rng.random() < 0.002:
            break
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [gland(rng, cx, cy)]},
            "properties": {"objectType": "annotation", "classification": {"name": "gland"}},
        }
        for cx, cy in centres
    ]
    out = HERE / "glands.geojson"
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}) + "\n")
    print(f"{out}: {len(features)} glands on {SIZE} x {SIZE} px at {MPP} um/px")
    return out


if __name__ == "__main__":
    main()
