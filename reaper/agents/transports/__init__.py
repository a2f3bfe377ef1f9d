"""Transports: how an agent reaches a host (`sim`, `local`, `ssh`, `winrm`).

Real transports are imported lazily by `reaper.agents.runners.default_runners`, so their
optional packages load only when a lab uses them.
"""

from reaper.agents.transports.sim import SimHostState, SimRunner

__all__ = ["SimHostState", "SimRunner"]
