"""Clusters of bucket edges: connected components whose root is the smallest member (the document that survives)."""
import numpy as np
import pytest

from data_pipeline.dedup.near_dedup import components


def reference_roots(u: np.ndarray, v: np.ndarray) -> dict[int, int]:
    """Every node of an edge mapped to the smallest node of its component, by plain repeated relaxation."""
    root = {int(x): int(x) for x in np.concatenate([u, v]).tolist()}
    changed = True
    while changed:
        changed = False
        for a, b in zip(u.tolist(), v.tolist()):
            low = min(root[a], root[b])
            for x in (a, b):
                if root[x] != low:
                    root[x], changed = low, True
    return root


def test_smallest_member_is_root():
    nodes, roots = components(np.array([5, 9, 7, 8]), np.array([9, 3, 8, 9]))
    assert dict(zip(nodes.tolist(), roots.tolist())) == {3: 3, 5: 3, 7: 3, 8: 3, 9: 3}
    nodes, roots = components(np.array([20]), np.array([11]))
    assert dict(zip(nodes.tolist(), roots.tolist())) == {11: 11, 20: 11}


def test_chain_disjoint_and_empty():
    nodes, roots = components(np.array([10, 11, 12, 40]), np.array([11, 12, 13, 30]))
    assert dict(zip(nodes.tolist(), roots.tolist())) == {10: 10, 11: 10, 12: 10, 13: 10, 30: 30, 40: 30}
    nodes, roots = components(np.array([], np.int64), np.array([], np.int64))
    assert nodes.size == 0 and roots.size == 0
    with pytest.raises(ValueError, match="differ in length"):
        components(np.array([1, 2]), np.array([3]))


def test_repeated_edges_and_self_loops():
    """The same pair found in many bands (here 300 times) and a document linked to itself are one edge each."""
    u = np.r_[np.full(300, 2**33 + 4), [7]]
    v = np.r_[np.full(300, 2**32 + 1), [7]]
    nodes, roots = components(u, v)
    assert dict(zip(nodes.tolist(), roots.tolist())) == {7: 7, 2**32 + 1: 2**32 + 1, 2**33 + 4: 2**32 + 1}


def test_random_graphs_match_reference():
    rng = np.random.default_rng(0)
    for n_nodes, n_edges in [(50, 30), (1000, 900), (5000, 2000)]:
        ids = rng.choice(10**12, size=n_nodes, replace=False)
        u, v = ids[rng.integers(0, n_nodes, n_edges)], ids[rng.integers(0, n_nodes, n_edges)]
        nodes, roots = components(u, v)
        assert nodes.tolist() == sorted(set(u.tolist()) | set(v.tolist()))
        assert dict(zip(nodes.tolist(), roots.tolist())) == reference_roots(u, v)
