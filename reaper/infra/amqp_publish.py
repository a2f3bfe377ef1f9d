"""Publishing a batch on an aiormq channel in one write, each message confirmed.

`aiormq.Channel.basic_publish` queues each message as a frame of its own for the connection's
writer, under the channel's lock: a batch of N tasks costs N lock rounds, N writer passes and
N socket writes (each one waking the broker). Here the whole batch is numbered under one hold
of the lock and marshalled into one frame buffer, so the broker reads it in one go; each
message still gets its delivery tag, its own confirm future and, being mandatory, its own
return (keyed by message id), exactly as `basic_publish` registers them. This leans on
aiormq's channel bookkeeping (`delivery_tag`, `confirmations`, `message_id_delivery_tag`,
`write_queue`), which `basic_publish` itself uses; `tests/infra/test_amqp.py` covers it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame
from pamqp import commands as spec
from pamqp.header import ContentHeader

__all__ = ["publish_batch"]

Message = tuple[bytes, str, spec.Basic.Properties]  # body, routing key, properties


async def publish_batch(channel: aiormq.Channel, messages: Sequence[Message]) -> list[Any]:
    """Publish `messages` (mandatory, default exchange) and wait for every confirm: a list
    of confirm frames, or of returned messages (`DeliveredMessage`) where no queue took one.
    Every message needs a distinct `message_id` (returns are matched by it)."""
    confirms: list[asyncio.Future[Any]] = []
    ids: list[tuple[str, int]] = []
    async with channel.lock:
        first = channel.delivery_tag
        try:
            frames: list[Any] = []
            for body, route, properties in messages:
                channel.delivery_tag += 1
                tag = channel.delivery_tag
                confirm = channel.create_future()
                channel.confirmations[tag] = confirm
                assert properties.message_id  # returns are matched by it
                channel.message_id_delivery_tag[properties.message_id] = tag
                confirms.append(confirm)
                ids.append((properties.message_id, tag))
                frames.append(spec.Basic.Publish(routing_key=route, mandatory=True))
                frames.append(ContentHeader(properties=properties, body_size=len(body)))
                frames += channel._split_body(body)
            await channel.write_queue.put(ChannelFrame.marshall(channel.number, frames))
        except BaseException:
            # Nothing was queued for the broker: give the numbers back, as basic_publish does.
            channel.delivery_tag = first
            for (message_id, tag), confirm in zip(ids, confirms, strict=True):
                channel.confirmations.pop(tag, None)
                if channel.message_id_delivery_tag.get(message_id) == tag:
                    del channel.message_id_delivery_tag[message_id]
                confirm.cancel()
            raise
    try:
        return list(await asyncio.gather(*confirms))
    finally:
        for message_id, tag in ids:
            if channel.message_id_delivery_tag.get(message_id) == tag:
                del channel.message_id_delivery_tag[message_id]
