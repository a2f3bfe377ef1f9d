"""Reports: results as JSON lines, rich tables for the console, a markdown report with a chart."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError
from rich.table import Table

from evals.aggregate import METRICS, Aggregate
from evals.chart import svg_chart, text_chart
from evals.compare import Comparison
from evals.scorecard import RESULT_SCHEMA_VERSION, RunResult
from evals.tapes import Divergence
from reaper.errors import ConfigError
from reaper.safeload import Limits, read_limited

__all__ = [
    "comparison_table",
    "divergence_table",
    "markdown_report",
    "read_results",
    "scorecard_table",
    "usage_table",
    "write_markdown",
    "write_results",
]


def write_results(results: Iterable[RunResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for result in results:
            handle.write(result.model_dump_json() + "\n")


RESULTS_LIMITS = Limits(max_bytes=256 * 1024 * 1024)


def read_results(path: Path) -> list[RunResult]:
    try:
        lines = read_limited(path, RESULTS_LIMITS).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read results: {exc}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ConfigError(f"{path}:{number}: not a result line: not a JSON object")
            if data.get("schema_version") != RESULT_SCHEMA_VERSION:
                raise ConfigError(
                    f"{path}:{number}: results schema_version {data.get('schema_version')!r}; "
                    f"this version reads {RESULT_SCHEMA_VERSION}"
                )
            out.append(RunResult.model_validate(data))
        except RecursionError:
            raise ConfigError(f"{path}:{number}: not a result line: nested too deep") from None
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(
                f"{path}:{number}: not a result line: {exc}".splitlines()[0]
            ) from None
    return out


def _pct(value: float) -> str:
    return f"{value:.0%}"


def scorecard_table(aggs: Sequence[Aggregate], *, title: str = "Scorecard") -> Table:
    """Outcomes per planner × scenario: mean [95% CI] over trials."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for name in (
        "planner",
        "scenario",
        "n",
        "success",
        "pass^k",
        "goal %",
        "steps",
        "tasks",
        "wasted",
        "refused",
        "locked",
        "invalid",
        "sim s",
    ):
        left = name in ("planner", "scenario")
        table.add_column(name, justify="left" if left else "right", no_wrap=left)
    for a in aggs:
        m = a.metrics
        table.add_row(
            a.planner,
            a.scenario if a.scenario != "*" else "[bold]all[/bold]",
            str(a.n),
            f"{a.successes}/{a.n}",
            f"{a.pass_hat_k:.2f}",
            m["goal_pct"].fmt(0),
            m["steps"].fmt(1),
            m["tasks_issued"].fmt(1),
            m["wasted_tasks"].fmt(1),
            m["refusals"].fmt(1),
            m["hosts_locked"].fmt(1),
            _pct(m["invalid_output_rate"].mean) if m["llm_calls"].mean else "–",
            m["sim_time_s"].fmt(0),
            end_section=a.scenario == "*",
        )
    return table


def usage_table(aggs: Sequence[Aggregate]) -> Table:
    """LLM usage per planner × scenario (planners that made calls only)."""
    table = Table(title="LLM usage (mean per run)", title_justify="left", header_style="bold")
    for name in (
        "planner",
        "scenario",
        "model",
        "prompt",
        "calls",
        "in tok",
        "out tok",
        "cached tok",
        "cost $",
        "$ / success",
    ):
        left = name in ("planner", "scenario", "model", "prompt")
        table.add_column(name, justify="left" if left else "right", no_wrap=left)
    for a in aggs:
        m = a.metrics
        if not m["llm_calls"].mean:
            continue
        scripted = a.synthetic
        # Scripted answers: no model wrote them and no one paid for them (list-price
        # figures would read as a real model's cost).
        per_success = "synthetic" if scripted else a.cost(a.cost_per_success)
        table.add_row(
            a.planner,
            a.scenario if a.scenario != "*" else "[bold]all[/bold]",
            f"synthetic (scripted, as {a.model})" if scripted else a.model,
            a.prompt_hash,
            # Means only: the intervals are in the JSON and the markdown report.
            f"{m['llm_calls'].mean:.1f}",
            f"{m['input_tokens'].mean:.0f}",
            f"{m['output_tokens'].mean:.0f}",
            f"{m['cached_tokens'].mean:.0f}",
            "synthetic" if scripted else a.cost(m["cost_usd"].mean),
            per_success,
        )
    return table


def comparison_table(comparison: Comparison, *, everything: bool = False) -> Table:
    table = Table(
        title="Comparison (NEW − OLD, paired by seed)", title_justify="left", header_style="bold"
    )
    for name in ("planner", "scenario", "metric", "old", "new", "Δ [95% CI]", "verdict"):
        table.add_column(
            name,
            justify="left" if name in ("planner", "scenario", "metric", "verdict") else "right",
        )
    digits = {m.name: m.digits for m in METRICS}
    for f in comparison.findings:
        if f.verdict == "same" and not everything:
            continue
        d = digits[f.metric]
        style = {"regression": "bold red", "improvement": "green"}.get(f.verdict, "")
        table.add_row(
            f.planner,
            f.scenario,
            f.metric,
            f"{f.old.mean:.{d}f}",
            f"{f.new.mean:.{d}f}",
            f"{f.delta.mean:+.{d}f} [{f.delta.low:+.{d}f}, {f.delta.high:+.{d}f}]",
            f"[{style}]{f.verdict}[/{style}]" if style else f.verdict,
        )
    return table


def divergence_table(div: Divergence) -> Table:
    table = Table(
        title=f"Counterfactual replay of {div.mission_id}: recorded {div.recorded_planner!r} "
        f"vs {div.alternative_planner!r}",
        title_justify="left",
        header_style="bold",
    )
    for name in ("step", "same", "only recorded", "only alternative"):
        table.add_column(name, justify="right" if name == "step" else "left")
    for s in div.steps:
        table.add_row(
            str(s.step),
            "yes" if s.same else "[bold red]no[/bold red]",
            "\n".join(s.only_recorded) or "–",
            "\n".join(s.only_alternative) or "–",
        )
    return table


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_report(
    aggs: Sequence[Aggregate],
    *,
    chart_file: str | None,
    meta: dict[str, str],
    synthetic: bool,
    sections: Sequence[str] = (),  # more markdown lines, after the per-scenario table
) -> str:
    lines = ["# Reaper planner evaluation", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta.items()]
    if synthetic:
        lines.append(
            "- **LLM answers are synthetic**: scripted (`evals/sensible.py`, "
            "`evals/scripted_desired.py`) or replayed from cassettes recorded from a scripted "
            "model, not a live LLM; no one paid for them. Record live ones with `--record`."
        )
    lines += ["", "## Summary", ""]
    head = [
        "planner",
        "model",
        "prompt",
        "answers",
        "success",
        "pass^k",
        "steps",
        "wasted",
        "locked",
        "invalid out",
        "cost $ / run",
        "$ / success",
    ]
    lines += [_md_row(head), _md_row(["---"] * len(head))]
    for a in (a for a in aggs if a.scenario == "*"):
        m = a.metrics
        lines.append(
            _md_row(
                [
                    a.planner,
                    a.model or "–",
                    a.prompt_hash or "–",
                    "synthetic (scripted)" if a.synthetic else (a.provenance or "–"),
                    f"{a.successes}/{a.n}",
                    f"{a.pass_hat_k:.2f}",
                    m["steps"].fmt(1),
                    m["wasted_tasks"].fmt(1),
                    m["hosts_locked"].fmt(2),
                    f"{m['invalid_output_rate'].mean:.1%}",
                    "synthetic" if a.synthetic else a.cost(m["cost_usd"].mean),
                    "synthetic" if a.synthetic else a.cost(a.cost_per_success),
                ]
            )
        )
    if chart_file:
        lines += ["", f"![planners side by side]({chart_file})"]
    lines += ["", "```text", text_chart(aggs).rstrip(), "```", "", "## Per scenario", ""]
    head = [
        "scenario",
        "planner",
        "success",
        "pass^k",
        "goal %",
        "steps",
        "tasks",
        "wasted",
        "refused",
        "locked",
        "LLM calls",
        "cost $",
    ]
    lines += [_md_row(head), _md_row(["---"] * len(head))]
    for a in sorted((a for a in aggs if a.scenario != "*"), key=lambda a: (a.scenario, a.planner)):
        m = a.metrics
        lines.append(
            _md_row(
                [
                    a.scenario,
                    a.planner,
                    f"{a.successes}/{a.n}",
                    f"{a.pass_hat_k:.2f}",
                    m["goal_pct"].fmt(0),
                    m["steps"].fmt(1),
                    m["tasks_issued"].fmt(1),
                    m["wasted_tasks"].fmt(1),
                    m["refusals"].fmt(1),
                    m["hosts_locked"].fmt(1),
                    m["llm_calls"].fmt(1),
                    "synthetic"
                    if a.synthetic
                    else m["cost_usd"].fmt(4)
                    if a.priced
                    else a.cost(m["cost_usd"].mean),
                ]
            )
        )
    lines += [
        "",
        "Intervals are 95% percentile-bootstrap intervals of the mean over trials; "
        "pass^k is the chance that all k trials succeed (k = trials).",
        *sections,
    ]
    return "\n".join(lines) + "\n"


def write_markdown(
    aggs: Sequence[Aggregate],
    path: Path,
    *,
    meta: dict[str, str],
    synthetic: bool,
    sections: Sequence[str] = (),
) -> Path:
    """Write `path` (markdown) and the SVG chart beside it; return the chart's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chart = path.with_suffix(".svg")
    chart.write_text(svg_chart(aggs), encoding="utf-8")
    path.write_text(
        markdown_report(
            aggs, chart_file=chart.name, meta=meta, synthetic=synthetic, sections=sections
        ),
        encoding="utf-8",
    )
    return chart
