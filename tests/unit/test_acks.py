"""Acknowledging in runs: one ``multiple`` ack settles every delivery up to it, so it covers only handled ones."""

from __future__ import annotations

from gateway.broker.acks import Outstanding


def outstanding(*tags: int) -> Outstanding:
    held = Outstanding()
    for tag in tags:
        held.received(tag)
    return held


def test_a_handled_run_from_the_oldest_delivery_takes_one_multiple_ack() -> None:
    held = outstanding(1, 2, 3, 4)
    assert held.settle([1, 2, 3]) == (3, [])
    assert len(held) == 1


def test_a_single_handled_delivery_is_acknowledged_alone() -> None:
    held = outstanding(1, 2)
    assert held.settle([1]) == (None, [1])
    assert held.settle([2]) == (None, [2])
    assert len(held) == 0


def test_deliveries_behind_an_unhandled_one_are_acknowledged_one_by_one() -> None:
    # 2 came from another queue and is still waiting: a multiple ack for 4 would settle it unhandled.
    held = outstanding(1, 2, 3, 4)
    assert held.settle([3, 4]) == (None, [3, 4])
    assert held.settle([1]) == (None, [1])
    assert held.settle([2]) == (None, [2])


def test_a_run_then_stragglers() -> None:
    held = outstanding(1, 2, 3, 4, 5)
    assert held.settle([1, 2, 5]) == (2, [5])
    assert held.settle([3, 4]) == (4, [])
    assert len(held) == 0


def test_deliveries_registered_out_of_order_are_kept_in_the_brokers_order() -> None:
    held = outstanding(2, 1, 3)
    assert held.settle([1, 2]) == (2, [])


def test_requeued_deliveries_are_forgotten() -> None:
    held = outstanding(1, 2, 3)
    held.forget([1])
    assert held.settle([2, 3]) == (3, [])
