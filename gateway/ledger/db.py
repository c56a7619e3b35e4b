"""The ledger's database: SQLite (the embedded default) or PostgreSQL, behind one small interface.

The ledger and the trade record write their SQL once, with ``?`` placeholders and SQLite's column types;
``Database`` runs it on either engine. A write is a ``transaction()``: one at a time across every process
that shares the database (``BEGIN IMMEDIATE`` in SQLite, a transaction-scoped advisory lock in
PostgreSQL), so the ledger's sequence numbers and hash chain have one order. A transaction opened inside
another joins it: a group of appends commits once. ``turn()`` waits for the write lock without stopping the
event loop: a hub waiting for another's batch to commit goes on publishing and confirming. A failure of the
engine itself (disk full, lock held too long, connection lost) is ``LedgerUnavailable``; a uniqueness
violation is ``Conflict``. A long-running writer (the hub's service) leaves SQLite's checkpoints to a thread of
their own, so that no commit of the message path copies the log into the database file, and commits its batches
without waiting for the disk, then syncs SQLite's log from a thread (``sync()``) before it acts on them: the
durability of a commit that waits, without stopping the event loop for the disk.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import structlog

from gateway.ledger.model import LedgerUnavailable

# Every hub process takes this PostgreSQL advisory lock for each write: "I2ES" in ASCII.
WRITE_LOCK = 0x49324553

log = structlog.get_logger("i2es.ledger")

K = TypeVar("K")
V = TypeVar("V")

# The log's length past which the checkpointer has the next commit start it again from its beginning: 16 MiB.
REWIND_AFTER_FRAMES = 4000


class Conflict(Exception):
    """A write broke a uniqueness rule: another process recorded the same thing first."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


def connect(path: Path, busy_seconds: float = 30.0) -> sqlite3.Connection:
    """Open (and create) a SQLite database the way every part of the hub does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, timeout=busy_seconds, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed outcome survives a power cut, since its acknowledgement has left the hub.
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


class Database:
    """One connection to the ledger's database."""

    dialect = "sqlite"
    # The column that orders rows as they were inserted, in tables without a key of their own.
    insertion_order = "rowid"

    # While a writer waits for another process's turn to end, it looks again this often (seconds), and waits
    # twice as long each time up to TURN_POLL_MAX: a look costs a system call here, a round trip to a server there.
    TURN_POLL = 0.0005
    TURN_POLL_MAX = 0.0005
    # Whether a ``durable=False`` transaction waits for the write lock too (SQLite has one writer at a time).
    marks_take_turn = True
    # Whether a transaction can commit without waiting for the disk and be made durable afterwards by ``sync()``
    # (SQLite's write-ahead log, synced apart); PostgreSQL's server syncs its own log at the commit.
    syncs_apart = False

    def __init__(self, busy_seconds: float = 30.0) -> None:
        self._depth = 0
        self._busy_seconds = busy_seconds
        self._turn_held = False
        self._transactions = 0  # outermost transactions begun on this connection

    @property
    def transaction_number(self) -> int:
        """Which outermost transaction is open (or was last): what a caller remembers within one is valid while
        this stays the same and ``in_transaction`` holds."""
        return self._transactions

    @asynccontextmanager
    async def turn(self, durable: bool = True) -> AsyncIterator[None]:
        """The write lock across processes, awaited: the transactions inside take it at once. The body must not
        await (within one process, the turn does not exclude another coroutine)."""
        if not durable and not self.marks_take_turn:
            yield
            return
        for pause in self._pauses():
            if self._try_turn():
                break
            await asyncio.sleep(pause)
        self._turn_held = True
        try:
            yield
        finally:
            self._turn_held = False
            self._release_turn()

    def _pauses(self) -> Iterator[float]:
        """How long to wait before each next look for the write lock; ``LedgerUnavailable`` once it has been
        held for ``busy_seconds``."""
        deadline = time.monotonic() + self._busy_seconds
        pause = self.TURN_POLL
        while time.monotonic() <= deadline:
            yield pause
            pause = min(pause * 2, self.TURN_POLL_MAX)
        raise LedgerUnavailable(
            f"the ledger cannot be written: another writer has held it for {self._busy_seconds:g} s"
        )

    def _try_turn(self) -> bool:
        """Take the write lock if it is free; the engine's own lock is the fallback (True: nothing to take)."""
        return True

    def _release_turn(self) -> None:
        pass

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        raise NotImplementedError

    def create(self, schema: str) -> None:
        """Run ``CREATE ... IF NOT EXISTS`` statements written in SQLite's dialect."""
        raise NotImplementedError

    def columns(self, table: str) -> set[str]:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    @contextmanager
    def transaction(self, durable: bool = True) -> Iterator[None]:
        """One write, committed whole or not at all; inside another transaction, part of it.

        ``durable=False`` is for marks the hub can afford to redo (a delivery confirmed, a notice sent): the commit
        does not wait for the disk, and is not ordered with the appends. A crash of the process loses nothing; a
        power cut may lose the last such marks, and the hub then sends again what they marked (at least once).
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin(durable)
        self._transactions += 1
        self._depth = 1
        try:
            yield
            self._commit()
        except BaseException as error:
            self._rollback()
            translated = self._translate(error)
            if translated is error:
                raise
            raise translated from error
        finally:
            self._depth = 0

    def _begin(self, durable: bool) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    async def sync(self, others: bool = False) -> None:
        """Wait until every transaction committed on this connection is on the disk (``durable=False`` ones
        included), and with ``others`` those of every connection, without stopping the event loop; at once if
        there is nothing to sync. (PostgreSQL's server has synced each durable commit before it returned.)"""

    def _rollback(self) -> None:
        raise NotImplementedError

    def _translate(self, error: BaseException) -> BaseException:
        return error

    def checkpoint_in_background(
        self, every_seconds: float = 0.5, rewind_after_frames: int = REWIND_AFTER_FRAMES
    ) -> None:
        """For a long-running writer: keep the engine's housekeeping off the commits of the message path."""

    def close(self) -> None:
        raise NotImplementedError


class WithinTransaction(Generic[K, V]):
    """Answers read from the database, kept until its open transaction ends.

    A writer holds the write lock for the whole transaction, so what it read stays true until it commits, but for
    its own writes: the caller forgets what those change. Outside a transaction nothing is kept.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._number = -1
        self._values: dict[K, V] = {}

    def _current(self) -> dict[K, V] | None:
        if not self._db.in_transaction:
            return None
        if self._number != self._db.transaction_number:
            self._values.clear()
            self._number = self._db.transaction_number
        return self._values

    def get(self, key: K, read: Callable[[], V]) -> V:
        values = self._current()
        if values is None:
            return read()
        if key not in values:
            values[key] = read()
        return values[key]

    def put(self, key: K, value: V) -> None:
        values = self._current()
        if values is not None:
            values[key] = value

    def holds(self, key: K) -> bool:
        values = self._current()
        return values is not None and key in values

    def forget(self, key: K) -> None:
        self._values.pop(key, None)


class Checkpointer:
    """Copies a WAL-mode database's log into its file from a thread and a connection of its own.

    SQLite otherwise does it inside the commit that crosses 1000 pages of log: that commit writes megabytes and
    syncs the database file while the hub's event loop waits. A passive checkpoint takes no lock a writer needs,
    and the library leaves the interpreter lock while it copies and syncs. But SQLite starts the log again from
    its beginning only when a writer finds all of it copied, which a writer that never pauses never does: once
    the log holds more than ``rewind_after_frames`` pages, the checkpointer takes the writers' turn for a last
    pass over the few pages written since its previous one, and the next commit rewinds the log.
    """

    def __init__(
        self, path: Path, turns: Path, every_seconds: float = 0.5, rewind_after_frames: int = REWIND_AFTER_FRAMES
    ) -> None:
        self._path = path
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._turns = turns.open("a+b")  # a lock of its own: the hub's writer and this thread take turns
        self._every = every_seconds
        self._rewind_after = rewind_after_frames
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"checkpoint {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.checkpoint()

    def checkpoint(self) -> None:
        try:
            if self._pass() > self._rewind_after:
                fcntl.flock(self._turns, fcntl.LOCK_EX)
                try:
                    self._pass()
                finally:
                    fcntl.flock(self._turns, fcntl.LOCK_UN)
        except sqlite3.Error as error:  # the next pass copies it: the log only grows until then
            log.warning("ledger_checkpoint_failed", path=str(self._path), error=str(error))

    def _pass(self) -> int:
        """One passive checkpoint; returns how many pages the log holds."""
        _, frames, _ = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(frames)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.checkpoint()
        self._connection.close()
        self._turns.close()


def sync_file(path: Path) -> None:
    """``fdatasync`` a file (SQLite keeps the write-ahead log while a connection is open)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(descriptor)
    finally:
        os.close(descriptor)


class SqliteDatabase(Database):
    """A SQLite file in WAL mode, safe for several processes on one machine."""

    syncs_apart = True

    def __init__(self, path: Path, busy_seconds: float = 30.0) -> None:
        super().__init__(busy_seconds)
        self.path = path
        self._db = connect(path, busy_seconds)
        self._relaxed = False
        # The hubs' writers take turns on this lock before SQLite's own: a waiter gets the ledger as soon as it is
        # free, where SQLite's busy handler would sleep 1, 2, 5, 10 ms and more between tries.
        self._turns = (path.parent / f"{path.name}-writers").open("a+b")
        self._checkpointer: Checkpointer | None = None
        self._unsynced = False  # a commit since the last sync() did not wait for the disk

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return self._db.execute(sql, tuple(params))
        except sqlite3.Error as error:
            if self._depth:
                raise  # the transaction rolls back and translates it
            raise self._translate(error) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)

    def create(self, schema: str) -> None:
        self._db.executescript(schema)

    def columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self._db.execute(f"PRAGMA table_info({table})")}

    def _begin(self, durable: bool) -> None:
        try:
            if not durable:
                # In WAL mode, the next durable commit syncs the log, these frames with it.
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._relaxed = True
            self._take_turn()
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException as error:
            self._restore()
            self._end_turn()
            if isinstance(error, sqlite3.Error):
                raise self._translate(error) from error
            raise

    def _try_turn(self) -> bool:
        try:
            fcntl.flock(self._turns, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _release_turn(self) -> None:
        fcntl.flock(self._turns, fcntl.LOCK_UN)

    def _take_turn(self) -> None:
        if self._turn_held:
            return
        for pause in self._pauses():
            if self._try_turn():
                return
            time.sleep(pause)

    def _end_turn(self) -> None:
        if not self._turn_held:
            self._release_turn()

    def _commit(self) -> None:
        try:
            self._db.execute("COMMIT")
            self._unsynced = self._unsynced or self._relaxed
        finally:
            self._restore()
            self._end_turn()

    async def sync(self, others: bool = False) -> None:
        # What synchronous=FULL does at each commit, from a thread: the write-ahead log's data synced. A commit with
        # synchronous=NORMAL has written its frames to the log; SQLite itself syncs the log before a checkpoint
        # copies it, and the header when the log starts again, so these frames are on the disk once this returns.
        if not (self._unsynced or others):
            return
        self._unsynced = False  # a commit while the thread syncs sets it again: the next sync() takes it
        try:
            await asyncio.to_thread(sync_file, Path(f"{self.path}-wal"))
        except OSError as error:
            self._unsynced = True
            raise LedgerUnavailable(f"the ledger's log cannot be synced to the disk: {error}") from error

    def _restore(self) -> None:
        if self._relaxed and not self._db.in_transaction:
            self._db.execute("PRAGMA synchronous=FULL")
            self._relaxed = False

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            self._restore()
        finally:
            self._end_turn()

    def _translate(self, error: BaseException) -> BaseException:
        if isinstance(error, sqlite3.IntegrityError):
            return Conflict(str(error))
        if isinstance(error, sqlite3.OperationalError):
            return LedgerUnavailable(f"the ledger cannot be written: {error}")
        return error

    def checkpoint_in_background(
        self, every_seconds: float = 0.5, rewind_after_frames: int = REWIND_AFTER_FRAMES
    ) -> None:
        if self._checkpointer is None:
            self._db.execute("PRAGMA wal_autocheckpoint=0")  # this connection's commits no longer copy the log
            self._checkpointer = Checkpointer(self.path, Path(self._turns.name), every_seconds, rewind_after_frames)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        self._db.close()
        self._turns.close()


_PG_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
)


def postgres_schema(schema: str) -> list[str]:
    """SQLite DDL as PostgreSQL statements: the same tables, with PostgreSQL's types."""
    for pattern, replacement in _PG_TYPES:
        schema = pattern.sub(replacement, schema)
    lines = [line for line in schema.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@lru_cache(maxsize=512)
def postgres_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``; a literal ``%`` doubled."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase(Database):
    """A PostgreSQL database shared by several hub processes, on one machine or many."""

    dialect = "postgresql"
    insertion_order = "id"
    marks_take_turn = False  # only appends take the advisory lock
    TURN_POLL_MAX = 0.004

    def __init__(self, url: str, connect_seconds: float = 10.0, busy_seconds: float = 30.0) -> None:
        super().__init__(busy_seconds)
        self.url = url
        self._connect_seconds = connect_seconds
        self._conn: Any = None
        self._open()

    def _open(self) -> Any:
        import psycopg

        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=int(self._connect_seconds))
            except psycopg.OperationalError as error:
                raise LedgerUnavailable(f"the ledger's database cannot be reached: {error}") from error
        return self._conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        try:
            return self._open().execute(postgres_sql(sql), tuple(params))  # type: ignore[no-any-return]
        except Exception as error:
            if self._depth:
                raise
            raise self._translate(error) from error

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._open().cursor() as cursor:
            cursor.executemany(postgres_sql(sql), rows)

    def create(self, schema: str) -> None:
        conn = self._open()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # two hubs starting at once
            for statement in postgres_schema(schema):
                conn.execute(statement)

    def columns(self, table: str) -> set[str]:
        rows = self._open().execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = "
            "current_schema()",
            (table,),
        )
        return {str(row[0]) for row in rows}

    def _try_turn(self) -> bool:
        # The session's own lock: the transaction's lock below is then granted at once (advisory locks held by a
        # session are granted to it again).
        try:
            row = self._open().execute("SELECT pg_try_advisory_lock(%s)", (WRITE_LOCK,)).fetchone()
        except Exception as error:
            raise self._translate(error) from error
        return bool(row[0])

    def _release_turn(self) -> None:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
            except Exception:  # the connection is gone, and its session's locks with it
                conn.close()

    def _begin(self, durable: bool) -> None:
        conn = self._open()
        try:
            conn.execute("BEGIN")
            if not durable:
                conn.execute("SET LOCAL synchronous_commit = off")
                return
            # Writers one at a time, across every hub: sequence numbers and the hash chain have one order.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
        except Exception as error:
            self._rollback()
            raise self._translate(error) from error

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        import psycopg

        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()

    def _translate(self, error: BaseException) -> BaseException:
        import psycopg

        if isinstance(error, psycopg.errors.IntegrityError):
            return Conflict(str(error))
        if isinstance(error, psycopg.OperationalError | psycopg.errors.InsufficientResources):
            return LedgerUnavailable(f"the ledger cannot be written: {error}")
        if isinstance(error, psycopg.InterfaceError):
            return LedgerUnavailable(f"the ledger's connection was lost: {error}")
        return error

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def open_database(url: str, default_path: Path, busy_seconds: float = 30.0) -> Database:
    """The database a ledger URL names: ``postgresql://...``, ``sqlite:///path``, or empty for the default file."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url, busy_seconds=busy_seconds)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")), busy_seconds)
    if url:
        raise ValueError(f"unknown ledger URL {url!r}: use postgresql://... or sqlite:///path")
    return SqliteDatabase(default_path, busy_seconds)
