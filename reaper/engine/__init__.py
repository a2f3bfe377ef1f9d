"""The mission engine: the event loop that plans, admits and dispatches tasks (`core`), the
pure fold of results into mission state (`state`), admission of planned tasks through the
policy (`admission`), and the adaptive dispatch window (`window`)."""

from reaper.engine.core import EngineSettings, Listener, MissionEngine

__all__ = ["EngineSettings", "Listener", "MissionEngine"]
