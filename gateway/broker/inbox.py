"""Deliveries from many queues, taken in turn, so that one queue's backlog never waits in front of another's."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairInbox(Generic[T]):
    """Round robin over the queues that have something: each ``get`` takes from the next one in turn.

    Within one queue the order is kept. What waits here is bounded by the broker: each consumer has at most its
    prefetch count of unacknowledged deliveries.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, deque[T]] = {}
        self._turns: deque[str] = deque()  # the queues that have something, in the order they will be served
        self._ready = asyncio.Event()
        self._count = 0

    def put(self, queue: str, item: T) -> None:
        waiting = self._waiting.setdefault(queue, deque())
        if not waiting:
            self._turns.append(queue)
        waiting.append(item)
        self._count += 1
        self._ready.set()

    def __len__(self) -> int:
        return self._count

    async def get(self) -> tuple[str, T]:
        while not self._turns:
            self._ready.clear()
            await self._ready.wait()
        return self._take()

    async def get_many(self, limit: int) -> list[tuple[str, T]]:
        """Wait for one delivery, then take, in turn, what else is already here: at most ``limit``."""
        taken = [await self.get()]
        while self._turns and len(taken) < limit:
            taken.append(self._take())
        return taken

    def take_all(self, queue: str) -> list[T]:
        """Remove and return what waits from ``queue``, in order."""
        waiting = self._waiting.pop(queue, None)
        if not waiting:
            return []
        self._turns.remove(queue)
        self._count -= len(waiting)
        return list(waiting)

    def _take(self) -> tuple[str, T]:
        queue = self._turns.popleft()
        waiting = self._waiting[queue]
        item = waiting.popleft()
        self._count -= 1
        if waiting:
            self._turns.append(queue)  # to the back: every other queue with something goes first
        return queue, item
