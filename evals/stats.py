"""Small statistics for few trials: means with percentile-bootstrap intervals, and pass^k.

Deterministic: the bootstrap draws from a `random.Random` seeded by the caller (default 0),
so the same results always give the same intervals.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from math import comb

from pydantic import BaseModel, ConfigDict

__all__ = ["Estimate", "bootstrap_ci", "estimate", "pass_at_k", "pass_hat_k"]

RESAMPLES = 2000


class Estimate(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean: float
    low: float
    high: float
    n: int

    def fmt(self, digits: int = 1) -> str:
        if self.n == 0:
            return "–"
        if self.low == self.high:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}–{self.high:.{digits}f}]"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def bootstrap_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean. With one value (or all equal) it is that
    value: few trials give wide or degenerate intervals, which is honest."""
    if not values:
        return (0.0, 0.0)
    if len(set(values)) == 1:
        return (float(values[0]), float(values[0]))
    rng = random.Random(seed)
    n = len(values)
    means = sorted(_mean([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1.0 - level) / 2
    low = means[int(tail * (resamples - 1))]
    high = means[int((1.0 - tail) * (resamples - 1))]
    return (low, high)


def estimate(values: Sequence[float], *, seed: int = 0) -> Estimate:
    if not values:
        return Estimate(mean=0.0, low=0.0, high=0.0, n=0)
    low, high = bootstrap_ci(values, seed=seed)
    return Estimate(mean=_mean(values), low=low, high=high, n=len(values))


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """pass^k: the chance that k trials drawn from these n *all* succeed (tau-bench's
    unbiased estimator C(c, k) / C(n, k)); a reliability figure, unlike pass@k."""
    if k < 1 or k > trials:
        raise ValueError(f"pass^k needs 1 <= k <= trials (k={k}, trials={trials})")
    return comb(successes, k) / comb(trials, k)


def pass_at_k(successes: int, trials: int, k: int) -> float:
    """pass@k: the chance that at least one of k trials drawn from these n succeeds."""
    if k < 1 or k > trials:
        raise ValueError(f"pass@k needs 1 <= k <= trials (k={k}, trials={trials})")
    return 1.0 - comb(trials - successes, k) / comb(trials, k)
