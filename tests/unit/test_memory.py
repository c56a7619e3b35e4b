"""What a burst left free goes back to the system (glibc), so the hub's memory comes down after a backlog."""

from __future__ import annotations

import platform

import pytest

from gateway.memory import give_back_free_memory


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_memory_freed_after_a_burst_goes_back_to_the_system() -> None:
    give_back_free_memory()
    # Blocks of 32 KiB come from the C heap (not mmap); the one kept after them holds the heap's top in place, so
    # free() alone gives nothing back.
    burst = [bytearray(32 * 1024) for _ in range(2048)]
    kept = bytearray(1024)
    for block in burst:
        block[::4096] = b"x" * len(block[::4096])  # touched: resident
    peak = resident_kib()
    del burst
    freed = resident_kib()

    assert give_back_free_memory()
    after = resident_kib()

    assert peak - freed < 16 * 1024, "the allocator gave the burst back by itself: the test proves nothing here"
    assert freed - after > 48 * 1024, f"{freed - after} KiB given back of a 64 MiB burst"
    assert kept
