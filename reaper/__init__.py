"""Reaper: LLM-driven planning agent toolkit for lab orchestration."""

__version__ = "0.1.0"
