"""Which hub consumes which participant's queue, and when a hub gives a queue back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.shards import Shard, is_leader, to_hand_back

CODES = ["AT", "CH", "DE", "FR", "IT", "NL"]
T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "0/2", "3/2", "1", "1/0", "a/b", "-1/2", "1/2/3"])
def test_a_shard_that_is_not_k_of_n_is_refused_with_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"k/n|cannot exceed"):
        Shard.parse(text)


def test_every_participant_has_exactly_one_owner_and_the_hubs_get_equal_shares() -> None:
    shards = [Shard(k, 3) for k in (1, 2, 3)]
    owners = {code: [s.index for s in shards if s.owns(code, CODES)] for code in CODES}
    assert all(len(o) == 1 for o in owners.values())
    assert sorted(sum(1 for o in owners.values() if o == [k]) for k in (1, 2, 3)) == [2, 2, 2]


def test_one_hub_owns_everything() -> None:
    assert all(Shard().owns(code, CODES) for code in CODES)


def test_a_queue_goes_back_once_its_owner_has_said_it_is_alive_since_this_hub_took_it() -> None:
    me = Shard(1, 2)
    foreign = next(c for c in CODES if not me.owns(c, CODES))
    taken_at = {foreign: T0}
    assert to_hand_back(taken_at, me, CODES, {"2/2": T0 + timedelta(seconds=1)}) == [foreign]


def test_a_queue_stays_while_its_owner_is_silent() -> None:
    me = Shard(1, 2)
    foreign = next(c for c in CODES if not me.owns(c, CODES))
    assert to_hand_back({foreign: T0}, me, CODES, {"2/2": T0 - timedelta(seconds=1)}) == []  # seen before: dead
    assert to_hand_back({foreign: T0}, me, CODES, {}) == []


def test_the_lowest_numbered_live_hub_leads() -> None:
    assert is_leader(Shard(1, 2), ["1/2", "2/2"])
    assert not is_leader(Shard(2, 2), ["1/2", "2/2"])
    assert is_leader(Shard(2, 2), ["2/2"])  # the first is gone
