import numpy as np
import pytest

from refact_train.permutation import Permutation


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 65, 1000, 4097])
def test_is_a_bijection(n):
    perm = Permutation(seed=11, epoch=2, n=n)
    values = perm(np.arange(n))
    assert sorted(values.tolist()) == list(range(n))


def test_depends_on_seed_and_epoch_only():
    n = 5000
    a = Permutation(1, 0, n)(np.arange(n))
    assert np.array_equal(a, Permutation(1, 0, n)(np.arange(n)))
    assert (a != Permutation(2, 0, n)(np.arange(n))).mean() > 0.99
    assert (a != Permutation(1, 1, n)(np.arange(n))).mean() > 0.99
    assert (a == np.arange(n)).mean() < 0.01  # shuffled, not the identity


def test_large_n_needs_no_array():
    perm = Permutation(0, 0, 293_000_000)  # 1.2T tokens / 4096: evaluated per index, nothing of size n is built
    values = [perm.at(i) for i in range(1000)]
    assert len(set(values)) == 1000 and all(0 <= v < 293_000_000 for v in values)
    with pytest.raises(IndexError):
        perm.at(293_000_000)
