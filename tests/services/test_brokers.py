"""The RabbitMQ broker killed and restarted mid-mission (amqp+postgres): a node of the
test's own, never the machine's shared broker. The mission completes, each result applied
once: unacked deliveries come back from the durable quorum queues, workers and engines
reconnect."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.brokers import PrivateRabbit
from tests.services.harness import (
    Cluster,
    backend_spec,
    check_invariants,
    lab,
    mission_id,
    results_applied,
    submit,
    wait_done,
    wait_for,
)

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


async def test_rabbitmq_restarted_mid_mission_the_mission_recovers(tmp_path: Path) -> None:
    rabbit = PrivateRabbit(tmp_path / "rabbit")
    spec = backend_spec("amqp+postgres", tmp_path, amqp_url=rabbit.url)
    rabbit.start()
    cluster = Cluster(spec, tmp_path / "logs", lease_ttl_s=1.0)
    mid = mission_id("akill")
    backend = None
    try:
        with cluster:
            await submit(spec, lab(40, latency=(0.05, 0.15)), mid)
            backend = spec.open()
            cluster.engine("--mission", mid)
            cluster.worker("linux")

            async def started() -> bool:
                return await results_applied(backend, mid) >= 10

            await wait_for(started, timeout=30, what="results before the outage")
            rabbit.kill()  # every connection drops mid-mission, deliveries in flight
            assert await results_applied(backend, mid) < 80
            rabbit.start()  # same mnesia directory: the durable queues come back
            final = await wait_done(backend, mid, timeout=120)
            await check_invariants(backend, final)
    finally:
        rabbit.stop()
        if backend is not None:
            await backend.close()
