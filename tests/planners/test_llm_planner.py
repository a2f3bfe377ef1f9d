"""LLMPlanner with scripted models: plans, repairs, fallbacks, budgets, usage, replay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm.errors import LLMAPIError, LLMTimeoutError, ReplayMissError
from llm.replay import RecordingClient, ReplayClient, load_cassette
from llm.testing import ScriptedClient
from llm.types import LLMRequest, LLMResponse, Usage
from reaper.models import MissionStatus, ResultEvent, ResultStatus, Stage
from reaper.planners.budget import Budget, UsageLedger
from reaper.planners.llm import LLMPlanner, build_llm_planner
from reaper.planners.llm_schema import MAX_SCHEMA_TASKS, plan_json_schema
from tests.planners.support import demo_state, plan_answer, response, run_mission, sensible_answer

GOOD = plan_answer(
    ("win-01", "windows.discover"), ("lnx-01", "linux.discover", {"sections": ["os"]})
)
HAIKU_USAGE = Usage(input_tokens=100_000, output_tokens=0)  # $0.10 on claude-haiku-4-5


def _result(host_id: str, action: str, ok: bool = True) -> ResultEvent:
    return ResultEvent(
        task_id=f"demo:1:{host_id}",
        mission_id="demo",
        host_id=host_id,
        agent_type="reaper-windows",
        action=action,
        status=ResultStatus.SUCCESS if ok else ResultStatus.ERROR,
        error_code=None if ok else "COMMAND_FAILED",
    )


class FailingClient:
    """A client whose provider fails after the SDK's retries."""

    provider = "anthropic"
    model = "claude-haiku-4-5"

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        raise self.exc

    async def aclose(self) -> None:
        return None


async def test_good_plan_becomes_tasks_with_reasons_and_a_full_decision() -> None:
    client = ScriptedClient(
        [
            response(
                json.dumps(GOOD),
                usage=Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=3000),
                model="claude-haiku-4-5",
            )
        ]
    )
    planner = LLMPlanner(client, seed=7)
    plan = await planner.initial_tasks(demo_state())
    assert [(t.host_id, t.action, t.params) for t in plan.tasks] == [
        ("win-01", "windows.discover", {}),
        ("lnx-01", "linux.discover", {"sections": ["os"]}),
    ]
    assert all(t.reason for t in plan.tasks)
    d = plan.decision
    assert (
        d["planner"] == "llm" and d["provider"] == "scripted" and d["model"] == "claude-haiku-4-5"
    )
    assert set(d["prompt_hash"]) == {
        "system", "system_desired", "user", "user_desired", "catalog", "repair"
    }  # fmt: skip
    assert d["usage"]["cache_read_tokens"] == 3000 and d["calls"] == 1 and d["repairs"] == 0
    assert d["fallback"] is False and d["error"] is None and d["priced"] is True
    assert d["cost_usd"] == pytest.approx((1000 * 1.0 + 200 * 5.0 + 3000 * 0.1) / 1e6)
    assert d["totals"]["calls"] == 1
    request = client.requests[0]
    assert request.seed == 7 and request.json_schema == plan_json_schema()
    assert request.system[0].cache is True and len(request.messages) == 1


def test_schema_is_strict_compatible() -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert node["additionalProperties"] is False
                assert sorted(node["required"]) == sorted(node["properties"])
            if node.get("type") == "array":
                # Bounded, so constrained decoding cannot repeat items until max_tokens.
                assert node["maxItems"] == MAX_SCHEMA_TASKS
            for key in ("minLength", "maxLength", "minimum", "maximum", "$ref"):
                assert key not in node
            for value in node.values():
                walk(value)

    walk(plan_json_schema())


async def test_a_grammar_decoded_local_model_gets_bounded_strings() -> None:
    # Measured with SmolLM2 under llama-server: an unbounded "reason" runs to max_tokens.
    local = ScriptedClient([GOOD], provider="local")
    await LLMPlanner(local).initial_tasks(demo_state())
    schema = local.requests[0].json_schema
    task = schema["properties"]["tasks"]["items"]["properties"]
    assert task["reason"]["maxLength"] == 80 and task["params_json"]["maxLength"] == 600
    assert schema["properties"]["note"]["maxLength"] == 80
    assert "maxLength" not in task["host_id"] and "maxLength" not in task["action"]
    cloud = ScriptedClient([GOOD], provider="openai")
    await LLMPlanner(cloud).initial_tasks(demo_state())
    assert cloud.requests[0].json_schema == plan_json_schema()  # the strict subset, unbounded


async def test_one_repair_quotes_the_error_then_succeeds() -> None:
    client = ScriptedClient(['{"tasks": [', GOOD])
    plan = await LLMPlanner(client).initial_tasks(demo_state())
    assert len(plan.tasks) == 2 and plan.decision["repairs"] == 1
    assert plan.decision["fallback"] is False
    assert plan.decision["errors"][0].startswith("invalid_json:")
    repair = client.requests[1]
    assert [m.role for m in repair.messages] == ["user", "assistant", "user"]
    assert repair.messages[1].text == '{"tasks": ['
    assert "not valid JSON" in repair.messages[2].text


BAD_ANSWERS: dict[str, Any] = {
    "unknown_host": plan_answer(("db-99", "linux.discover")),
    "unknown_action": plan_answer(("lnx-01", "linux.rm_rf")),
    "too_many_tasks": plan_answer(*[("lnx-01", "linux.discover")] * 6),
    "schema": {"tasks": "all of them", "done": False, "note": ""},
    "invalid_params": plan_answer()
    | {
        "tasks": [
            {"host_id": "lnx-01", "action": "linux.discover", "params_json": "[1]", "reason": "r"}
        ]
    },
    "refusal": response("", stop="refusal", refusal="I can't help with that"),
    "truncated": response('{"tasks": [{"host_id": "lnx', stop="max_tokens"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ANSWERS))
async def test_unusable_answers_get_one_repair_then_the_rules_decide(kind: str) -> None:
    bad = BAD_ANSWERS[kind]
    client = ScriptedClient([bad, bad])
    planner = LLMPlanner(client, max_tasks_per_step=5)
    state = demo_state()
    plan = await planner.initial_tasks(state)
    assert len(client.requests) == 2  # the first answer and one repair, no more
    assert plan.decision["fallback"] is True and plan.decision["repairs"] == 1
    assert plan.decision["error"].startswith(f"{kind}:")
    assert plan.decision["fallback_planner"] == "rule"
    # The rule-based planner's answer: discover every new host.
    assert sorted(t.host_id for t in plan.tasks) == sorted(state.hosts)
    assert all(t.reason.startswith("fallback (rule): ") for t in plan.tasks)
    assert "rule planner decided this step" in plan.note
    assert planner.usage_summary()["fallbacks"] == 1


async def test_max_repairs_zero_falls_back_after_one_call() -> None:
    client = ScriptedClient(["nope"])
    plan = await LLMPlanner(client, max_repairs=0).next_tasks(
        demo_state(), [_result("lnx-01", "linux.discover", ok=False)]
    )
    assert len(client.requests) == 1 and plan.decision["fallback"] is True


@pytest.mark.parametrize(
    "exc",
    [
        LLMAPIError("anthropic: HTTP 529: overloaded", provider="anthropic", status_code=529),
        LLMTimeoutError("anthropic: no answer within 5s", provider="anthropic", timeout_s=5),
    ],
)
async def test_provider_failures_fall_back_without_repair(exc: Exception) -> None:
    client = FailingClient(exc)
    plan = await LLMPlanner(client).initial_tasks(demo_state())
    assert client.calls == 1
    assert plan.decision["fallback"] is True and plan.decision["calls"] == 0
    assert plan.decision["error"].startswith("api_error:") and len(plan.tasks) == 4


async def test_replay_miss_is_a_hard_error(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    recorder = RecordingClient(ScriptedClient([GOOD]), cassette, synthetic=True)
    await LLMPlanner(recorder).initial_tasks(demo_state(goal=Stage.DISCOVERED))
    with pytest.raises(ReplayMissError, match="closest recorded request differs in: messages"):
        await LLMPlanner(ReplayClient(cassette)).initial_tasks(demo_state())


async def test_the_replay_key_does_not_depend_on_the_mission_id(tmp_path: Path) -> None:
    """The same lab replays under any mission id (the prompt does not carry it)."""
    cassette = tmp_path / "c.jsonl"
    recorder = RecordingClient(ScriptedClient([GOOD]), cassette, synthetic=True)
    first = await LLMPlanner(recorder).initial_tasks(demo_state("first"))
    again = await LLMPlanner(ReplayClient(cassette)).initial_tasks(demo_state("second"))
    assert [t.model_dump() for t in again.tasks] == [t.model_dump() for t in first.tasks]


# -- budget ----------------------------------------------------------------------------


async def _steps(planner: LLMPlanner, n: int) -> list[Any]:
    state = demo_state()
    plans = [await planner.initial_tasks(state)]
    for _ in range(n - 1):
        plans.append(await planner.next_tasks(state, [_result("win-01", "windows.discover")]))
    return plans


@pytest.mark.parametrize(
    ("budget", "usage", "phrase"),
    [
        (Budget(max_calls=2), Usage(), "calls 2/2"),
        (Budget(max_tokens=1000), Usage(input_tokens=550), "tokens 1100/1000"),
        (Budget(max_usd=0.15), HAIKU_USAGE, "dollars $0.2000/$0.1500"),
    ],
)
async def test_budget_exhaustion_halts_planning(budget: Budget, usage: Usage, phrase: str) -> None:
    client = ScriptedClient(
        lambda _r: response(json.dumps(GOOD), usage=usage, model="claude-haiku-4-5")
    )
    planner = LLMPlanner(client, budget=budget)
    first, second, third = await _steps(planner, 3)
    assert first.tasks and second.tasks and not first.halt and not second.halt
    assert third.halt and third.note == f"LLM budget exhausted: {phrase}" and not third.tasks
    assert third.decision["halted"] is True and third.decision["calls"] == 0
    assert len(client.requests) == 2
    assert planner.usage_summary()["budget_exhausted"] == phrase


async def test_repair_calls_count_against_the_budget() -> None:
    client = ScriptedClient(["bad", "bad", "never asked"])
    planner = LLMPlanner(client, budget=Budget(max_calls=2))
    first, second = await _steps(planner, 2)
    assert first.decision["fallback"] is True and first.decision["calls"] == 2
    assert second.halt and second.note == "LLM budget exhausted: calls 2/2"
    # A limit reached between the first call and its repair halts too.
    client = ScriptedClient(["bad"])
    (plan,) = await _steps(LLMPlanner(client, budget=Budget(max_calls=1)), 1)
    assert plan.halt and plan.decision["calls"] == 1 and plan.decision["repairs"] == 0


async def test_usage_is_summed_per_mission_and_split_per_host() -> None:
    client = ScriptedClient(
        lambda _r: response(json.dumps(GOOD), usage=HAIKU_USAGE, model="claude-haiku-4-5")
    )
    planner = LLMPlanner(client)
    state = demo_state()
    first = await planner.initial_tasks(state)  # charged to the hosts it plans for
    second = await planner.next_tasks(
        state, [_result("win-01", "windows.discover"), _result("lnx-01", "linux.discover")]
    )
    summary = planner.usage_summary()
    assert summary["calls"] == 2 and summary["cost_usd"] == pytest.approx(0.2)
    assert summary["hosts"]["win-01"]["cost_usd"] == pytest.approx(0.1)
    assert summary["hosts"]["win-01"]["calls"] == 2
    rebuilt = UsageLedger.from_decisions([first.decision, second.decision])
    assert rebuilt.summary() == planner.ledger.summary()


# -- through the engine ----------------------------------------------------------------


async def test_full_mission_reaches_the_goal_with_llm_reasons() -> None:
    planner = LLMPlanner(ScriptedClient(sensible_answer))
    run = await run_mission(demo_state(), planner)
    assert run.state.status is MissionStatus.COMPLETED and run.state.goal_reached
    decisions = run.kinds("planner.decision")
    assert decisions and all(d["planner"] == "llm" and not d["fallback"] for d in decisions)
    assert all(p["reason"] and p["planner"] == "llm" for p in run.kinds("task.planned"))


async def test_budget_halt_stops_the_mission_with_the_reason() -> None:
    planner = LLMPlanner(ScriptedClient(sensible_answer), budget=Budget(max_calls=1))
    state = demo_state()
    del state.hosts["win-02"]  # no retries: the first batch holds every result
    run = await run_mission(state, planner)
    assert run.state.status is MissionStatus.STOPPED
    assert run.state.status_reason == "planning stopped: LLM budget exhausted: calls 1/1"


async def _record_demo(path: Path) -> list[dict[str, Any]]:
    client = RecordingClient(ScriptedClient(sensible_answer), path, synthetic=True)
    run = await run_mission(demo_state(), LLMPlanner(client, seed=3))
    return _stable(run.events)


def _stable(events: list[Any]) -> list[dict[str, Any]]:
    """The log minus wall-clock fields (event and result timestamps, measured durations)."""
    out = []
    for event in events:
        data = event.model_dump(mode="json", exclude={"ts"})
        result = data["payload"].get("result")
        if isinstance(result, dict):
            result.pop("ts", None)
            result.pop("duration_s", None)
        out.append(data)
    return out


async def test_replay_is_deterministic_and_misses_are_hard_errors(tmp_path: Path) -> None:
    cassette = tmp_path / "demo.jsonl"
    recorded = await _record_demo(cassette)
    assert load_cassette(cassette).header.synthetic is True
    replays = []
    for _ in range(2):
        client = ReplayClient(cassette)
        run = await run_mission(demo_state(), LLMPlanner(client, seed=3))
        assert client.unused() == []
        replays.append(_stable(run.events))
    assert replays[0] == replays[1] == recorded
    # Another trial seed is another request: a clear miss, not a silent fallback.
    with pytest.raises(ReplayMissError, match="seed=4"):
        await run_mission(demo_state(), LLMPlanner(ReplayClient(cassette), seed=4))


async def test_build_llm_planner_replays_without_a_key(tmp_path: Path) -> None:
    cassette = tmp_path / "demo.jsonl"
    await _record_demo(cassette)
    planner = build_llm_planner(provider="anthropic", replay=cassette, seed=3)
    assert planner.client.provider == "scripted"
    run = await run_mission(demo_state(), planner)
    assert run.state.goal_reached
