"""Dependency-free charts: planners side by side on success, steps and cost.

`svg_chart` draws three small-multiple panels (one row per scenario, one bar per planner);
`text_chart` draws the same as unicode bars, for terminals and markdown viewers without SVG.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from evals.aggregate import Aggregate

__all__ = ["PANELS", "svg_chart", "text_chart"]

# (title, value getter, format)
PANELS: tuple[tuple[str, str, str], ...] = (
    ("success rate", "pass_rate", "{:.0%}"),
    ("steps to converge (mean)", "steps", "{:.0f}"),
    ("LLM cost per run, $ (mean)", "cost_usd", "${:.3f}"),
)
_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
_BLOCKS = " ▏▎▍▌▋▊▉█"


def _value(agg: Aggregate, key: str) -> float:
    if key == "pass_rate":
        return agg.pass_rate
    return agg.metrics[key].mean


def _layout(
    aggs: Sequence[Aggregate],
) -> tuple[list[str], list[str], dict[tuple[str, str], Aggregate]]:
    rows = [a for a in aggs if a.scenario != "*"]
    planners = sorted({a.planner for a in rows})
    scenarios = sorted({a.scenario for a in rows})
    return planners, scenarios, {(a.planner, a.scenario): a for a in rows}


def svg_chart(aggs: Sequence[Aggregate], title: str = "Planners side by side") -> str:
    planners, scenarios, index = _layout(aggs)
    bar, gap, label_w, panel_w, top = 9, 8, 170, 230, 56
    row_h = bar * max(len(planners), 1) + gap
    height = top + row_h * len(scenarios) + 20
    width = label_w + panel_w * len(PANELS) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    legend_x = label_w + 60  # right of the title, which is about 180 px wide at 14 px
    for i, planner in enumerate(planners):
        x = legend_x + i * 120
        color = _COLORS[i % len(_COLORS)]
        out.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="17">{escape(planner)}</text>')
    for p, (name, key, fmt) in enumerate(PANELS):
        x0 = label_w + p * panel_w
        peak = max((_value(a, key) for a in index.values()), default=0.0) or 1.0
        out.append(f'<text x="{x0}" y="{top - 12}" font-weight="bold">{escape(name)}</text>')
        out.append(f'<line x1="{x0}" y1="{top - 4}" x2="{x0}" y2="{height - 16}" stroke="#999"/>')
        for r, scenario in enumerate(scenarios):
            y = top + r * row_h
            if p == 0:
                out.append(f'<text x="10" y="{y + row_h / 2 + 2}">{escape(scenario)}</text>')
            for i, planner in enumerate(planners):
                agg = index.get((planner, scenario))
                if agg is None:
                    continue
                value = _value(agg, key)
                w = max((panel_w - 70) * value / peak, 0.5 if value else 0)
                yy = y + i * bar
                color = _COLORS[i % len(_COLORS)]
                out.append(
                    f'<rect x="{x0 + 1}" y="{yy}" width="{w:.1f}" height="{bar - 1}" '
                    f'fill="{color}"><title>{escape(planner)} {escape(scenario)}: '
                    f"{escape(fmt.format(value))}</title></rect>"
                )
                out.append(
                    f'<text x="{x0 + w + 4:.1f}" y="{yy + bar - 2}" font-size="8" '
                    f'fill="#333">{escape(fmt.format(value))}</text>'
                )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _bar(value: float, peak: float, width: int = 24) -> str:
    if peak <= 0:
        return ""
    eighths = round(width * 8 * max(value, 0.0) / peak)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_BLOCKS[rest] if rest else "")


def text_chart(aggs: Sequence[Aggregate]) -> str:
    planners, scenarios, index = _layout(aggs)
    name_w = max((len(s) for s in scenarios), default=8)
    plan_w = max((len(p) for p in planners), default=4)
    lines: list[str] = []
    for name, key, fmt in PANELS:
        peak = max((_value(a, key) for a in index.values()), default=0.0)
        lines.append(f"{name}")
        for scenario in scenarios:
            for i, planner in enumerate(planners):
                agg = index.get((planner, scenario))
                if agg is None:
                    continue
                value = _value(agg, key)
                label = scenario if i == 0 else ""
                lines.append(
                    f"  {label:<{name_w}} {planner:<{plan_w}} "
                    f"{_bar(value, peak):<24} {fmt.format(value)}"
                )
        lines.append("")
    return "\n".join(lines)
