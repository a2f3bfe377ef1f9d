"""Redis backend: task queue and event bus on Redis Streams (`pip install 'reaper-lab[redis]'`).

The factory imports this module only when a `redis://` URL is used.
"""

from __future__ import annotations

from reaper.infra.redis_bus import RedisEventBus
from reaper.infra.redis_queue import RedisTaskQueue

__all__ = ["RedisEventBus", "RedisTaskQueue"]
