"""A service in a child process (the hub, the bare relay): started, awaited until ready, stopped with SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from bench._cores import command_on
from bench._site import BenchError
from gateway.settings import PROJECT_ROOT

STOP_TIMEOUT = 30.0


class ServiceProcess:
    """One child process whose output goes to ``log``; ready once ``ready_marker`` appears in it."""

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, marker: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the {self.name} exited with status {self.process.returncode}: {self.tail()}")
            if marker in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise BenchError(f"the {self.name} did not say {marker!r} within {timeout} s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        """SIGTERM, then wait for the exit; SIGKILL only if it does not stop in time (and say so)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                print(f"the {self.name} did not stop within {STOP_TIMEOUT} s of SIGTERM: killed", file=sys.stderr)
        return self.process.returncode


@contextmanager
def service(
    name: str,
    module_args: Sequence[str],
    log: Path,
    ready_marker: str,
    env: Mapping[str, str] | None = None,
    stdin_line: str | None = None,
    cpus: frozenset[int] | None = None,
) -> Iterator[ServiceProcess]:
    """Run ``python -m <module_args>`` until the block ends; ``stdin_line`` is written to its input (a secret);
    ``cpus``, if given, are the only CPUs it runs on."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command_on(cpus, [sys.executable, "-m", *module_args]),
            cwd=PROJECT_ROOT,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin_line is not None else subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    if stdin_line is not None and process.stdin is not None:
        process.stdin.write(stdin_line.encode() + b"\n")
        process.stdin.close()
    running = ServiceProcess(name, process, log)
    try:
        running.wait_ready(ready_marker)
        yield running
    finally:
        running.stop()


def hub_process(
    environment: Mapping[str, str], log: Path, name: str = "hub", cpus: frozenset[int] | None = None
) -> AbstractContextManager[ServiceProcess]:
    """`i2es gateway run`, as an operator starts it, on ``cpus`` if given; ``name`` is how the bench's messages
    call it."""
    return service(name, ["gateway.cli", "gateway", "run"], log, '"hub_started"', environment, cpus=cpus)


def relay_process(
    url: str, log: Path, *, concurrency: int = 1, batch: int | None = None
) -> AbstractContextManager[ServiceProcess]:
    """The bare relay of ``bench._relay``, in batches of up to ``batch`` if given, else ``concurrency`` at once
    one by one; its broker URL (with a password) goes through its input."""
    mode = ["--batch", str(batch)] if batch is not None else ["--concurrency", str(concurrency)]
    return service("relay", ["bench._relay", *mode], log, "relay_started", stdin_line=url)
