"""Which hub process consumes which participant's inbound queue, when several share the work.

Each participant's inbound queue has a single active consumer (RabbitMQ's ``x-single-active-consumer``), so its
messages are handled one after another, in the order the participant sent them, by one hub at a time: that is
what keeps the order per sender, and per sender and recipient. With ``I2ES_HUB_SHARD=k/n`` hub ``k`` of ``n``
owns every ``n``-th participant in code order, starting with the ``k``-th; it also waits, as a standby consumer,
on the others' queues, and the broker hands it one if its owner goes away.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

_SHARD = re.compile(r"([1-9][0-9]*)/([1-9][0-9]*)")


@dataclass(frozen=True)
class Shard:
    """Hub ``index`` of ``count`` (both counted from 1)."""

    index: int = 1
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"k/n"`` with ``1 <= k <= n``; anything else is a ValueError that says what is expected."""
        match = _SHARD.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"a hub shard is written k/n, e.g. 1/2 for the first of two hubs, not {text!r}")
        index, count = int(match[1]), int(match[2])
        if index > count:
            raise ValueError(f"hub shard {text!r}: the hub's number k cannot exceed the number of hubs n")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owner_of(self, code: str, participants: Iterable[str]) -> int:
        """The shard that owns ``code``'s queue, among ``participants`` (all of them, this hub's or not)."""
        ordered = sorted(set(participants) | {code})
        return ordered.index(code) % self.count + 1

    def owns(self, code: str, participants: Iterable[str]) -> bool:
        return self.owner_of(code, participants) == self.index


def to_hand_back(
    active_since: Mapping[str, datetime], shard: Shard, participants: Iterable[str], seen: Mapping[str, datetime]
) -> list[str]:
    """The participants whose queues this hub took over (``active_since``: since when it has had deliveries from
    each) and should hand back: their owner (``seen``: when each live hub's shard, ``"k/n"``, last said it was
    alive) has said so since. A hub that went away says nothing more, so its queues stay here until it is back.
    """
    codes = list(participants)
    back = []
    for code, since in active_since.items():
        owner = str(Shard(shard.owner_of(code, codes), shard.count))
        if owner != str(shard) and seen.get(owner, datetime.min.replace(tzinfo=UTC)) > since:
            back.append(code)
    return sorted(back)


def is_leader(shard: Shard, live_shards: Iterable[str]) -> bool:
    """Whether this hub is the live one with the lowest number: it does the work only one hub must do."""
    numbers = [Shard.parse(s).index for s in live_shards if s]
    return not numbers or shard.index <= min(numbers)
