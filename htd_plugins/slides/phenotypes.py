"""The merge tree over phenotype centroids: nested granularities k in {5, 10, 20, 50, 100}.

Discovery builds it (``htd discover cluster``) and writes it beside its pseudo maps; the
``curriculum`` sampler reads it back to coarsen those maps. Both use this one definition.

Phenotypes (the leaves) are merged bottom-up by *weighted* Ward linkage: the merge cost of two
groups A, B is the increase of within-group sum of squares, n_A n_B / (n_A + n_B) |c_A - c_B|^2,
with n the number of embeddings each phenotype holds. Level k is the state after P - k merges,
so every level is a coarsening of the finer ones (nesting is exact, not approximate), and the
same tree serves every slide (granularities are consistent across slides).

Leaves are renumbered in dendrogram order, so each group at every level is a contiguous range
of leaf ids, and group ids increase with their first leaf. Class ``i`` at level k is named
``phenotype_{i:02d}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from htd_core.errors import InputError

DEFAULT_LEVELS = (5, 10, 20, 50, 100)

# tab20 (matplotlib), readable on H&E; more classes get golden-angle hues.
_TAB20 = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]  # fmt: skip


def palette(k: int) -> list[tuple[int, int, int]]:
    """``k`` distinct RGB colours."""
    if k <= len(_TAB20):
        return _TAB20[:k]
    import colorsys

    out = []
    for i in range(k):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(h, 0.55 + 0.4 * (i % 3) / 2, 0.65 + 0.3 * (i % 2))
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def class_names(k: int) -> tuple[str, ...]:
    """Names of ``k`` phenotypes, ``phenotype_00`` ... (zero-padded to at least two digits)."""
    width = max(2, len(str(k - 1)))
    return tuple(f"phenotype_{i:0{width}d}" for i in range(k))


def ward_linkage(centers: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """scipy-format linkage (P-1 x 4) of weighted Ward merges; distance = sqrt(2 * cost)."""
    p = len(centers)
    c = centers.astype(np.float64)
    w = np.maximum(counts.astype(np.float64), 1.0)
    active = list(range(p))
    ids = list(range(p))  # scipy id of each active slot
    sizes = [1] * p
    rows = []
    for step in range(p - 1):
        a = c[active]
        wa = w[active]
        sq = (a * a).sum(1)
        d2 = np.maximum(sq[:, None] - 2 * a @ a.T + sq[None], 0)
        cost = wa[:, None] * wa[None] / (wa[:, None] + wa[None]) * d2
        np.fill_diagonal(cost, np.inf)
        i, j = np.unravel_index(np.argmin(cost), cost.shape)
        i, j = min(i, j), max(i, j)
        si, sj = active[i], active[j]
        merged = (w[si] * c[si] + w[sj] * c[sj]) / (w[si] + w[sj])
        rows.append([ids[i], ids[j], np.sqrt(2 * cost[i, j]), sizes[i] + sizes[j]])
        c[si], w[si] = merged, w[si] + w[sj]
        ids[i], sizes[i] = p + step, sizes[i] + sizes[j]
        del active[j], ids[j], sizes[j]
    return np.asarray(rows, np.float64).reshape(-1, 4)


def cut(linkage: np.ndarray, n_leaves: int, k: int) -> np.ndarray:
    """Group of each leaf after the first ``n_leaves - k`` merges (arbitrary group ids)."""
    parent = list(range(2 * n_leaves - 1))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for step in range(n_leaves - k):
        a, b = int(linkage[step, 0]), int(linkage[step, 1])
        parent[root(a)] = n_leaves + step
        parent[root(b)] = n_leaves + step
    return np.asarray([root(i) for i in range(n_leaves)], np.int64)


def leaf_order(linkage: np.ndarray, n_leaves: int) -> np.ndarray:
    """Leaves in dendrogram (left-to-right) order."""
    if n_leaves == 1:
        return np.zeros(1, np.int64)
    children = {n_leaves + i: (int(r[0]), int(r[1])) for i, r in enumerate(linkage)}
    order, stack = [], [2 * n_leaves - 2]
    while stack:
        node = stack.pop()
        if node < n_leaves:
            order.append(node)
        else:
            left, right = children[node]
            stack += [right, left]
    return np.asarray(order, np.int64)


@dataclass
class PhenotypeTree:
    """Leaves (phenotypes, in dendrogram order), the linkage, and leaf -> class per level."""

    linkage: np.ndarray
    levels: tuple[int, ...]
    groups: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def n_leaves(self) -> int:
        return len(self.linkage) + 1

    @classmethod
    def build(
        cls, centers: np.ndarray, counts: np.ndarray, levels: Sequence[int] = DEFAULT_LEVELS
    ) -> tuple[PhenotypeTree, np.ndarray]:
        """Tree over ``centers``; returns it and the leaf permutation (new leaf i = old
        ``perm[i]``) that puts leaves in dendrogram order."""
        p = len(centers)
        wanted = sorted({int(k) for k in levels})
        if not wanted or wanted[0] < 1:
            raise InputError(f"levels {list(levels)} must be positive integers")
        if wanted[0] > p:
            raise InputError(
                f"only {p} phenotypes exist but the coarsest level asked is k={wanted[0]}: "
                "use smaller levels or more data"
            )
        kept = tuple(sorted({k for k in wanted if k <= p} | ({p} if wanted[-1] >= p else set())))
        raw = ward_linkage(centers, counts)
        perm = leaf_order(raw, p)
        rank = np.empty(p, np.int64)
        rank[perm] = np.arange(p)
        linkage = raw.copy()
        for col in (0, 1):  # renumber leaves; internal node ids are unchanged
            ids = linkage[:, col].astype(np.int64)
            linkage[:, col] = np.where(ids < p, rank[np.minimum(ids, p - 1)], ids)
        tree = cls(linkage, kept)
        for k in kept:
            roots = cut(linkage, p, k)
            _, first = np.unique(roots, return_index=True)  # leaves are in order: first leaf
            order = {roots[i]: g for g, i in enumerate(sorted(first))}
            tree.groups[k] = np.asarray([order[r] for r in roots], np.int64)
        return tree, perm

    def check_level(self, k: int) -> None:
        if k not in self.groups:
            raise InputError(
                f"granularity k={k} is not in the merge tree; levels: {list(self.levels)}"
            )

    def coarsen(self, leaf_labels: np.ndarray, k: int) -> np.ndarray:
        """Class at level ``k`` of each leaf label (values outside the leaves pass through)."""
        self.check_level(k)
        labels = np.asarray(leaf_labels)
        valid = (labels >= 0) & (labels < self.n_leaves)
        out = labels.astype(np.int64, copy=True)
        out[valid] = self.groups[k][labels[valid]]
        return out

    def parent_map(self, fine: int, coarse: int) -> np.ndarray:
        """For each class at level ``fine``, its class at level ``coarse`` (nested)."""
        self.check_level(fine)
        self.check_level(coarse)
        out = np.full(fine, -1, np.int64)
        out[self.groups[fine]] = self.groups[coarse]
        return out

    def is_nested(self) -> bool:
        """True when every class at each level lies inside one class of every coarser level."""
        for fine in self.levels:
            for coarse in (k for k in self.levels if k < fine):
                pairs = np.unique(np.stack([self.groups[fine], self.groups[coarse]]), axis=1)
                if len(np.unique(pairs[0])) != pairs.shape[1]:
                    return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_leaves": self.n_leaves,
            "levels": list(self.levels),
            "linkage": self.linkage.tolist(),
            "groups": {str(k): v.tolist() for k, v in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhenotypeTree:
        linkage = np.asarray(data["linkage"], np.float64).reshape(-1, 4)
        groups = {int(k): np.asarray(v, np.int64) for k, v in data["groups"].items()}
        return cls(linkage, tuple(int(k) for k in data["levels"]), groups)
