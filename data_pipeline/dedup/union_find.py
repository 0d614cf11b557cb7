"""Union-find that keeps the smallest element of each set as its root (BigCode's rule: the smallest id survives).

`UnionFind` is the plain incremental structure; `components(u, v)` does the same for a whole edge list at once with
numpy (hooking plus pointer jumping), which is what clustering millions of bucket edges needs.
"""
from __future__ import annotations

from typing import Hashable, Iterable

import numpy as np


class UnionFind:
    """Disjoint sets over hashable, ordered elements; `find(x)` returns the smallest member of x's set."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, x: Hashable) -> Hashable:
        parent = self.parent
        root = parent.setdefault(x, x)
        while root != parent[root]:
            root = parent[root]
        while x != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, x: Hashable, y: Hashable) -> Hashable:
        rx, ry = self.find(x), self.find(y)
        if rx == ry:
            return rx
        small, large = (rx, ry) if rx < ry else (ry, rx)
        self.parent[large] = small
        return small

    def union_all(self, pairs: Iterable[tuple[Hashable, Hashable]]) -> None:
        for x, y in pairs:
            self.union(x, y)

    def roots(self) -> dict[Hashable, Hashable]:
        """Every element seen, mapped to its root."""
        return {x: self.find(x) for x in list(self.parent)}


def components(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the graph with edges (u[i], v[i]) over int64 node ids.

    Returns (nodes, roots): the sorted distinct nodes that appear in an edge, and for each the smallest node of its
    component. Nodes are relabelled 0..n-1 in sorted order, so "smallest label" is "smallest id".
    """
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    if u.shape != v.shape:
        raise ValueError(f"edge arrays differ in length: {u.shape} vs {v.shape}")
    if u.size == 0:
        empty = np.empty(0, np.int64)
        return empty, empty
    nodes, labels = np.unique(np.concatenate([u, v]), return_inverse=True)
    eu, ev = labels[: len(u)], labels[len(u) :]
    parent = np.arange(len(nodes), dtype=np.int64)
    while True:
        pu, pv = parent[eu], parent[ev]
        lo, hi = np.minimum(pu, pv), np.maximum(pu, pv)
        differ = lo != hi
        if not differ.any():
            break
        # Hook: each root that touches a smaller root points to the smallest such root. Parents only ever decrease,
        # and every parent is <= its node, so there are no cycles.
        np.minimum.at(parent, hi[differ], lo[differ])
        while True:  # pointer jumping until every node points at a root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return nodes, nodes[parent]
