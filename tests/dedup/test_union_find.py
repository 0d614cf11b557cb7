"""Union-find keeps the smallest member; the vectorised components agree with it on random graphs."""
import numpy as np

from data_pipeline.dedup.union_find import UnionFind, components


def test_union_find_smallest_root():
    uf = UnionFind()
    uf.union_all([(5, 9), (9, 3), (7, 8), (8, 9)])
    assert {x: uf.find(x) for x in (3, 5, 7, 8, 9)} == {3: 3, 5: 3, 7: 3, 8: 3, 9: 3}
    uf.union(20, 11)
    assert uf.find(20) == 11 and uf.find(11) == 11


def test_components_chain_and_disjoint():
    nodes, roots = components(np.array([10, 11, 12, 40]), np.array([11, 12, 13, 30]))
    assert dict(zip(nodes.tolist(), roots.tolist())) == {10: 10, 11: 10, 12: 10, 13: 10, 30: 30, 40: 30}
    nodes, roots = components(np.array([], np.int64), np.array([], np.int64))
    assert nodes.size == 0 and roots.size == 0


def test_components_match_union_find_on_random_graphs():
    rng = np.random.default_rng(0)
    for n_nodes, n_edges in [(50, 30), (1000, 900), (5000, 2000)]:
        ids = rng.choice(10**12, size=n_nodes, replace=False)
        u, v = ids[rng.integers(0, n_nodes, n_edges)], ids[rng.integers(0, n_nodes, n_edges)]
        nodes, roots = components(u, v)
        uf = UnionFind()
        uf.union_all(zip(u.tolist(), v.tolist()))
        assert dict(zip(nodes.tolist(), roots.tolist())) == uf.roots()
