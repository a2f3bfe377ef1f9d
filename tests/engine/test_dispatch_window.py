"""The adaptive dispatch window (`reaper.engine.window`): pure, fed one engine cycle at a time."""

from __future__ import annotations

import pytest

from reaper.engine.window import START, CostFit, DispatchWindow


def _cycle(w: DispatchWindow, latency_ms: float, batch: int = 10, *, limited: bool = True) -> int:
    return w.observe(
        latency_s=latency_ms / 1000, batch=batch, busy_s=latency_ms / 2000, limited=limited
    )


def test_without_a_target_the_window_is_the_cap_whatever_the_latency():
    w = DispatchWindow(cap=256, target_s=None)
    assert w.size == 256
    for _ in range(20):
        assert _cycle(w, 900.0, 200) == 256
    assert DispatchWindow(cap=256, target_s=0.0).size == 256  # 0 turns it off too


def test_slow_start_doubles_a_round_while_tasks_wait_and_stops_at_the_cap():
    w = DispatchWindow(cap=1000, target_s=0.025)
    assert w.size == START
    _cycle(w, 2.0, batch=START)  # a round of results, well under the target
    assert w.size == 2 * START
    for _ in range(10):
        _cycle(w, 2.0, batch=w.size)
    assert w.size == 1000
    assert DispatchWindow(cap=8, target_s=0.025).size == 8  # a cap below the start


def test_the_window_grows_only_while_it_holds_tasks_back():
    w = DispatchWindow(cap=1000, target_s=0.025)
    for _ in range(10):
        _cycle(w, 2.0, batch=50, limited=False)
    assert w.size == START


def test_over_the_target_it_shrinks_in_proportion_at_most_by_half_and_once_a_round():
    w = DispatchWindow(cap=256, target_s=0.025)
    for _ in range(3):
        _cycle(w, 5.0, batch=w.size)
    assert w.size == 256
    _cycle(w, 50.0, batch=256)
    assert w.size == 128  # 2x over: halved
    _cycle(w, 50.0, batch=100)  # sent before the decrease: no second cut yet
    assert w.size == 128
    _cycle(w, 40.0, batch=100)  # a round (128 results) since the cut
    assert w.size == 80  # 128 x 25/40
    _cycle(w, 400.0, batch=200)
    assert w.size == 40  # never more than half at once


def test_after_a_decrease_it_grows_by_an_eighth_a_round_not_by_doubling():
    w = DispatchWindow(cap=1000, target_s=0.025)
    _cycle(w, 5.0, batch=64)
    _cycle(w, 50.0, batch=128)
    assert w.size == 64 and not w.slow_start
    _cycle(w, 10.0, batch=64)  # a round under the target
    assert w.size == 72


def test_slow_start_ends_near_the_target_before_overshooting_it():
    w = DispatchWindow(cap=1000, target_s=0.025)
    _cycle(w, 20.0, batch=64)
    assert not w.slow_start and w.size == 72


def test_the_cost_fit_splits_fixed_from_per_result_cost():
    fit = CostFit()
    for batch in [10, 200, 50, 120, 5, 250, 80] * 5:
        fit.add(batch, 0.004 + 0.0001 * batch)  # 4 ms a cycle, 100 µs a result
    assert fit.fixed_s == pytest.approx(0.004, rel=1e-6)
    assert fit.per_result_s == pytest.approx(0.0001, rel=1e-6)
    assert fit.balance() == pytest.approx(40)


def test_one_batch_size_says_nothing_about_the_split():
    fit = CostFit()
    for _ in range(20):
        fit.add(100, 0.01)
    assert fit.fixed_s is None and fit.balance() is None


def _engine(w: DispatchWindow, fixed_s: float, per_result_s: float, cycles: int) -> list[float]:
    """A saturated engine: each cycle applies about half the window, and a result waits out
    the cycle before its own. Returns the latencies."""
    latencies = []
    prev = fixed_s
    for _ in range(cycles):
        batch = max(1, w.size // 2)
        busy = fixed_s + per_result_s * batch
        latencies.append(prev + busy)
        w.observe(latency_s=prev + busy, batch=batch, busy_s=busy, limited=True)
        prev = busy
    return latencies


def test_a_saturated_engine_settles_near_the_target():
    w = DispatchWindow(cap=1024, target_s=0.025)
    latencies = _engine(w, fixed_s=0.002, per_result_s=0.0001, cycles=400)
    settled = latencies[200:]
    assert max(settled) < 0.025 * 1.3
    assert sum(settled) / len(settled) > 0.025 * 0.6  # not starved far below it
    assert w.size < 1024


def test_fixed_costs_the_window_cannot_fix_do_not_starve_it():
    # A remote store: 40 ms a cycle whatever the batch. Over the target at any size; the
    # window stops at the balance point instead of shrinking to nothing.
    w = DispatchWindow(cap=1024, target_s=0.025)
    fixed, per_result = 0.040, 0.0001
    for batch in [5, 200, 60, 300, 20]:  # varied batches let the fit see the split
        w.observe(latency_s=0.1, batch=batch, busy_s=fixed + per_result * batch, limited=False)
    _engine(w, fixed_s=fixed, per_result_s=per_result, cycles=200)
    assert w.size >= 400  # the balance point: fixed / per-result = 400


def test_the_cap_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        DispatchWindow(cap=0, target_s=0.025)
