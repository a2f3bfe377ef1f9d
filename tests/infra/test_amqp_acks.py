"""The AMQP settler: which frames a settlement sends, against a channel that records them
(the aiormq channel's basic_ack/basic_nack, the boundary the settler calls)."""

from __future__ import annotations

from typing import Any, cast

import pytest

pytest.importorskip("aiormq")

from aiormq.abc import AbstractChannel

from reaper.infra.amqp_acks import Settler


class RecordingChannel:
    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool, bool]] = []  # (kind, tag, multiple, wait)
        self.is_closed = False

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.frames.append(("ack", tag, multiple, wait))

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        self.frames.append(("nack" if requeue else "drop", tag, multiple, wait))


def _setup(tags: range) -> tuple[Settler, RecordingChannel, Any]:
    settler, recorder = Settler(), RecordingChannel()
    channel = cast(AbstractChannel, recorder)
    for tag in tags:
        settler.delivered(channel, tag)
    return settler, recorder, channel


async def test_a_run_of_the_oldest_tags_is_one_multiple_ack() -> None:
    settler, rec, channel = _setup(range(1, 7))
    await settler.ack(channel, [3, 1, 2])
    assert rec.frames == [("ack", 3, True, True)]
    assert settler.open_count() == 3


async def test_tags_above_an_open_one_are_acked_one_by_one() -> None:
    settler, rec, channel = _setup(range(1, 7))
    await settler.ack(channel, [1, 2, 4, 6])  # 3 and 5 are still held (buffered or running)
    assert rec.frames == [
        ("ack", 2, True, False),
        ("ack", 4, False, False),
        ("ack", 6, False, True),
    ]
    rec.frames.clear()
    await settler.ack(channel, [5, 3])  # now nothing below them is open
    assert rec.frames == [("ack", 5, True, True)]
    assert settler.open_count() == 0


async def test_a_handed_back_tag_is_never_covered_and_never_acked_twice() -> None:
    settler, rec, channel = _setup(range(1, 5))
    await settler.nack(channel, 2, requeue=True)
    await settler.ack(channel, [1, 3, 2, 9])  # 2 is settled already, 9 never delivered
    await settler.ack(channel, [3])
    assert rec.frames == [("nack", 2, False, False), ("ack", 3, True, True)]
    await settler.nack(channel, 4, requeue=False)
    await settler.nack(channel, 4, requeue=True)
    assert rec.frames[-1] == ("drop", 4, False, False)
    assert settler.open_count() == 0


async def test_one_ack_is_a_single_frame_and_closed_channels_are_forgotten() -> None:
    settler, rec, channel = _setup(range(1, 3))
    await settler.ack(channel, [1])
    assert rec.frames == [("ack", 1, False, True)]
    rec.is_closed = True
    settler.forget_closed()
    assert settler.open_count() == 0
    await settler.ack(channel, [2])
    assert rec.frames == [("ack", 1, False, True)]
