import math

import pytest

from evals.passk import mean_pass_at_k, pass_at_k


def test_worked_examples():
    # n=1: pass@1 is just the outcome.
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    # pass@1 equals the fraction correct: 3 of 10.
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=200, c=10, k=100: the closed form with binomials.
    assert pass_at_k(200, 10, 100) == pytest.approx(1 - math.comb(190, 100) / math.comb(200, 100))
    # Fewer wrong samples than k: any draw of k holds a correct one.
    assert pass_at_k(10, 8, 3) == 1.0
    assert pass_at_k(10, 0, 10) == 0.0


def test_mean_and_k_too_large():
    result = mean_pass_at_k([10, 10], [3, 0], [1, 10, 100])
    assert result["pass@1"] == pytest.approx(0.15)
    assert result["pass@10"] == pytest.approx(0.5)
    assert result["pass@100"] is None


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 5)
