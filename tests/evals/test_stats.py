from __future__ import annotations

import pytest

from evals.stats import bootstrap_ci, estimate, pass_at_k, pass_hat_k


def test_pass_hat_k_is_reliability_not_best_of() -> None:
    assert pass_hat_k(3, 3, 3) == 1.0
    assert pass_hat_k(2, 3, 3) == 0.0
    assert pass_hat_k(2, 3, 1) == pytest.approx(2 / 3)
    assert pass_hat_k(3, 4, 2) == pytest.approx(3 / 6)
    assert pass_at_k(1, 3, 3) == 1.0
    with pytest.raises(ValueError):
        pass_hat_k(1, 2, 3)


def test_bootstrap_is_deterministic_and_brackets_the_mean() -> None:
    values = [3.0, 5.0, 9.0, 4.0]
    low, high = bootstrap_ci(values)
    assert (low, high) == bootstrap_ci(values)
    assert low <= sum(values) / 4 <= high
    assert low >= 3.0 and high <= 9.0
    assert bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    assert estimate([]).n == 0
