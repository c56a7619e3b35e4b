"""The `i2es` command run as a separate process, as its users run it, against a hub of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.admin import management
from gateway.settings import Settings

I2ES = [sys.executable, "-m", "gateway.cli"]


class Cli:
    def __init__(self, home: Path, vhost: str) -> None:
        self.env = {**os.environ, "I2ES_HOME": str(home), "I2ES_VHOST": vhost, "I2ES_LOG_FORMAT": "json"}
        self.home = home

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*I2ES, *args], env=self.env | (env or {}), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"i2es {' '.join(args)} exited {result.returncode}: {result.stdout} {result.stderr}")
        return result

    def start_hub(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*I2ES, "gateway", "run"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def cli_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    vhost = f"i2es-cli-{uuid.uuid4().hex[:8]}"
    tool = Cli(tmp_path_factory.mktemp("cli-home"), vhost)
    yield tool
    management(Settings(vhost=vhost)).delete_vhost(vhost)
