"""Backends: mission store, task queue and event bus, behind the protocols in `base`."""
