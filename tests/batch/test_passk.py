from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from orchestrator.batch.passk import mean_pass_at_k, pass_at_k


def exact(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 200])
def test_matches_the_exact_binomial_formula(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), abs=1e-12)


def test_edges_and_large_n() -> None:
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert 0.0 < pass_at_k(100_000, 1, 100) < 1.0  # no overflow, no factorials
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 6)


def test_mean_only_for_k_every_task_allows() -> None:
    result = mean_pass_at_k({"a": (10, 5), "b": (3, 0)}, [1, 3, 10])
    assert set(result) == {1, 3}
    assert result[1] == pytest.approx((0.5 + 0.0) / 2)
