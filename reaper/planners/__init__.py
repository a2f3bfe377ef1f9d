"""Planners: the rule-based one and the LLM one share the `MissionPlanner` protocol."""

from reaper.planners.base import MissionPlanner, Plan
from reaper.planners.rules import RuleBasedPlanner

__all__ = ["MissionPlanner", "Plan", "RuleBasedPlanner"]
