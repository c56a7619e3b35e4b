"""Worker processes the hub talks to over pipes, from its event loop: no thread in the hub waits on them.

Each worker is ``python -m gateway.workers``: it reads a setup, then requests, and answers each request in
order. A frame is a 4-byte big-endian length and a pickle; both ends are this project's code, started by
the hub, on pipes nobody else holds. The worker's standard output is its answers, so anything else it prints
goes to its standard error (the hub's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO

_LENGTH = struct.Struct(">I")


class WorkerFailed(Exception):
    """A worker process ended (or could not start): what it had in hand must be done elsewhere."""


def _frame(value: object) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


class Worker:
    """One worker process, seen from the hub: ``submit`` a request, await its answer."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._reader = asyncio.create_task(self._read_answers())
        self.failed = False

    @classmethod
    async def start(cls, target: str, setup: object) -> Worker:
        """Start ``python -m gateway.workers``, running ``target`` (``module:function``) with ``setup``."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.workers", target,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        worker = cls(process)
        await worker.call(setup)  # the first request is the setup; its answer says the worker is ready
        return worker

    @property
    def load(self) -> int:
        return len(self._waiting)

    def submit(self, request: object) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.failed:
            future.set_exception(WorkerFailed(f"worker {self.process.pid} has ended"))
            return future
        assert self.process.stdin is not None
        self.process.stdin.write(_frame(request))
        self._waiting.append(future)
        return future

    async def call(self, request: object) -> Any:
        return await self.submit(request)

    async def _read_answers(self) -> None:
        assert self.process.stdout is not None
        stdout = self.process.stdout
        try:
            while True:
                (length,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
                answer = pickle.loads(await stdout.readexactly(length))  # noqa: S301 - our own worker, our own pipe
                future = self._waiting.popleft()
                if future.done():
                    continue
                if isinstance(answer, _Failure):
                    future.set_exception(WorkerFailed(answer.text))
                else:
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as error:
            self._fail(f"worker {self.process.pid} has ended ({type(error).__name__})")
        except asyncio.CancelledError:
            self._fail(f"worker {self.process.pid} was stopped")
            raise

    def _fail(self, text: str) -> None:
        self.failed = True
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(WorkerFailed(text))

    async def stop(self) -> None:
        """End the worker: it finishes what it has in hand, reads the end of its input and exits."""
        if self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=5)
        except TimeoutError:
            self.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class _Failure:
    """A request the worker's function raised on: the hub hears the error's type and text."""

    def __init__(self, text: str) -> None:
        self.text = text


def _read_frame(stream: BinaryIO) -> object | None:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(head)
    request: object = pickle.loads(stream.read(length))  # noqa: S301 - from the hub that started this process
    return request


def serve(handle: Callable[[object], object], start: Callable[[object], object]) -> None:
    """The worker's loop: the setup first, then one answer for each request, until the hub closes the pipe."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the answers
    requests = sys.stdin.buffer
    setup = _read_frame(requests)
    if setup is None:
        return
    answers.write(_frame(start(setup)))
    answers.flush()
    while (request := _read_frame(requests)) is not None:
        try:
            answer = handle(request)
        except Exception as error:
            answer = _Failure(f"{type(error).__name__}: {error}")
        answers.write(_frame(answer))
        answers.flush()


def main() -> None:
    """``python -m gateway.workers module:function``: ``function`` takes the setup and returns the handler."""
    module_name, _, function = sys.argv[1].partition(":")
    module = __import__(module_name, fromlist=[function])
    handler: Callable[[object], object] | None = None

    def start(setup: object) -> object:
        nonlocal handler
        handler = getattr(module, function)(setup)
        return True

    def handle(request: object) -> object:
        assert handler is not None
        return handler(request)

    serve(handle, start)


if __name__ == "__main__":
    # Through the package, not this ``__main__`` copy: what is pickled here is unpickled under the same names.
    from gateway.workers import main as run_worker

    run_worker()
