"""LLM usage accounting and the per-mission budget.

Every call counts, repair calls included: a budget that ignored re-asks would let failed
validations run up the bill. A call is charged to the mission; a step's calls are also split
evenly across the hosts the step was about (the hosts named by its results, else the hosts its
plan targets), so the console can show where the money went. A limit is checked before each
call, so the call that crosses a limit still completes and the next one is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llm.types import Usage

__all__ = [
    "SYNTHETIC_PROVIDERS",
    "Budget",
    "HostUsage",
    "UsageLedger",
    "is_synthetic",
    "llm_part",
]


class Budget(BaseModel):
    """Per-mission limits; None means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_calls: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)


@dataclass(slots=True)
class HostUsage:
    calls: int = 0
    tokens: float = 0.0
    cost_usd: float = 0.0


@dataclass(slots=True)
class UsageLedger:
    calls: int = 0
    repairs: int = 0
    fallbacks: int = 0
    steps: int = 0
    unpriced_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    unattributed_usd: float = 0.0
    hosts: dict[str, HostUsage] = field(default_factory=dict)

    def record_call(self, usage: Usage, cost_usd: float, *, priced: bool) -> None:
        self.calls += 1
        self.usage = self.usage + usage
        self.cost_usd += cost_usd
        if not priced:
            self.unpriced_calls += 1

    def record_step(
        self,
        hosts: Sequence[str],
        usage: Usage,
        cost_usd: float,
        *,
        repairs: int,
        fallback: bool,
    ) -> None:
        """Close a step: count it and split its calls' usage evenly over ``hosts``."""
        self.steps += 1
        self.repairs += repairs
        self.fallbacks += int(fallback)
        if usage.total_tokens == 0 and cost_usd == 0.0:
            return
        if not hosts:
            self.unattributed_usd += cost_usd
            return
        share = 1.0 / len(hosts)
        for host_id in hosts:
            entry = self.hosts.setdefault(host_id, HostUsage())
            entry.calls += 1
            entry.tokens += usage.total_tokens * share
            entry.cost_usd += cost_usd * share

    def exhausted(self, budget: Budget | None) -> str | None:
        """Which limit is used up (a human-readable phrase), or None."""
        if budget is None:
            return None
        if budget.max_calls is not None and self.calls >= budget.max_calls:
            return f"calls {self.calls}/{budget.max_calls}"
        tokens = self.usage.total_tokens
        if budget.max_tokens is not None and tokens >= budget.max_tokens:
            return f"tokens {tokens}/{budget.max_tokens}"
        if budget.max_usd is not None and self.cost_usd >= budget.max_usd:
            return f"dollars ${self.cost_usd:.4f}/${budget.max_usd:.4f}"
        return None

    def totals(self) -> dict[str, Any]:
        """The mission-so-far form carried by each planner.decision event (what the live
        console shows): no per-host detail, so the event stays small."""
        return {
            "calls": self.calls,
            **self.usage.model_dump(),
            "tokens": self.usage.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "priced": self.unpriced_calls == 0,
            "repairs": self.repairs,
            "fallbacks": self.fallbacks,
        }

    def summary(self, budget: Budget | None = None) -> dict[str, Any]:
        """Everything the console and `reaper status` show, as plain JSON data."""
        data: dict[str, Any] = {
            "calls": self.calls,
            "steps": self.steps,
            "repairs": self.repairs,
            "fallbacks": self.fallbacks,
            **self.usage.model_dump(),
            "total_tokens": self.usage.total_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "priced": self.unpriced_calls == 0,
            "unattributed_usd": round(self.unattributed_usd, 6),
            "hosts": {
                host_id: {
                    "calls": h.calls,
                    "tokens": round(h.tokens),
                    "cost_usd": round(h.cost_usd, 6),
                }
                for host_id, h in sorted(self.hosts.items())
            },
        }
        if budget is not None:
            data["budget"] = budget.model_dump()
            data["budget_exhausted"] = self.exhausted(budget)
        return data

    @classmethod
    def from_decisions(cls, decisions: Iterable[Mapping[str, Any]]) -> UsageLedger:
        """Rebuild the ledger from `planner.decision` payloads (on resume, or for `reaper
        status` in another process); payloads of other planners are skipped."""
        ledger = cls()
        for outer in decisions:
            d = llm_part(outer)
            if d is None or "usage" not in d:
                continue
            usage = Usage.model_validate(d["usage"])
            cost = float(d.get("cost_usd", 0.0))
            ledger.calls += int(d.get("calls", 0))
            ledger.usage = ledger.usage + usage
            ledger.cost_usd += cost
            if not d.get("priced", True):
                ledger.unpriced_calls += int(d.get("calls", 0))
            ledger.record_step(
                list(d.get("charged_hosts", [])),
                usage,
                cost,
                repairs=int(d.get("repairs", 0)),
                fallback=bool(d.get("fallback", False)),
            )
        return ledger


# Providers whose answers no model wrote (scripted models, and cassettes recorded from them):
# their tokens and dollars are made up, so nothing shows them as a model's.
SYNTHETIC_PROVIDERS = frozenset({"synthetic", "scripted"})


def is_synthetic(provider: object) -> bool:
    return str(provider) in SYNTHETIC_PROVIDERS


def llm_part(decision: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The LLM planner's payload in a `planner.decision`: the decision itself (planner
    `llm`), the one a hybrid step carries when it asked the LLM, or None."""
    if decision.get("planner") == "llm":
        return decision
    nested = decision.get("llm") if decision.get("planner") == "hybrid" else None
    return nested if isinstance(nested, Mapping) else None
