"""The three-node RabbitMQ cluster of scripts/cluster, for the failure tests: started, a node killed and started
again, and where each quorum queue's leader is."""

from __future__ import annotations

import subprocess
import urllib.parse
from dataclasses import dataclass

from bench._site import api
from gateway.broker.management import Management
from gateway.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "cluster"
START_TIMEOUT = 300.0


class ClusterError(RuntimeError):
    """scripts/cluster failed; the sentence carries what it said."""


@dataclass(frozen=True)
class ClusterNode:
    """Node ``number`` of scripts/cluster, with the ports deploy/rabbitmq/cluster-<number>.conf gives it."""

    number: int

    @property
    def name(self) -> str:
        return f"i2es-c{self.number}@localhost"

    @property
    def amqp_port(self) -> int:
        return 5700 + self.number

    @property
    def management_port(self) -> int:
        return 15700 + self.number

    @property
    def broker_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def settings_fields(self) -> dict[str, str]:
        """The hub's settings that make it (and its participants) use this node."""
        return {"broker_url": self.broker_url, "management_url": self.management_url}

    def management(self) -> Management:
        return Management.from_urls(self.management_url, self.broker_url)


class Cluster:
    """scripts/cluster, called as an operator calls it."""

    nodes = (ClusterNode(1), ClusterNode(2), ClusterNode(3))

    def node(self, number: int) -> ClusterNode:
        return self.nodes[number - 1]

    def run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 and args[0] != "status":
            raise ClusterError(f"scripts/cluster {' '.join(args)} exited with {done.returncode}: {done.stderr[-2000:]}")
        return done

    def is_up(self) -> bool:
        """All three nodes run, as one cluster."""
        return self.run("status").returncode == 0

    def start(self) -> None:
        self.run("start")

    def stop(self) -> None:
        self.run("stop")

    def kill(self, number: int) -> None:
        """SIGKILL the node's Erlang VM."""
        self.run("kill", str(number))

    def restart(self, number: int) -> None:
        self.run("restart", str(number))

    def leaders(self, vhost: str, through: int = 2) -> dict[str, str]:
        """Each quorum queue of ``vhost`` and the node its leader is on, as node ``through`` sees it."""
        queues = api(self.node(through).management(), "GET", f"queues/{urllib.parse.quote(vhost, safe='')}") or []
        return {q["name"]: q.get("leader") or q.get("node") for q in queues if q.get("type") == "quorum"}
