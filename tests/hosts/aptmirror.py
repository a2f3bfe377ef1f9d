"""The signed local apt mirror the tests use: the code lives in benchmarks/aptmirror.py,
shared with `reaper bench ssh`'s converge row."""

from __future__ import annotations

from benchmarks.aptmirror import CACHE, Mirror, build_repo, fetch, missing_tools, serve

__all__ = ["CACHE", "Mirror", "build_repo", "fetch", "missing_tools", "serve"]
