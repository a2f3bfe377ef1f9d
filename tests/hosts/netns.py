"""The namespace sshd hosts the tests use: the code lives in benchmarks/netns.py, shared with
`reaper bench ssh` (see there for what a host is made of)."""

from __future__ import annotations

from benchmarks.netns import CACHE, PASSWORD, USER, NsHost, NsLab, missing_requirements

__all__ = ["CACHE", "PASSWORD", "USER", "NsHost", "NsLab", "missing_requirements"]
