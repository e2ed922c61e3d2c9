"""SQLite specifics of the sandbox's engine: connection settings and writers' turns.

SQLite allows one writer per database file at a time. Every request of the sandbox writes (the
request log), so how writers wait for each other sets the latency under load (WriterTurns).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool


def create(url: str) -> Engine:
    """A SQLite engine: pooled, configured, and (for a file) with writers taking turns."""
    # Pooled: opening a SQLite connection (file, WAL index, four PRAGMAs) cost 0.6-1 ms and
    # a request used five. Unbounded overflow, so a thread that needs a second connection
    # inside a transaction never waits on the pool while others wait on its lock.
    pool = {"poolclass": QueuePool, "pool_size": 8, "max_overflow": -1} \
        if ":memory:" not in url else {}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           **pool)
    configure(engine)
    if engine.url.database and ":memory:" not in url:
        engine.payscore_writers = WriterTurns(engine.url.database)  # type: ignore[attr-defined]
    return engine


def configure(engine: Engine) -> None:
    """Per connection: WAL, our own BEGIN (IMMEDIATE for writers), foreign keys."""
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Python's sqlite3 would open its own implicit transactions; we issue BEGIN ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - exercised by every test
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # On the DBAPI connection: through exec_driver_sql the BEGIN cost as much CPU as the
        # statement it opens for (the full execution path, events and result setup).
        conn.connection.driver_connection.execute(f"BEGIN {mode}")


class WriterTurns:
    """SQLite writers of one file take turns in a queue of our own rather than in SQLite's busy
    handler, which retries after sleeps of 1, 2, 5, 10 ... 100 ms: every request writes (the
    request log), so with a few writers waiting those sleeps, not the work, set the latency.
    A thread lock queues this process's threads; an flock() on `<db>-writers.lock`, polled at
    most 1 ms apart, the processes. A turn is one write_tx (one nested in it on the same thread
    is let through). Only an optimisation: whoever waits more than PATIENCE_S for a turn goes
    ahead without one, into SQLite's own locking and busy timeout exactly as before."""

    PATIENCE_S = 1.0

    def __init__(self, database: str):
        self.path = database + "-writers.lock"
        self._threads = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._pid: int | None = None

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        deadline = time.monotonic() + self.PATIENCE_S
        held_thread = self._threads.acquire(timeout=self.PATIENCE_S)
        held_file = False
        try:
            if held_thread:
                self._depth += 1
                if self._depth == 1:
                    held_file = self._lock_file(deadline)
            yield
        finally:
            if held_file:
                fcntl.flock(self._descriptor(), fcntl.LOCK_UN)
            if held_thread:
                self._depth -= 1
                self._threads.release()

    def _lock_file(self, deadline: float) -> bool:
        fd, pause = self._descriptor(), 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def _descriptor(self) -> int:
        if self._pid != os.getpid():  # a forked child opens its own: flock()s follow the
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # open file
            self._pid = os.getpid()
            weakref.finalize(self, os.close, self._fd)
        assert self._fd is not None
        return self._fd
