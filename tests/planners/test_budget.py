"""Usage accounting and budget limits."""

from __future__ import annotations

from llm.types import Usage
from reaper.planners.budget import Budget, UsageLedger


def test_limits_name_the_exhausted_resource() -> None:
    ledger = UsageLedger()
    assert ledger.exhausted(None) is None
    assert ledger.exhausted(Budget(max_calls=1)) is None
    ledger.record_call(Usage(input_tokens=900, output_tokens=100), 0.25, priced=True)
    assert ledger.exhausted(Budget(max_calls=1)) == "calls 1/1"
    assert ledger.exhausted(Budget(max_tokens=1000)) == "tokens 1000/1000"
    assert ledger.exhausted(Budget(max_tokens=1001)) is None
    assert ledger.exhausted(Budget(max_usd=0.25)) == "dollars $0.2500/$0.2500"
    assert ledger.exhausted(Budget(max_calls=5, max_tokens=10**6, max_usd=1.0)) is None


def test_step_cost_is_split_evenly_over_its_hosts() -> None:
    ledger = UsageLedger()
    usage = Usage(input_tokens=300, output_tokens=0)
    ledger.record_call(usage, 0.3, priced=True)
    ledger.record_step(["a", "b", "c"], usage, 0.3, repairs=0, fallback=False)
    ledger.record_call(usage, 0.3, priced=False)
    ledger.record_step([], usage, 0.3, repairs=1, fallback=True)
    summary = ledger.summary(Budget(max_usd=1.0))
    assert summary["hosts"]["a"] == {"calls": 1, "tokens": 100, "cost_usd": 0.1}
    per_host = sum(h["cost_usd"] for h in summary["hosts"].values())
    assert abs(per_host + summary["unattributed_usd"] - summary["cost_usd"]) < 1e-9
    assert summary["priced"] is False and summary["repairs"] == 1 and summary["fallbacks"] == 1
    assert summary["budget_exhausted"] is None


def test_ledger_rebuilds_from_decision_payloads() -> None:
    decisions = [
        {
            "planner": "llm",
            "usage": {"input_tokens": 10, "output_tokens": 5},
            "calls": 2,
            "cost_usd": 0.02,
            "repairs": 1,
            "fallback": False,
            "charged_hosts": ["a", "b"],
        },
        {"planner": "rule", "rules": "initial"},
        {"planner": "llm", "usage": {}, "calls": 0, "cost_usd": 0.0, "halted": True},
    ]
    ledger = UsageLedger.from_decisions(decisions)
    assert ledger.calls == 2 and ledger.usage.total_tokens == 15 and ledger.repairs == 1
    assert ledger.steps == 2
    assert ledger.hosts["a"].cost_usd == 0.01
