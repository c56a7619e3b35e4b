"""The PostgreSQL server of scripts/postgres, for the tests of the ledger kept in PostgreSQL: started once per test
run, and an empty database of its own for each test.

The fixture ``postgres_ledger_url`` lives here; a test module (or a conftest) imports it to use it.
"""

from __future__ import annotations

import functools
import re
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from gateway.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "postgres"
# The first start may install the Debian package.
START_TIMEOUT = 900.0
# PostgreSQL cuts identifiers at 63 bytes; the unique suffix takes 13.
MAX_PREFIX = 63 - 13


class PostgresError(RuntimeError):
    """scripts/postgres failed; the sentence carries what it said."""


@functools.cache
def postgres_url() -> str:
    """The URL of database ``i2es`` on the project-local server, started by ``scripts/postgres start`` on first use.

    The start is idempotent, so the server may already run (the bench's, a developer's); it is left running.
    """
    done = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, timeout=START_TIMEOUT, check=False)
    if done.returncode != 0:
        raise PostgresError(f"scripts/postgres start exited with {done.returncode}: {done.stderr[-2000:]}")
    words = done.stdout.split()
    if not words or not words[-1].startswith("postgresql://"):
        raise PostgresError(f"scripts/postgres start printed no URL: {done.stdout!r}")
    return words[-1]


def database_name(url: str) -> str:
    """The database a ``postgresql://`` URL names."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead."""
    return urllib.parse.urlsplit(url)._replace(path="/" + urllib.parse.quote(name)).geturl()


def fresh_database(name_prefix: str) -> str:
    """Create a new, empty database owned by ``i2es``, named ``<name_prefix>_<12 hex digits>``; return its URL.

    The prefix is lower-cased, anything but letters, digits and ``_`` becomes ``_``, and it is cut to fit.
    """
    prefix = re.sub(r"[^a-z0-9_]", "_", name_prefix.lower())[:MAX_PREFIX] or "db"
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = postgres_url()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        owner = conn.info.user
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
    return with_database(admin_url, name)


def drop_database(url: str) -> None:
    """Drop the database ``url`` names, closing the connections still open to it; fine if it is already gone."""
    admin_url = postgres_url()
    name = database_name(url)
    if name == database_name(admin_url):
        raise ValueError(f"refusing to drop the server's own database {name!r}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of an empty database of the test's own (for ``I2ES_LEDGER_URL``), dropped after the test."""
    url = fresh_database(request.node.originalname if isinstance(request.node, pytest.Function) else "test")
    try:
        yield url
    finally:
        drop_database(url)
