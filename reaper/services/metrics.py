"""Prometheus metrics of engines and workers, served over HTTP (`--metrics-port`).

prometheus-client is an optional extra (`pip install 'reaper-lab[metrics]'`), imported only
when a `Metrics` is built. Each `Metrics` has its own registry, so several may live in one
process (tests) and nothing global is touched.

Engine side (fed by the engine's listener, i.e. from what was committed, so each result is
counted once even when a worker ran its task twice):
    reaper_tasks_queued_total{agent_type,action}    tasks planned or re-queued for a retry
    reaper_tasks_done_total{agent_type,action}      results applied with status success
    reaper_tasks_failed_total{agent_type,action}    results applied with another status
    reaper_result_latency_seconds                   result ts (worker) → applied (engine)
    reaper_hosts_locked{mission_id}                 locked hosts of the missions run here
    reaper_dispatch_window{mission_id}              tasks a mission run here may have out now
                                                    (max_in_flight, or fewer: reaper.engine.window)
    reaper_missions{status}                         every mission in the store, by status
    reaper_llm_calls_total{model}, reaper_llm_tokens_total{model,kind},
    reaper_llm_cost_usd_total{model}                from `planner.decision` payloads
Worker side:
    reaper_tasks_running{agent_type}                in flight in this worker
    reaper_worker_results_total{agent_type,action,status}   executions (re-runs included)
Both:
    reaper_queue_depth{agent_type}                  tasks waiting (TaskQueue.depth)
    reaper_alerts_total{kind}                       alerts raised (see reaper.services.alerts)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from reaper.errors import ConfigError
from reaper.infra.base import MissionSummary
from reaper.models import (
    EventKind,
    EventRecord,
    MissionState,
    MissionStatus,
    ResultEvent,
    ResultStatus,
    utcnow,
)

__all__ = ["LATENCY_BUCKETS", "Metrics", "prometheus"]

# Result latency is milliseconds on one machine and up to seconds across a busy cluster.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_QUEUEING = (EventKind.TASK_PLANNED, EventKind.TASK_RETRY, EventKind.APPROVAL_GRANTED)
_TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def prometheus() -> ModuleType:
    try:
        return importlib.import_module("prometheus_client")
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "metrics need an optional package: pip install 'reaper-lab[metrics]' "
            "(or pip install prometheus-client)"
        ) from exc


class Metrics:
    """The metric families above on a private registry; `serve(port)` exposes them."""

    def __init__(self) -> None:
        p = prometheus()
        self.registry: Any = p.CollectorRegistry()
        r = self.registry
        task = ("agent_type", "action")
        self.tasks_queued = p.Counter("reaper_tasks_queued", "Tasks queued", task, registry=r)
        self.tasks_done = p.Counter("reaper_tasks_done", "Results applied: ok", task, registry=r)
        self.tasks_failed = p.Counter(
            "reaper_tasks_failed", "Results applied: failed", task, registry=r
        )
        self.tasks_running = p.Gauge(
            "reaper_tasks_running", "Tasks in flight in this worker", ("agent_type",), registry=r
        )
        self.worker_results = p.Counter(
            "reaper_worker_results",
            "Task executions finished by this worker",
            (*task, "status"),
            registry=r,
        )
        self.result_latency = p.Histogram(
            "reaper_result_latency_seconds",
            "Result published → applied by the engine",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.missions = p.Gauge("reaper_missions", "Missions by status", ("status",), registry=r)
        self.hosts_locked = p.Gauge(
            "reaper_hosts_locked", "Locked hosts", ("mission_id",), registry=r
        )
        self.dispatch_window = p.Gauge(
            "reaper_dispatch_window",
            "Tasks a mission may have queued or running now",
            ("mission_id",),
            registry=r,
        )
        self.queue_depth = p.Gauge(
            "reaper_queue_depth", "Tasks waiting in the queue", ("agent_type",), registry=r
        )
        self.llm_calls = p.Counter("reaper_llm_calls", "LLM calls", ("model",), registry=r)
        self.llm_tokens = p.Counter(
            "reaper_llm_tokens", "LLM tokens", ("model", "kind"), registry=r
        )
        self.llm_cost = p.Counter("reaper_llm_cost_usd", "LLM cost (USD)", ("model",), registry=r)
        self.alerts = p.Counter("reaper_alerts", "Alerts raised", ("kind",), registry=r)
        self._server: Any = None

    # -- engine ------------------------------------------------------------------------

    def observe_events(self, state: MissionState, events: Sequence[EventRecord]) -> None:
        """The engine listener's view of one commit."""
        now = utcnow().timestamp()
        for event in events:
            kind = event.kind
            if kind is EventKind.TASK_RESULT:
                result = event.result()
                if result is not None:
                    self._applied(result, now)
            elif kind in _QUEUEING:
                rec = state.tasks.get(str(event.payload.get("task_id", "")))
                # A planned task waiting for approval is queued when granted, not now.
                if rec is not None and (kind is not EventKind.TASK_PLANNED or rec.status.pending):
                    self.tasks_queued.labels(rec.task.agent_type, rec.task.action).inc()
            elif kind is EventKind.PLANNER_DECISION:
                self._decision(event.payload)
        locked = sum(1 for h in state.hosts.values() if h.locked)
        self.hosts_locked.labels(state.mission_id).set(locked)

    def _applied(self, result: ResultEvent, now: float) -> None:
        family = self.tasks_done if result.status is ResultStatus.SUCCESS else self.tasks_failed
        family.labels(result.agent_type, result.action).inc()
        self.result_latency.observe(max(0.0, now - result.ts.timestamp()))

    def _decision(self, payload: dict[str, Any]) -> None:
        calls = payload.get("calls")
        if not isinstance(calls, int) or calls <= 0:
            return  # a rule-based decision: no LLM call
        model = str(payload.get("model") or "unknown")
        self.llm_calls.labels(model).inc(calls)
        usage = payload.get("usage")
        if isinstance(usage, dict):
            for kind in _TOKEN_KINDS:
                value = usage.get(kind)
                if isinstance(value, int) and value > 0:
                    self.llm_tokens.labels(model, kind).inc(value)
        cost = payload.get("cost_usd")
        if isinstance(cost, int | float) and cost > 0:
            self.llm_cost.labels(model).inc(float(cost))

    def set_window(self, mission_id: str, size: int | None) -> None:
        """A mission's dispatch window; None when this engine no longer runs it."""
        if size is None:
            with contextlib.suppress(KeyError):
                self.dispatch_window.remove(mission_id)
        else:
            self.dispatch_window.labels(mission_id).set(size)

    def observe_missions(self, missions: Iterable[MissionSummary]) -> None:
        counts = dict.fromkeys((s.value for s in MissionStatus), 0)
        for m in missions:
            counts[m.status.value] += 1
        for status, n in counts.items():
            self.missions.labels(status).set(n)

    # -- worker ------------------------------------------------------------------------

    def observe_result(self, result: ResultEvent) -> None:
        """The worker's `on_result`: one execution finished and its result published."""
        self.worker_results.labels(result.agent_type, result.action, result.status.value).inc()

    def set_running(self, agent_type: str, in_flight: int) -> None:
        self.tasks_running.labels(agent_type).set(in_flight)

    # -- both --------------------------------------------------------------------------

    def set_depth(self, agent_type: str, depth: int) -> None:
        self.queue_depth.labels(agent_type).set(depth)

    def alert(self, kind: str) -> None:
        self.alerts.labels(kind).inc()

    def render(self) -> bytes:
        """The text exposition format (what the HTTP endpoint serves)."""
        return bytes(prometheus().generate_latest(self.registry))

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve /metrics on a daemon thread; returns the bound port (0 picks a free one)."""
        try:
            started = prometheus().start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc}") from exc
        server = started[0] if isinstance(started, tuple) else None
        self._server = server
        return int(server.server_port) if server is not None else port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
