"""The broker's production transport: TLS on 5671, client certificates from the hub CA, SASL EXTERNAL.

Writes a RabbitMQ configuration in which the only AMQP listener is TLS, the broker verifies the peer
and refuses a connection without a certificate, checks the client certificate against the hub's CRL,
and takes the broker user name from the certificate's CN (the participant code).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from certs.authority import Profile
from certs.keys import write_certificates
from gateway.home import Home
from gateway.security import issue, publish_crl
from gateway.settings import Settings


@dataclass(frozen=True)
class TlsBroker:
    folder: Path
    host: str
    port: int
    management_port: int

    @property
    def config(self) -> Path:
        return self.folder / "rabbitmq.conf"

    @property
    def advanced_config(self) -> Path:
        return self.folder / "advanced.config"

    @property
    def plugins(self) -> Path:
        return self.folder / "enabled_plugins"

    def url(self, certificate: Path, key: Path, vhost: str = "") -> str:
        """An AMQP URL that logs in with a client certificate (aio-pika, aiormq read these options)."""
        query = urllib.parse.urlencode(
            {"auth": "external", "cafile": str(self.folder / "ca.pem"), "certfile": str(certificate),
             "keyfile": str(key)}
        )  # fmt: skip
        return f"amqps://{self.host}:{self.port}/{urllib.parse.quote(vhost, safe='')}?{query}"


def write_tls_broker(
    settings: Settings, folder: Path, now: datetime, *, actor: str, host: str = "localhost", port: int = 5671,
    management_port: int = 15672, bind: str = "127.0.0.1",
) -> TlsBroker:  # fmt: skip
    """Issue the broker's server certificate and the hub's client certificate, and write the configuration."""
    home = Home(settings.home)
    folder.mkdir(parents=True, exist_ok=True)
    broker = TlsBroker(folder, host, port, management_port)
    issue(settings, "HUB", Profile.TLS_SERVER, now, actor=actor, out=folder / "server.pem",
          dns_names=tuple(dict.fromkeys((host, "localhost"))))  # fmt: skip
    issue(settings, "HUB", Profile.TLS_CLIENT, now, actor=actor, out=home.hub_dir / "tls.pem")
    authority = home.authority()
    write_certificates(folder / "ca.pem", authority.anchors)
    publish_crl(settings, now, actor=actor)
    broker.config.write_text(
        f"""# RabbitMQ for the I2ES hub in production: TLS only, certificate login (SASL EXTERNAL).
# No plain AMQP listener: every participant connects with a client certificate from the hub CA.
listeners.tcp = none
listeners.ssl.default = {bind}:{port}
# The broker user is the certificate's CN, which is the participant code.
ssl_cert_login_from = common_name
auth_mechanisms.1 = EXTERNAL
# The certificates, the peer check and the CRL check are in advanced.config beside this file.
# The management API lists connections from statistics collected this often (ms): a revocation closes the
# revoked participant's connections by that list, so it must be fresh.
collect_statistics_interval = 1000
management.tcp.ip = 127.0.0.1
management.tcp.port = {management_port}
# The hub refuses messages over 1 MiB itself, with a signed reason; the broker refuses above 4 MiB.
max_message_size = 4194304
loopback_users.guest = true
log.console = false
log.file.level = info
"""
    )
    # In advanced.config, because the CRL cache cannot be written in rabbitmq.conf's syntax.
    broker.advanced_config.write_text(
        f"""%% TLS for the I2ES hub's broker: the hub CA, verify_peer, fail_if_no_peer_cert, and a CRL check of
%% each client certificate against the CRL that `i2es cert revoke` rewrites.
[
  {{rabbit, [
    {{ssl_options, [
      {{cacertfile, "{folder / "ca.pem"}"}},
      {{certfile, "{folder / "server.pem"}"}},
      {{keyfile, "{folder / "server.key"}"}},
      {{verify, verify_peer}},
      {{fail_if_no_peer_cert, true}},
      {{depth, 2}},
      {{versions, ['tlsv1.3', 'tlsv1.2']}},
      {{crl_check, peer}},
      {{crl_cache, {{ssl_crl_hash_dir, {{internal, [{{dir, "{home.crl_dir}"}}]}}}}}}
    ]}}
  ]}}
].
"""
    )
    broker.plugins.write_text("[rabbitmq_management,rabbitmq_auth_mechanism_ssl].\n")
    return broker
