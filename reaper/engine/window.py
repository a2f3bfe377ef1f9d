"""How many of a mission's tasks may be out at once: the lab's `max_in_flight` at most, fewer
while results queue on the engine.

A result that arrives while the engine applies a batch waits for that batch, then for its own:
its latency is about two of the engine's busy periods, and a busy period grows with the batch,
which the window bounds. A window large enough for slow hosts (results come seldom, the engine
idles) makes results queue behind each other on fast ones; one small enough for fast hosts
starves slow ones (in flight = throughput x task time).

So the window adapts to the latency the engine measures, as a TCP congestion window adapts to
delay (Vegas) or Netflix's concurrency-limits to latency: it starts small and doubles while
results keep within the target (slow start); over the target it shrinks in proportion
(multiplicative decrease, once per round: the next batch was sent under the old size); under it,
while tasks wait for a slot, it grows by an eighth a round (increase). It never shrinks below
the size at which a cycle's fixed cost (its round trips) is twice its work on the results, and
climbs back to it if it started lower: below that, latency has all but stopped falling with the
window and throughput goes on falling. A remote database's round trip is not the window's to
fix.

Pure: the engine measures and calls `observe` once per cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["CostFit", "DispatchWindow"]

# Slow start begins here (or at the cap, if lower).
START = 64
# Floor while the cost split is unknown, and the least the fit may set.
MIN_FLOOR = 4


@dataclass(slots=True)
class CostFit:
    """busy ≈ fixed + per_result x batch, fitted to recent cycles by exponentially weighted
    least squares (weight `alpha` for the newest cycle)."""

    alpha: float = 0.1
    cycles: int = 0
    _b: float = 0.0
    _y: float = 0.0
    _bb: float = 0.0
    _by: float = 0.0
    fixed_s: float | None = None
    per_result_s: float | None = None

    def add(self, batch: int, busy_s: float) -> None:
        a = 1.0 if self.cycles == 0 else self.alpha
        self.cycles += 1
        self._b += a * (batch - self._b)
        self._y += a * (busy_s - self._y)
        self._bb += a * (batch * batch - self._bb)
        self._by += a * (batch * busy_s - self._by)
        var = self._bb - self._b * self._b
        # Batches of one size say nothing about the split: keep the last estimate.
        if var > 0.01 * self._b * self._b and var > 1.0:
            slope = (self._by - self._b * self._y) / var
            if slope > 0:
                self.per_result_s = slope
                self.fixed_s = max(0.0, self._y - slope * self._b)

    def balance(self) -> float | None:
        """The window at which a cycle's fixed cost is twice its per-result work (a cycle
        applies about half the window: c x W/2)."""
        if self.fixed_s is None or self.per_result_s is None:
            return None
        return self.fixed_s / self.per_result_s


@dataclass(slots=True)
class DispatchWindow:
    """The window's size, between a floor and `cap`; `target_s` None keeps it at `cap`."""

    cap: int
    target_s: float | None = None
    size: int = field(init=False)
    slow_start: bool = field(init=False, default=True)
    fit: CostFit = field(init=False, default_factory=CostFit)
    _since_decrease: int = field(init=False, default=0)  # results since the last decrease
    _growth: float = field(init=False, default=0.0)  # growth not yet a whole slot

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise ValueError("the window's cap must be at least 1")
        if self.target_s is not None and self.target_s <= 0:
            self.target_s = None
        self.size = self.cap if self.target_s is None else min(self.cap, START)

    @property
    def floor(self) -> int:
        balance = self.fit.balance()
        least = MIN_FLOOR if balance is None else max(MIN_FLOOR, math.ceil(balance))
        return min(self.cap, least)

    def observe(self, *, latency_s: float, batch: int, busy_s: float, limited: bool) -> int:
        """One engine cycle: the worst latency of the results it applied (as the engine can
        tell: from when the earliest of them could have arrived to the commit), how many,
        the engine's busy time on them, and whether tasks waited for a slot. Returns the new
        size."""
        self.fit.add(batch, busy_s)
        target = self.target_s
        if target is None:
            return self.size
        # A round: as many results as the window holds. Results of tasks sent before a
        # decrease say nothing about it: the next decrease waits a round.
        self._since_decrease += batch
        if latency_s > target:
            if self._since_decrease < self.size:
                return self.size
            shrunk = int(self.size * max(0.5, target / latency_s))
            # Below the floor the latency is not the window's: climb to the floor instead.
            self.size = min(self.cap, max(min(self.floor, self.size * 2), shrunk))
            self.slow_start = False
            self._since_decrease = 0
            self._growth = 0.0
        elif limited:
            if latency_s > target / 2:
                self.slow_start = False  # near the target: stop doubling before overshooting
            # Per result: slow start doubles the window in a round, then it grows an eighth.
            step = batch if self.slow_start else batch / 8
            self._growth += step
            whole = int(self._growth)
            self._growth -= whole
            self.size = min(self.cap, self.size + whole)
        return self.size
