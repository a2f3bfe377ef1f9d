"""The LLM planner: one model call per engine wake-up, validated, repaired once, else rules.

Each step renders the prompt (``llm_prompt``), asks the model for a ``plan`` object
(``llm_schema``), and validates it. A refusal, an answer cut off at ``max_tokens``, invalid
JSON, a schema violation, an unknown host or action, or too many tasks gets at most
``max_repairs`` repair round trips (the bad answer as an assistant turn, the error as a user
turn); after that, or when the provider fails (``LLMAPIError`` once the SDK's own retries are
spent, timeouts included), the fallback planner decides the step and the decision says why.
Every call, repair calls included, is counted against the mission's ``Budget``; when a limit
is reached the planner answers ``Plan(halt=True)`` and the engine stops planning.

A ``ReplayMissError`` is re-raised, never replaced by the fallback: in replay a miss means the
prompt or the call sequence changed, and a silent fallback would hide it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from llm.base import LLMClient
from llm.errors import LLMAPIError
from llm.factory import build_client
from llm.pricing import DEFAULT_PRICES, PriceTable
from llm.redact import scrub_text
from llm.replay import RecordingClient
from llm.types import LLMRequest, LLMResponse, Message, Usage
from prompts import load_prompt
from reaper.models import MissionState, PlannedTask, ResultEvent
from reaper.planners.base import MissionPlanner, Plan
from reaper.planners.budget import Budget, UsageLedger
from reaper.planners.llm_catalog import CatalogScope, scope_of, scoped_actions
from reaper.planners.llm_desired import render_desired_user
from reaper.planners.llm_prompt import (
    PromptLimits,
    RenderedUser,
    desired_system_blocks,
    prompt_versions,
    render_user,
    system_blocks,
)
from reaper.planners.llm_schema import (
    GRAMMAR_PROVIDERS,
    SCHEMA_NAME,
    LLMPlan,
    PlanValidationError,
    parse_plan,
    plan_json_schema,
)
from reaper.planners.rules import RuleBasedPlanner

__all__ = ["LLMPlanner", "build_llm_planner"]

log = logging.getLogger(__name__)

REPAIR_PROMPT = "planner_repair.md"
# A bad answer is echoed back in the repair turn; bound it so a runaway answer does not make
# the repair call as long as the failure.
_ECHO_CHARS = 4000


class _StepCalls:
    """What one step's calls cost: summed over the first call and its repairs."""

    __slots__ = ("calls", "cost_usd", "errors", "latency_s", "model", "priced", "usage")

    def __init__(self, model: str) -> None:
        self.calls = 0
        self.usage = Usage()
        self.cost_usd = 0.0
        self.latency_s = 0.0
        self.priced = True
        self.model = model
        self.errors: list[str] = []


class LLMPlanner:
    """``MissionPlanner`` backed by an ``LLMClient`` (live, recording or replaying)."""

    name = "llm"

    def __init__(
        self,
        client: LLMClient,
        *,
        fallback: MissionPlanner | None = None,
        max_tasks_per_step: int = 50,
        max_tokens: int = 4096,
        temperature: float | None = 0.0,
        budget: Budget | None = None,
        prices: PriceTable = DEFAULT_PRICES,
        seed: int = 0,
        max_repairs: int = 1,
        facts_budget_chars: int = 2000,
        limits: PromptLimits | None = None,
        secrets: Sequence[str] = (),
        prompts: str | None = None,
    ) -> None:
        self.client = client
        self.prompts = prompts  # a variant's directory (`reaper eval --prompts`), or shipped
        self.fallback: MissionPlanner = fallback or RuleBasedPlanner()
        self.max_tasks_per_step = max_tasks_per_step
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.budget = budget
        self.prices = prices
        self.seed = seed
        self.max_repairs = max(0, max_repairs)
        base = limits or PromptLimits()
        self.limits = PromptLimits(
            facts_chars=facts_budget_chars,
            tail_chars=base.tail_chars,
            text_chars=base.text_chars,
            max_detail_hosts=base.max_detail_hosts,
            max_results=base.max_results,
        )
        self.secrets = tuple(s for s in secrets if s)
        self.ledger = UsageLedger()
        self._versions = {
            **prompt_versions(prompts),
            "repair": load_prompt(REPAIR_PROMPT, prompts).sha,
        }
        self._bounded = client.provider in GRAMMAR_PROVIDERS
        self._schema = plan_json_schema(bounded=self._bounded)
        self._scoped_schemas: dict[tuple[CatalogScope, tuple[str, ...]], dict[str, Any]] = {}

    # -- MissionPlanner ------------------------------------------------------------------

    async def initial_tasks(self, state: MissionState) -> Plan:
        return await self._step(state, [], initial=True)

    async def next_tasks(self, state: MissionState, results: Sequence[ResultEvent]) -> Plan:
        return await self._step(state, results, initial=False)

    async def plan_hosts(
        self, state: MissionState, results: Sequence[ResultEvent], hosts: Collection[str]
    ) -> Plan:
        """A step about `hosts` only (the hybrid planner's question on a failure the rules
        do not know): the prompt shows just them, and a task elsewhere is an invalid answer."""
        return await self._step(state, results, initial=False, focus=frozenset(hosts))

    # -- usage ---------------------------------------------------------------------------

    def usage_summary(self) -> dict[str, Any]:
        """Mission totals, per-host shares and budget state, as plain JSON data."""
        return self.ledger.summary(self.budget)

    def set_budget(self, limits: dict[str, int | float]) -> None:
        """New limits (`reaper resume --budget-*`, sent to a running engine): keys calls,
        tokens, usd as in the lab file's `budget`."""
        calls, tokens, usd = limits.get("calls"), limits.get("tokens"), limits.get("usd")
        self.budget = Budget(
            max_calls=None if calls is None else int(calls),
            max_tokens=None if tokens is None else int(tokens),
            max_usd=usd,
        )

    def restore_usage(self, decisions: Sequence[dict[str, Any]]) -> None:
        """Resume the ledger from a mission's logged `planner.decision` payloads, so a
        restarted engine keeps counting against the same budget."""
        self.ledger = UsageLedger.from_decisions(decisions)

    # -- one step ------------------------------------------------------------------------

    def _render(
        self,
        state: MissionState,
        results: Sequence[ResultEvent],
        focus: Collection[str] | None,
    ) -> RenderedUser:
        if state.converges:
            return render_desired_user(
                state,
                results,
                max_tasks=self.max_tasks_per_step,
                limits=self.limits,
                secrets=self.secrets,
                focus=focus,
                prompts=self.prompts,
            )
        return render_user(
            state,
            results,
            max_tasks=self.max_tasks_per_step,
            limits=self.limits,
            secrets=self.secrets,
            prompts=self.prompts,
        )

    async def _step(
        self,
        state: MissionState,
        results: Sequence[ResultEvent],
        *,
        initial: bool,
        focus: Collection[str] | None = None,
    ) -> Plan:
        rendered = self._render(state, results, focus)
        messages = [Message(role="user", text=rendered.text)]
        step = _StepCalls(self.client.model)
        for round_ in range(self.max_repairs + 1):
            limit = self.ledger.exhausted(self.budget)
            if limit is not None:
                return self._halt(limit, step, rendered.batch_hosts)
            request = self._request(state, messages, round_)
            try:
                response = await self.client.complete(request)
            except LLMAPIError as exc:
                step.errors.append(f"api_error: {exc}")
                log.warning("mission %s: LLM call failed: %s", state.mission_id, exc)
                break
            self._count(step, response)
            try:
                llm_plan, tasks = self._validate(response, state, focus)
            except PlanValidationError as exc:
                error = f"{exc.kind}: {scrub_text(str(exc), self.secrets)}"
                step.errors.append(error)
                log.warning("mission %s: LLM plan rejected (%s)", state.mission_id, error)
                if round_ < self.max_repairs:
                    messages = [*messages, *self._repair_turns(response, exc, self.prompts)]
                continue
            return self._accept(llm_plan, tasks, step, rendered.batch_hosts)
        return await self._fall_back(state, results, initial, step, rendered.batch_hosts)

    def _request(self, state: MissionState, messages: list[Message], round_: int) -> LLMRequest:
        if state.converges:
            scope = scope_of(state)
            system = desired_system_blocks(scope, self.prompts)
            hosts = tuple(sorted(state.hosts))
            schema = self._scoped_schemas.get((scope, hosts)) or self._scoped_schemas.setdefault(
                (scope, hosts),
                plan_json_schema(scoped_actions(scope), hosts, bounded=self._bounded),
            )
            prompt_system = self._versions["system_desired"]
        else:
            system, schema = system_blocks(self.prompts), self._schema
            prompt_system = self._versions["system"]
        return LLMRequest(
            system=list(system),
            messages=messages,
            json_schema=schema,
            schema_name=SCHEMA_NAME,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            metadata={
                "mission": state.mission_id,
                "step": str(state.step + 1),
                "round": str(round_),
                "prompt_system": prompt_system,
                "prompt_user": self._versions["user_desired" if state.converges else "user"],
            },
        )

    def _count(self, step: _StepCalls, response: LLMResponse) -> None:
        model = response.model or self.client.model
        estimate = self.prices.estimate(model, response.usage)
        step.calls += 1
        step.usage = step.usage + response.usage
        step.cost_usd += estimate.usd
        step.latency_s += response.latency_s
        step.priced = step.priced and estimate.priced
        step.model = model
        self.ledger.record_call(response.usage, estimate.usd, priced=estimate.priced)

    def _validate(
        self, response: LLMResponse, state: MissionState, focus: Collection[str] | None = None
    ) -> tuple[LLMPlan, list[PlannedTask]]:
        if response.stop_reason == "refusal":
            raise PlanValidationError("refusal", f"the model refused: {response.refusal or ''}")
        if response.stop_reason == "max_tokens":
            raise PlanValidationError(
                "truncated",
                f"the answer was cut off at max_tokens={self.max_tokens}; "
                "answer with fewer tasks and shorter reasons",
            )
        hosts = state.hosts if focus is None else {h: state.hosts[h] for h in focus}
        llm_plan, tasks = parse_plan(response.text, hosts=hosts, max_tasks=self.max_tasks_per_step)
        if state.converges:
            tasks = [_read_declared(t, state) for t in tasks]
        return llm_plan, tasks

    @staticmethod
    def _repair_turns(
        response: LLMResponse, exc: PlanValidationError, prompts: str | None
    ) -> list[Message]:
        bad = response.text or f"(no usable output: {exc.kind})"
        if len(bad) > _ECHO_CHARS:
            bad = bad[:_ECHO_CHARS] + "…[truncated]"
        return [
            Message(role="assistant", text=bad),
            Message(role="user", text=load_prompt(REPAIR_PROMPT, prompts).render(error=str(exc))),
        ]

    # -- outcomes --------------------------------------------------------------------------

    def _decision(
        self, step: _StepCalls, charged: list[str], *, fallback: bool, **extra: Any
    ) -> dict[str, Any]:
        repairs = max(step.calls - 1, 0)
        self.ledger.record_step(
            charged, step.usage, step.cost_usd, repairs=repairs, fallback=fallback
        )
        return {
            "planner": self.name,
            "provider": self.client.provider,
            "model": step.model,
            "prompt_hash": dict(self._versions),
            "usage": step.usage.model_dump(),
            "calls": step.calls,
            "latency_s": round(step.latency_s, 4),
            "cost_usd": round(step.cost_usd, 8),
            "priced": step.priced,
            "repairs": repairs,
            "fallback": fallback,
            "error": step.errors[-1] if step.errors else None,
            "errors": step.errors,
            "charged_hosts": charged,
            # What shapes the request besides the prompt: a replay of this mission needs it.
            "request": {"max_tokens": self.max_tokens, "temperature": self.temperature},
            "totals": {
                "provider": self.client.provider,
                "model": step.model,
                **self.ledger.totals(),
            },
            **extra,
        }

    def _accept(
        self, llm_plan: LLMPlan, tasks: list[PlannedTask], step: _StepCalls, batch: list[str]
    ) -> Plan:
        charged = batch or sorted({t.host_id for t in tasks})
        decision = self._decision(step, charged, fallback=False, done=llm_plan.done)
        return Plan(tasks=tasks, note=llm_plan.note[:500], decision=decision)

    def _halt(self, limit: str, step: _StepCalls, batch: list[str]) -> Plan:
        note = f"LLM budget exhausted: {limit}"
        log.warning("%s", note)
        step.errors.append(f"budget: {limit}")
        decision = self._decision(step, batch, fallback=False, halted=True)
        return Plan(note=note, decision=decision, halt=True)

    async def _fall_back(
        self,
        state: MissionState,
        results: Sequence[ResultEvent],
        initial: bool,
        step: _StepCalls,
        batch: list[str],
    ) -> Plan:
        if initial:
            plan = await self.fallback.initial_tasks(state)
        else:
            plan = await self.fallback.next_tasks(state, results)
        name = self.fallback.name
        tasks = [
            t.model_copy(update={"reason": f"fallback ({name}): {t.reason}"}) for t in plan.tasks
        ]
        charged = batch or sorted({t.host_id for t in tasks})
        decision = self._decision(
            step,
            charged,
            fallback=True,
            fallback_planner=name,
            fallback_decision=plan.decision,
        )
        cause = step.errors[-1].split(":", 1)[0] if step.errors else "error"
        note = f"LLM plan unusable ({cause}); {name} planner decided this step"
        log.info("mission %s: %s", state.mission_id, note)
        return Plan(tasks=tasks, note=note, decision=decision, halt=plan.halt)


def _read_declared(task: PlannedTask, state: MissionState) -> PlannedTask:
    """A desired-state discover that names no resources reads every declared one of its
    host (the prompt says so): the model need not copy the whole role to read it back."""
    if not task.action.endswith(".discover") or task.params.get("resources"):
        return task
    host = state.hosts[task.host_id]
    return task.model_copy(update={"params": {**task.params, "resources": host.desired}})


def build_llm_planner(
    *,
    provider: str,
    model: str = "",
    base_url: str | None = None,
    model_path: Path | None = None,
    replay: Path | None = None,
    record: Path | None = None,
    synthetic: bool = False,
    budget: Budget | None = None,
    prices: PriceTable | None = None,
    timeout: float = 60.0,
    max_retries: int = 2,
    temperature: float | None = 0.0,
    max_tokens: int = 4096,
    seed: int = 0,
    max_tasks_per_step: int = 50,
    max_repairs: int = 1,
    structured_output: Literal["tool", "native"] = "tool",
    secrets: Sequence[str] = (),
    fallback: MissionPlanner | None = None,
    client: LLMClient | None = None,
    prompts: str | None = None,
) -> LLMPlanner:
    """The planner the CLI builds from config and flags.

    ``replay`` serves answers from a cassette (no network, no key; ``provider`` and ``model``
    come from the cassette). ``record`` wraps the live client in a ``RecordingClient`` writing
    there, scrubbing ``secrets``. ``client`` replaces the live client (a scripted model for
    synthetic cassettes; it may still be recorded). Raises ``llm.LLMConfigError`` with one
    clear line for a missing key, SDK or cassette.
    """
    if replay is not None and record is not None:
        from llm.errors import LLMConfigError

        raise LLMConfigError("replay and record are exclusive: pick one cassette mode")
    if replay is not None:
        client = build_client("replay", cassette=replay)
    else:
        client = client or build_client(
            provider,
            model,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            structured_output=structured_output,
            model_path=model_path,
        )
        if record is not None:
            client = RecordingClient(client, record, synthetic=synthetic, secrets=secrets)
    return LLMPlanner(
        client,
        fallback=fallback,
        max_tasks_per_step=max_tasks_per_step,
        max_tokens=max_tokens,
        temperature=temperature,
        budget=budget,
        prices=prices or DEFAULT_PRICES,
        seed=seed,
        max_repairs=max_repairs,
        secrets=secrets,
        prompts=prompts,
    )
