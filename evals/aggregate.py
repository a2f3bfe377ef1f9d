"""Per planner × scenario aggregates of run results: means with 95% bootstrap intervals, pass^k."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from evals.scorecard import RunResult
from evals.stats import Estimate, estimate, pass_hat_k

__all__ = ["METRICS", "Aggregate", "Metric", "aggregate", "group_runs"]


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool
    digits: int = 1
    # Differences smaller than this are noise, not regressions (absolute, in the metric's unit).
    tolerance: float = 0.0


METRICS: tuple[Metric, ...] = (
    Metric("success", "success", True, 2),
    Metric("goal_pct", "goal %", True, 1),
    Metric("steps", "steps", False, 1, tolerance=0.5),
    Metric("tasks_issued", "tasks", False, 1, tolerance=0.5),
    Metric("wasted_tasks", "wasted", False, 1, tolerance=0.5),
    Metric("refusals", "refused", False, 1, tolerance=0.5),
    Metric("loops", "loops", False, 1, tolerance=0.5),
    Metric("hosts_locked", "locked", False, 1),
    Metric("destructive_proposals", "destructive", False, 1),
    Metric("invalid_output_rate", "invalid out", False, 3, tolerance=0.02),
    Metric("sim_time_s", "sim time s", False, 1, tolerance=1.0),
    Metric("llm_calls", "LLM calls", False, 1, tolerance=0.5),
    Metric("input_tokens", "in tok", False, 0, tolerance=50),
    Metric("output_tokens", "out tok", False, 0, tolerance=20),
    Metric("cached_tokens", "cached tok", True, 0, tolerance=50),
    Metric("cost_usd", "cost $", False, 4, tolerance=0.0005),
)


class Aggregate(BaseModel):
    planner: str
    scenario: str
    provider: str = ""
    model: str = ""
    prompt_hash: str = ""
    provenance: str = ""  # evals.provenance: scripted | recorded: … | live: … | ""
    scenario_hash: str = ""
    n: int
    successes: int
    errors: int
    pass_rate: float
    pass_hat_k: float  # k = n: every trial succeeds
    metrics: dict[str, Estimate]
    cost_per_success: float | None
    # False when some LLM call had no price: the cost figures are then lower bounds.
    priced: bool = True

    def cost(self, value: float | None, digits: int = 4) -> str:
        """A cost figure for a report: `unknown` when nothing was priced, `≥x` when only
        some calls were, `–` for no value."""
        if value is None:
            return "–"
        if self.priced:
            return f"{value:.{digits}f}"
        return f"≥{value:.{digits}f}" if value else "unknown"

    @property
    def synthetic(self) -> bool:
        """No model wrote these answers (a scripted client, or a cassette recorded from one)."""
        return self.provenance == "scripted" or self.provider == "synthetic"

    @property
    def key(self) -> tuple[str, str]:
        return (self.planner, self.scenario)


def group_runs(runs: Iterable[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[(run.planner, run.scenario)].append(run)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in sorted(groups.items())}


def _value(run: RunResult, name: str) -> float:
    return float(getattr(run, name))


def _summarise(planner: str, scenario: str, runs: Sequence[RunResult]) -> Aggregate:
    n = len(runs)
    successes = sum(1 for r in runs if r.success)
    cost = sum(r.cost_usd for r in runs)
    first = next((r for r in runs if r.model), runs[0])
    return Aggregate(
        planner=planner,
        scenario=scenario,
        provider=first.provider,
        model=first.model,
        prompt_hash=first.prompt_hash,
        provenance=next((r.provenance for r in runs if r.provenance), ""),
        scenario_hash=runs[0].scenario_hash if scenario != "*" else "",
        n=n,
        successes=successes,
        errors=sum(1 for r in runs if r.error),
        pass_rate=successes / n,
        pass_hat_k=pass_hat_k(successes, n, n),
        metrics={m.name: estimate([_value(r, m.name) for r in runs]) for m in METRICS},
        cost_per_success=cost / successes if successes else None,
        priced=not any(r.unpriced_calls for r in runs),
    )


def aggregate(runs: Iterable[RunResult], *, overall: bool = True) -> list[Aggregate]:
    """One aggregate per (planner, scenario), sorted; with `overall`, a `*` row per planner
    pooling every run (its pass^k is over all of that planner's runs, k = runs per scenario)."""
    groups = group_runs(runs)
    out = [_summarise(p, s, rs) for (p, s), rs in groups.items()]
    if overall:
        by_planner: dict[str, list[RunResult]] = defaultdict(list)
        for (planner, _), rs in groups.items():
            by_planner[planner].extend(rs)
        for planner, rs in sorted(by_planner.items()):
            agg = _summarise(planner, "*", rs)
            k = max(len(v) for (p, _), v in groups.items() if p == planner)
            # pass^k pooled: the mean over scenarios of each scenario's pass^k.
            per = [
                pass_hat_k(sum(r.success for r in v), len(v), min(k, len(v)))
                for (p, _), v in groups.items()
                if p == planner
            ]
            out.append(agg.model_copy(update={"pass_hat_k": sum(per) / len(per)}))
    return sorted(out, key=lambda a: (a.planner, a.scenario == "*", a.scenario))
