"""scripts/postgres and its test helpers: the server starts, a fresh database takes a table and a row, and is gone
once dropped."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from tests.support.postgres import (
    SCRIPT,
    database_name,
    drop_database,
    fresh_database,
    postgres_ledger_url,
    postgres_url,
)

__all__ = ["postgres_ledger_url"]  # the fixture, for the test below


def database_exists(name: str) -> bool:
    with psycopg.connect(postgres_url()) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_server_is_up_and_says_its_url() -> None:
    url = postgres_url()
    status = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, timeout=60, check=False)
    printed = subprocess.run([str(SCRIPT), "url"], capture_output=True, text=True, timeout=60, check=True)
    assert status.returncode == 0, status.stderr
    assert printed.stdout.strip() == url
    assert url.startswith("postgresql://i2es:")


def test_fresh_database_holds_a_row_then_is_dropped() -> None:
    url = fresh_database("test-Fresh database")
    name = database_name(url)
    assert name.startswith("test_fresh_database_")
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database(), current_user").fetchone() == (name, "i2es")
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
            conn.execute("CREATE TABLE entry (seq bigint PRIMARY KEY, body text NOT NULL)")
            conn.execute("INSERT INTO entry VALUES (%s, %s)", (1, "first"))
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT seq, body FROM entry").fetchall() == [(1, "first")]
            # Still connected: the drop closes this connection.
            drop_database(url)
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
    finally:
        drop_database(url)
    assert not database_exists(name)


def test_fixture_gives_an_empty_database_of_its_own(postgres_ledger_url: str) -> None:
    assert database_name(postgres_ledger_url).startswith("test_fixture_gives_an_empty_database_of_its_own_")
    assert database_exists(database_name(postgres_ledger_url))
    with psycopg.connect(postgres_ledger_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
