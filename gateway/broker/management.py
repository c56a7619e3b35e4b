"""A small client for RabbitMQ's management HTTP API: vhosts, users and permissions."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any


class ManagementError(RuntimeError):
    """The management API refused a request or could not be reached."""


@dataclass(frozen=True)
class Management:
    """The management API at ``url``, as the administrator ``user``."""

    url: str
    user: str
    password: str
    timeout: float = 15.0

    @classmethod
    def from_urls(cls, management_url: str, broker_url: str) -> Management:
        """Take the administrator's credentials from the AMQP URL (the same user administers both)."""
        parsed = urllib.parse.urlsplit(broker_url)
        return cls(
            url=management_url.rstrip("/"),
            user=urllib.parse.unquote(parsed.username or "guest"),
            password=urllib.parse.unquote(parsed.password or "guest"),
        )

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/api/{path}", data=data, method=method)  # noqa: S310
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if method == "DELETE" and exc.code == 404:
                return None
            detail = exc.read().decode(errors="replace")[:300]
            raise ManagementError(f"{method} /api/{path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ManagementError(f"cannot reach the RabbitMQ management API at {self.url}: {exc}") from None
        return json.loads(payload) if payload else None

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def overview(self) -> Any:
        return self._request("GET", "overview")

    def put_vhost(self, vhost: str) -> None:
        self._request("PUT", f"vhosts/{self._q(vhost)}", {"description": "I2ES gateway"})

    def delete_vhost(self, vhost: str) -> None:
        self._request("DELETE", f"vhosts/{self._q(vhost)}")

    def put_user(self, name: str, password: str | None, tags: str = "") -> None:
        body: dict[str, Any] = {"tags": tags}
        if password is None:
            body["password_hash"] = ""  # no password: certificate (EXTERNAL) login only
        else:
            body["password"] = password
        self._request("PUT", f"users/{self._q(name)}", body)

    def delete_user(self, name: str) -> None:
        self._request("DELETE", f"users/{self._q(name)}")

    def put_permissions(self, vhost: str, user: str, configure: str, write: str, read: str) -> None:
        self._request(
            "PUT",
            f"permissions/{self._q(vhost)}/{self._q(user)}",
            {"configure": configure, "write": write, "read": read},
        )

    def put_topic_permissions(self, vhost: str, user: str, exchange: str, write: str, read: str) -> None:
        self._request(
            "PUT",
            f"topic-permissions/{self._q(vhost)}/{self._q(user)}",
            {"exchange": exchange, "write": write, "read": read},
        )

    def put_user_limits(self, user: str, *, max_connections: int, max_channels: int) -> None:
        for name, value in (("max-connections", max_connections), ("max-channels", max_channels)):
            self._request("PUT", f"user-limits/{self._q(user)}/{name}", {"value": value})

    def user_limits(self, user: str) -> Any:
        return self._request("GET", f"user-limits/{self._q(user)}")

    def queue(self, vhost: str, name: str) -> Any:
        return self._request("GET", f"queues/{self._q(vhost)}/{self._q(name)}")

    def peek(self, vhost: str, queue: str, count: int) -> Any:
        """Look at up to ``count`` messages at the head of a queue and leave them there (requeued)."""
        return self._request(
            "POST",
            f"queues/{self._q(vhost)}/{self._q(queue)}/get",
            {"count": count, "ackmode": "ack_requeue_true", "encoding": "base64", "truncate": 65536},
        )

    def connections(self) -> Any:
        return self._request("GET", "connections")

    def close_connections(self, user: str, reason: str) -> int:
        """Close every connection of ``user``; returns how many were closed."""
        closed = 0
        for connection in self.connections() or []:
            if connection.get("user") == user:
                self._request("DELETE", f"connections/{self._q(connection['name'])}", None, {"X-Reason": reason})
                closed += 1
        return closed
