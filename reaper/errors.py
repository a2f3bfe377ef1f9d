"""Reaper's exceptions, mapped from third-party errors at each boundary.

    ReaperError
    ├── ConfigError            bad lab file, flag, config value or missing optional package
    ├── BadRequestError        a request that does not fit the mission (approve a finished task)
    ├── MissionNotFoundError
    ├── MissionExistsError
    ├── BackendError           a store, queue or bus failed
    │   ├── BackendUnavailableError  its server cannot be reached (refused, DNS, timeout)
    │   ├── StaleStateError    optimistic-concurrency conflict (version moved on)
    │   └── LeaseLostError     another engine owns the mission
    ├── TransportError         reaching or running on a host failed (error_code, retriable)
    └── PlannerError           a planner could not produce a plan

Policy refusals are recorded events, never exceptions.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "BadRequestError",
    "ConfigError",
    "LeaseLostError",
    "MissionExistsError",
    "MissionNotFoundError",
    "PlannerError",
    "ReaperError",
    "StaleStateError",
    "TransportError",
]


class ReaperError(Exception):
    """Base of every error Reaper raises on purpose."""


class ConfigError(ReaperError):
    pass


class BadRequestError(ReaperError):
    pass


class MissionNotFoundError(ReaperError):
    def __init__(self, mission_id: str) -> None:
        super().__init__(f"no mission {mission_id!r}")
        self.mission_id = mission_id


class MissionExistsError(ReaperError):
    def __init__(self, mission_id: str) -> None:
        super().__init__(f"mission {mission_id!r} already exists")
        self.mission_id = mission_id


class BackendError(ReaperError):
    pass


class BackendUnavailableError(BackendError):
    """The backend's server (PostgreSQL, Redis) cannot be reached: `reaper` exits 4."""


class StaleStateError(BackendError):
    pass


class LeaseLostError(BackendError):
    pass


class TransportError(ReaperError):
    """A failure reaching or running on a host, classified for the engine."""

    def __init__(self, message: str, *, error_code: str, retriable: bool) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.retriable = retriable


class PlannerError(ReaperError):
    pass
