"""Mission tapes: a mission's planner steps as deltas, and counterfactual replay.

A tape (JSONL, `schema_version: 1`) holds the initial mission state once, then one line per
engine commit: results in (and approval decisions), which results were retried rather than
shown to the planner, the planner's decision (model, prompt hash, usage), the tasks it got
out (planned and refused, with their proposal index) and any status change. Never a full state
per step: the state at any step is rebuilt by folding the deltas with the engine's own pure
functions (`reaper.engine.state.fold`, `plan`, `apply`).

`TapeRecorder` is an engine listener, so any mission — eval or real — can be taped.
`counterfactual` walks a tape, and at every recorded decision asks another planner (or prompt
version) what it would have done in exactly that state with exactly those results, while the
mission itself keeps following the recorded decisions; it reports where the two diverge.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reaper.actions import CATALOG, validate_params
from reaper.engine.admission import plan
from reaper.engine.state import RetrySettings, apply, fold
from reaper.errors import ConfigError
from reaper.models import (
    ApprovalDecision,
    EventKind,
    EventRecord,
    MissionState,
    MissionStatus,
    PlannedTask,
    ResultEvent,
)
from reaper.overseer import engine_settings_for
from reaper.planners.base import MissionPlanner
from reaper.planners.budget import llm_part
from reaper.policy import Policy
from reaper.safeload import Limits, read_limited
from reaper.secrets import redact_value

__all__ = [
    "TAPE_SCHEMA_VERSION",
    "Divergence",
    "Tape",
    "TapeHeader",
    "TapeRecorder",
    "TapeStep",
    "counterfactual",
    "load_tape",
    "recorded_max_tokens",
    "replay_states",
]

log = logging.getLogger(__name__)

TAPE_SCHEMA_VERSION = 1


class TapeHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["header"] = "header"
    schema_version: int = TAPE_SCHEMA_VERSION
    mission_id: str
    initial_state: dict[str, Any]
    # True when the recorder was not given the initial state and rebuilt it from the state
    # after the first commit (exact for a new mission, not for a resumed one).
    initial_state_derived: bool = False
    retry: dict[str, float] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)


class TapeStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["step"] = "step"
    commit: int
    ts: datetime
    step: int | None = None  # the planner step this commit decided, if any
    results: list[dict[str, Any]] = Field(default_factory=list)
    retried: list[str] = Field(default_factory=list)  # task ids re-queued, not shown
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    decision: dict[str, Any] | None = None
    planned: list[dict[str, Any]] = Field(default_factory=list)
    refused: list[dict[str, Any]] = Field(default_factory=list)
    status: dict[str, str] | None = None

    def proposals(self) -> list[PlannedTask]:
        """The planner's proposal list, in its original order (accepted and refused)."""
        by_index: dict[int, PlannedTask] = {}
        for p in self.planned:
            index = int(str(p["task_id"]).rsplit(":", 1)[1])
            by_index[index] = PlannedTask(
                host_id=p["host_id"], action=p["action"], params=p["params"], reason=p["reason"]
            )
        for r in self.refused:
            by_index[int(r["index"])] = PlannedTask.model_validate(r["proposal"])
        return [by_index[i] for i in sorted(by_index)]


class Tape(BaseModel):
    header: TapeHeader
    steps: list[TapeStep]


def _step_from_events(commit: int, ts: datetime, events: Sequence[EventRecord]) -> TapeStep:
    step = TapeStep(commit=commit, ts=ts)
    for event in events:
        kind, p = event.kind, event.payload
        if kind is EventKind.TASK_RESULT:
            result = event.result()
            if result is not None:
                step.results.append(result.model_dump(mode="json"))
        elif kind is EventKind.TASK_RETRY:
            step.retried.append(str(p["task_id"]))
        elif kind in (EventKind.APPROVAL_GRANTED, EventKind.APPROVAL_REJECTED):
            step.approvals.append(
                {
                    "task_id": p["task_id"],
                    "approved": kind is EventKind.APPROVAL_GRANTED,
                    "by": p.get("by", "operator"),
                    "note": p.get("note", ""),
                    "ts": event.ts.isoformat(),
                }
            )
        elif kind is EventKind.PLANNER_DECISION:
            step.decision = dict(p)
            step.step = int(p.get("step", 0)) or None
        elif kind is EventKind.TASK_PLANNED:
            step.planned.append(
                {k: p.get(k) for k in ("task_id", "host_id", "action", "params", "reason")}
            )
        elif kind is EventKind.TASK_REFUSED:
            step.refused.append({k: p.get(k) for k in ("index", "code", "reason", "proposal")})
        elif kind is EventKind.STATUS_CHANGED:
            step.status = {"to": str(p["to"]), "reason": str(p.get("reason", ""))}
    return step


class TapeRecorder:
    """An engine listener that writes (or keeps) the mission's tape.

    Call `begin(initial_state)` before the engine starts; without it the initial state is
    rebuilt from the state after the first commit (marked `initial_state_derived`). With a
    `path`, each commit is appended and flushed as it happens, so a crash keeps the tape.
    """

    def __init__(self, path: str | Path | None = None, *, meta: dict[str, Any] | None = None):
        self.path = Path(path) if path is not None else None
        self.meta = dict(meta or {})
        self.header: TapeHeader | None = None
        self.steps: list[TapeStep] = []
        self._commits = 0
        self._file: IO[str] | None = None

    def begin(self, state: MissionState, retry: RetrySettings | None = None) -> None:
        self._header(state, derived=False, retry=retry)

    def _header(self, state: MissionState, *, derived: bool, retry: RetrySettings | None) -> None:
        retry = retry or engine_settings_for(state).retry
        self.header = TapeHeader(
            mission_id=state.mission_id,
            initial_state=state.model_dump(mode="json"),
            initial_state_derived=derived,
            retry={
                "max_attempts": retry.max_attempts,
                "backoff_s": retry.backoff_s,
                "backoff_max_s": retry.backoff_max_s,
            },
            meta=self.meta,
        )
        self._write(self.header)

    def __call__(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        if self.header is None:
            self._header(_derive_initial(state), derived=True, retry=None)
        self._commits += 1
        step = _step_from_events(self._commits, state.updated_at, events)
        self.steps.append(step)
        self._write(step)

    def tape(self) -> Tape:
        if self.header is None:
            raise ValueError("nothing recorded yet")
        return Tape(header=self.header, steps=list(self.steps))

    def _write(self, record: BaseModel) -> None:
        if self.path is None:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        # Defence in depth: results are masked where they enter, each line once more.
        data = redact_value(record.model_dump(mode="json"))
        self._file.write(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _derive_initial(state: MissionState) -> MissionState:
    hosts = {h.host_id: h.model_copy(update={"current_action": None}) for h in state.hosts.values()}
    return state.model_copy(
        update={
            "hosts": hosts,
            "tasks": {},
            "step": 0,
            "version": 0,
            "status": MissionStatus.RUNNING,
            "status_reason": "",
        }
    )


# A tape of a long mission is large, but loaded whole: refused past this size. Each line's JSON
# nesting is bounded by pydantic's parser (an error, not a RecursionError).
_M = TypeVar("_M", bound=BaseModel)
TAPE_LIMITS = Limits(max_bytes=512 * 1024 * 1024)


def load_tape(path: str | Path) -> Tape:
    """A tape file; a problem is a one-line `ConfigError` naming the file (and line)."""
    p = Path(path)
    try:
        text = read_limited(p, TAPE_LIMITS)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read tape: {exc}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ConfigError(f"{p}: empty tape")
    header = _tape_line(TapeHeader, lines[0], p, 1)
    if header.schema_version != TAPE_SCHEMA_VERSION:
        raise ConfigError(f"{p}: tape schema_version {header.schema_version} is not supported")
    steps = [_tape_line(TapeStep, ln, p, n) for n, ln in enumerate(lines[1:], start=2)]
    return Tape(header=header, steps=steps)


def _tape_line(model: type[_M], line: str, path: Path, number: int) -> _M:
    try:
        return model.model_validate_json(line)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"])
        raise ConfigError(
            f"{path}: line {number}: {where + ': ' if where else ''}{err['msg']}"
        ) from None


@dataclass(slots=True)
class DecisionPoint:
    """The state a recorded decision was made in, with the results it was shown."""

    step: int
    initial: bool
    state: MissionState
    results: list[ResultEvent]
    recorded: TapeStep


def replay_states(tape: Tape) -> Iterator[DecisionPoint]:
    """Rebuild the mission commit by commit; yield before each recorded decision is applied.

    The consumer may ask a planner about `point.state` but must not change it.
    """
    state = MissionState.model_validate(tape.header.initial_state)
    r = tape.header.retry
    retry = RetrySettings(
        max_attempts=int(r.get("max_attempts", 3)),
        backoff_s=float(r.get("backoff_s", 1.0)),
        backoff_max_s=float(r.get("backoff_max_s", 30.0)),
    )
    policy = Policy.model_validate(state.policy)
    # Results folded in commits that planned nothing: a lockstep engine held them for the
    # planner's next step, which is shown all of them.
    held: list[ResultEvent] = []
    for rec in tape.steps:
        messages: list[ResultEvent | ApprovalDecision] = [
            ResultEvent.model_validate(r) for r in rec.results
        ]
        messages += [ApprovalDecision(mission_id=state.mission_id, **a) for a in rec.approvals]
        tr = fold(state, messages, now=rec.ts, retry=retry)
        apply(state, tr)
        held.extend(tr.finished)
        if rec.decision is not None and rec.step is not None:
            yield DecisionPoint(rec.step, state.step == 0, state, held, rec)
            held = []
            planned = plan(
                state,
                rec.proposals(),
                step=rec.step,
                policy=policy,
                now=rec.ts,
                planner=str(rec.decision.get("planner", "")),
            )
            state.step = rec.step
            apply(state, planned)
        if rec.status is not None:
            state.status = MissionStatus(rec.status["to"])
            state.status_reason = rec.status["reason"]


def _norm(tasks: Sequence[PlannedTask]) -> list[str]:
    """Tasks as comparable strings: host, action and params with defaults dropped."""
    out = []
    for t in tasks:
        params = t.params
        spec = CATALOG.get(t.action)
        if spec is not None:
            params, _ = validate_params(spec, t.params)
        out.append(
            f"{t.host_id} {t.action}" + (f" {json.dumps(params, sort_keys=True)}" if params else "")
        )
    return sorted(out)


class StepComparison(BaseModel):
    step: int
    recorded: list[str]
    alternative: list[str]
    only_recorded: list[str]
    only_alternative: list[str]
    same: bool
    alternative_note: str = ""


class Divergence(BaseModel):
    mission_id: str
    recorded_planner: str
    alternative_planner: str
    steps: list[StepComparison] = Field(default_factory=list)

    @property
    def first_divergent_step(self) -> int | None:
        return next((s.step for s in self.steps if not s.same), None)

    @property
    def divergent_steps(self) -> int:
        return sum(1 for s in self.steps if not s.same)


def recorded_max_tokens(tape: Tape) -> int | None:
    """The max_tokens the recorded mission's LLM planner asked with (None: not recorded)."""
    for step in tape.steps:
        part = llm_part(step.decision or {})
        request = part.get("request") if part is not None else None
        if isinstance(request, dict) and isinstance(request.get("max_tokens"), int):
            return int(request["max_tokens"])
    return None


async def counterfactual(tape: Tape, planner: MissionPlanner) -> Divergence:
    """Feed the tape's recorded steps to `planner`; compare its tasks with the recorded ones."""
    recorded_name = ""
    out = Divergence(
        mission_id=tape.header.mission_id,
        recorded_planner="",
        alternative_planner=planner.name,
    )
    for point in replay_states(tape):
        decision = point.recorded.decision or {}
        recorded_name = recorded_name or str(decision.get("planner", ""))
        if point.initial:
            alt = await planner.initial_tasks(point.state)
        else:
            alt = await planner.next_tasks(point.state, point.results)
        rec_tasks = _norm(point.recorded.proposals())
        alt_tasks = _norm(alt.tasks)
        only_rec = sorted(set(rec_tasks) - set(alt_tasks))
        only_alt = sorted(set(alt_tasks) - set(rec_tasks))
        out.steps.append(
            StepComparison(
                step=point.step,
                recorded=rec_tasks,
                alternative=alt_tasks,
                only_recorded=only_rec,
                only_alternative=only_alt,
                same=rec_tasks == alt_tasks,
                alternative_note=alt.note,
            )
        )
    out.recorded_planner = recorded_name
    return out
