"""Agents: worker loops that run tasks on hosts through transports and OS action code."""
