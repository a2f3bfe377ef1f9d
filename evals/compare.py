"""Comparing two result sets scenario by scenario, and flagging regressions.

Runs are paired by (planner, scenario, seed): the same seed means the same simulated lab, so
the per-seed difference removes the lab's own variance. For each metric the mean difference
gets a 95% bootstrap interval; a regression is a difference whose whole interval lies on the
worse side, beyond the metric's noise tolerance. Without common seeds the new mean is compared
with the old interval instead. A scenario present in OLD but not in NEW, or a new run that
errored, is reported too (the latter counts as a regression).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from evals.aggregate import METRICS, Metric, group_runs
from evals.scorecard import RunResult
from evals.stats import Estimate, bootstrap_ci, estimate

__all__ = ["Comparison", "Finding", "compare"]

Verdict = Literal["regression", "improvement", "same"]


class Finding(BaseModel):
    planner: str
    scenario: str
    metric: str
    old: Estimate
    new: Estimate
    delta: Estimate
    paired: bool
    verdict: Verdict


class Comparison(BaseModel):
    findings: list[Finding] = []
    missing: list[str] = []  # planner/scenario in OLD only
    added: list[str] = []  # planner/scenario in NEW only
    changed_scenarios: list[str] = []  # same name, different content hash
    errors: list[str] = []  # new runs that errored

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    @property
    def improvements(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "improvement"]

    @property
    def failed(self) -> bool:
        return bool(self.regressions or self.errors)


def _verdict(metric: Metric, low: float, high: float) -> Verdict:
    tol = metric.tolerance
    worse_low, worse_high = (-high, -low) if metric.higher_is_better else (low, high)
    # In "worse" orientation: positive means worse.
    if worse_low > tol:
        return "regression"
    if worse_high < -tol:
        return "improvement"
    return "same"


def _compare_metric(metric: Metric, old: Sequence[RunResult], new: Sequence[RunResult]) -> Finding:
    def values(runs: Sequence[RunResult]) -> list[float]:
        return [float(getattr(r, metric.name)) for r in runs]

    old_by_seed = {r.seed: r for r in old}
    pairs = [(old_by_seed[r.seed], r) for r in new if r.seed in old_by_seed]
    old_est, new_est = estimate(values(old)), estimate(values(new))
    if pairs:
        diffs = [float(getattr(n, metric.name)) - float(getattr(o, metric.name)) for o, n in pairs]
        low, high = bootstrap_ci(diffs)
        delta = Estimate(mean=sum(diffs) / len(diffs), low=low, high=high, n=len(diffs))
        verdict = _verdict(metric, low, high)
    else:
        shift = new_est.mean - old_est.mean
        delta = Estimate(
            mean=shift,
            low=new_est.mean - old_est.high,
            high=new_est.mean - old_est.low,
            n=0,
        )
        verdict = _verdict(metric, delta.low, delta.high)
    return Finding(
        planner=new[0].planner,
        scenario=new[0].scenario,
        metric=metric.name,
        old=old_est,
        new=new_est,
        delta=delta,
        paired=bool(pairs),
        verdict=verdict,
    )


def compare(old: Sequence[RunResult], new: Sequence[RunResult]) -> Comparison:
    old_groups, new_groups = group_runs(old), group_runs(new)
    out = Comparison()
    out.missing = [f"{p}/{s}" for p, s in old_groups if (p, s) not in new_groups]
    out.added = [f"{p}/{s}" for p, s in new_groups if (p, s) not in old_groups]
    out.errors = [f"{r.planner}/{r.scenario} seed {r.seed}: {r.error}" for r in new if r.error]
    for key, new_runs in new_groups.items():
        old_runs = old_groups.get(key)
        if not old_runs:
            continue
        if old_runs[0].scenario_hash != new_runs[0].scenario_hash:
            out.changed_scenarios.append(f"{key[0]}/{key[1]}")
        for metric in METRICS:
            out.findings.append(_compare_metric(metric, old_runs, new_runs))
    return out
