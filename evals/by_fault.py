"""The scorecard per fault type: for each `fault:KIND` of the desired-state suite, how each
planner did on the world (success, resources converged, collateral changes), what it spent
(tasks, virtual time) and its regret against the best planner of each scenario; the winner
of each fault type is the most successful planner, then the one that converged most of the
world, then the one with fewest tasks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from statistics import fmean

from pydantic import BaseModel, ConfigDict

from evals.provenance import SCRIPTED
from evals.scorecard import RunResult

__all__ = ["FaultRow", "fault_markdown", "fault_rows"]


class FaultRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    fault: str
    planner: str
    provenance: str
    prompt_hash: str
    runs: int
    successes: int
    converged_pct: float  # of the declared resources, over every run
    collateral: int  # resources fine at the start and not at the end, summed
    loops: int  # proposals refused as a loop (same failure, same fix, a third time), summed
    tasks: float  # mean per run
    sim_time_s: float  # mean virtual time per run
    # Mean over this fault's scenarios of (this planner's mean tasks − the best planner's
    # on that scenario); 0 for the best. Task count is the plan's cost the world pays.
    regret_tasks: float
    wins: bool = False


def _rank(runs: Sequence[RunResult]) -> tuple[float, float, float]:
    """Lower is better: succeed, else converge more of the world, then spend fewer tasks
    (so a planner that does nothing is never the best of a scenario nobody solves)."""
    declared = sum(r.world_resources or 0 for r in runs) or 1
    return (
        -sum(r.success for r in runs) / len(runs),
        -sum(r.world_converged or 0 for r in runs) / declared,
        fmean(r.tasks_issued for r in runs),
    )


# The planner whose run of a scenario is its proven right-fix plan (evals.right_fix): when it
# ran, regret is measured against its task count rather than the run's best planner's.
RIGHT_FIX = ("evals.right_fix:RightFix", "right-fix")


def fault_rows(results: Iterable[RunResult]) -> list[FaultRow]:
    by: dict[tuple[str, str, str], list[RunResult]] = defaultdict(list)
    for r in results:
        # A run that errored (a replay miss, a crash) is no evidence of how a planner does.
        if r.fault and r.world_resources is not None and r.error is None:
            by[(r.fault, r.scenario, r.planner)].append(r)
    best: dict[tuple[str, str], float] = {}
    for fault, scenario, _ in by:
        ours = [v for (f, s, _), v in by.items() if (f, s) == (fault, scenario)]
        right = [v for (f, s, p), v in by.items() if (f, s) == (fault, scenario) and p in RIGHT_FIX]
        reference = right[0] if right else min(ours, key=_rank)
        best[(fault, scenario)] = fmean(r.tasks_issued for r in reference)
    rows: list[FaultRow] = []
    for fault in sorted({f for f, _, _ in by}):
        planners = sorted({p for f, _, p in by if f == fault})
        for planner in planners:
            groups = {s: v for (f, s, p), v in by.items() if f == fault and p == planner}
            runs = [r for v in groups.values() for r in v]
            declared = sum(r.world_resources or 0 for r in runs)
            rows.append(
                FaultRow(
                    fault=fault,
                    planner=planner,
                    provenance=next((r.provenance for r in runs if r.provenance), ""),
                    prompt_hash=next((r.prompt_hash for r in runs if r.prompt_hash), ""),
                    runs=len(runs),
                    successes=sum(r.success for r in runs),
                    converged_pct=100.0 * sum(r.world_converged or 0 for r in runs) / declared
                    if declared
                    else 100.0,
                    collateral=sum(r.world_collateral or 0 for r in runs),
                    loops=sum(r.loops for r in runs),
                    tasks=fmean(r.tasks_issued for r in runs),
                    sim_time_s=fmean(r.sim_time_s for r in runs),
                    regret_tasks=fmean(
                        fmean(r.tasks_issued for r in v) - best[(fault, s)]
                        for s, v in groups.items()
                    ),
                )
            )
    return _mark_winners(rows)


def _mark_winners(rows: list[FaultRow]) -> list[FaultRow]:
    out = []
    for fault in dict.fromkeys(r.fault for r in rows):
        ours = [r for r in rows if r.fault == fault]

        def rank(r: FaultRow) -> tuple[float, float, float]:
            return (-r.successes / r.runs, -round(r.converged_pct, 6), round(r.tasks, 6))

        top = min(rank(r) for r in ours)
        # ties all win: a converger that retries differs from the rule one only on failures
        out += [r.model_copy(update={"wins": rank(r) == top}) for r in ours]
    return out


def fault_markdown(rows: Sequence[FaultRow]) -> list[str]:
    """The report section; empty when no run was of a desired-state fault scenario. Runs
    that errored are left out (the scorecard and stderr list them)."""
    if not rows:
        return []
    head = "| fault | planner | answers | prompt | success | converged % | collateral | loops | tasks | vtime s | regret (tasks) | wins |"  # noqa: E501
    lines = ["", "## Per fault type (scored on the world)", "", head, "|" + " --- |" * 12]
    for r in rows:
        answers = "synthetic (scripted)" if r.provenance == SCRIPTED else (r.provenance or "–")
        lines.append(
            f"| {r.fault} | {r.planner} | {answers} | {r.prompt_hash or '–'} "
            f"| {r.successes}/{r.runs} | {r.converged_pct:.0f} | {r.collateral} | {r.loops} "
            f"| {r.tasks:.1f} | {r.sim_time_s:.1f} | {r.regret_tasks:+.1f} "
            f"| {'**wins**' if r.wins else ''} |"
        )
    lines += [
        "",
        "Regret: this planner's mean tasks minus the reference plan's on each scenario of the "
        "fault type, averaged. The reference is the scenario's proven right-fix plan "
        "(`evals.right_fix:RightFix`, when it ran), else the best planner of the run (most "
        "successful, then most converged, then fewest tasks).",
    ]
    return lines
