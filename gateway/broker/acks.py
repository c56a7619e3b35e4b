"""Which inbound deliveries to acknowledge with one ``multiple`` ack, and which one by one.

The broker numbers a channel's deliveries in the order it sends them. An ack with ``multiple`` set settles
every delivery up to its number, so it may only be sent for a run of deliveries that are all handled: the
hub holds deliveries from several queues at once, and one taken later may be handled first.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable


class Outstanding:
    """The delivery tags of one channel not yet settled, in the order they arrived."""

    def __init__(self) -> None:
        self._tags: list[int] = []

    def __len__(self) -> int:
        return len(self._tags)

    def received(self, tag: int) -> None:
        bisect.insort(self._tags, tag)  # the consumers' callbacks may run out of the broker's order

    def settle(self, handled: Iterable[int]) -> tuple[int | None, list[int]]:
        """Forget ``handled``; return the tag for one ``multiple`` ack (the end of the run of handled deliveries
        that starts with the oldest outstanding one, if that run has two or more), and the tags to ack one by one.
        """
        done = set(handled)
        run = 0
        while run < len(self._tags) and self._tags[run] in done:
            run += 1
        multiple = self._tags[run - 1] if run >= 2 else None
        singles = [t for t in self._tags[:run] if multiple is None] + [t for t in self._tags[run:] if t in done]
        self._tags = [t for t in self._tags[run:] if t not in done]
        return multiple, singles

    def forget(self, tags: Iterable[int]) -> None:
        """Deliveries settled otherwise (rejected, requeued)."""
        gone = set(tags)
        self._tags = [t for t in self._tags if t not in gone]
