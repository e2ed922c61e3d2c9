"""The per-request fast path to the database: one held DBAPI connection per process.

Every /v3/ request reads the sandbox clock, the fault-set version and the merchant's signing
mode, and writes one request-log row. Through a pooled SQLAlchemy connection each of those cost
a checkout, a BEGIN, statement bookkeeping and a reset on return: measured, more CPU than the
work itself (~150 us per read against ~10 us here). So a process keeps one DBAPI connection of
its own, outside the pool, in autocommit (each statement its own transaction, so a read sees the
latest committed state), and runs statements that SQLAlchemy compiled once for its dialect.
It is reopened after a fork (a connection must not cross one) and after any error, and closed
when the engine is disposed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import bindparam, event, literal_column, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement

from sandbox import db

log = logging.getLogger("payscore.sandbox")
T = TypeVar("T")


class Compiled:
    """A Core statement compiled once for one dialect, run on a raw DBAPI cursor."""

    def __init__(self, statement: ClauseElement, engine: Engine):
        self._compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(self._compiled)
        self._positional = engine.dialect.positional

    def args(self, params: Mapping[str, Any] | None = None) -> Any:
        values = self._compiled.construct_params(dict(params or {}))
        if self._positional:
            return tuple(values[name] for name in self._compiled.positiontup or ())
        return values


class HeldConnection:
    """One DBAPI connection per process, in autocommit, serialised by a lock."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # An in-memory SQLite database exists per connection: there, the pool's own.
        self.held = not (engine.dialect.name == "sqlite" and
                         engine.url.database in (None, "", ":memory:"))
        if self.held:
            event.listen(engine, "engine_disposed", lambda _engine: self.close())
        self._raw: Any = None
        self._dbapi: Any = None
        self._pid: int | None = None
        self._inherited: list[Any] = []  # a parent process's connection: never closed here
        self._lock = threading.Lock()

    def run(self, work: Callable[[Any], T]) -> T:
        """work(dbapi_connection), retried once on a new connection after an error; `work`
        must be safe to run again (one statement in autocommit is)."""
        if not self.held:
            with self.engine.connect() as conn:  # autocommit DBAPI connection, pooled
                return work(conn.connection.driver_connection)
        with self._lock:
            try:
                return work(self._connection())
            except Exception:
                # A connection that broke while held (server restart, idle timeout) is the
                # likely cause: one more try on a new one. A second failure is real.
                self._drop()
                log.warning("the held database connection failed; reopening it",
                            exc_info=True)
            try:
                return work(self._connection())
            except Exception:
                self._drop()
                raise

    def execute(self, compiled: Compiled, params: Mapping[str, Any] | None = None) -> Any:
        """Run one statement; the first row for a SELECT, else None."""
        def work(dbapi: Any) -> Any:
            cursor = dbapi.cursor()
            try:
                cursor.execute(compiled.sql, compiled.args(params))
                return cursor.fetchone() if cursor.description is not None else None
            finally:
                cursor.close()
        return self.run(work)

    def _connection(self) -> Any:
        if self._raw is not None and self._pid != os.getpid():
            self._inherited.append(self._raw)
            self._raw = None
        if self._raw is None:
            raw = self.engine.raw_connection()
            dbapi = raw.driver_connection  # (None once detached)
            if self.engine.dialect.name == "postgresql":
                dbapi.autocommit = True  # never idle in a transaction
            raw.detach()  # ours alone: outside the pool's size
            self._raw, self._dbapi, self._pid = raw, dbapi, os.getpid()
        return self._dbapi

    def _drop(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            try:
                raw.close()
            except Exception:  # closing a broken connection may fail too
                log.debug("closing the held connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._drop()


@dataclass(frozen=True)
class MerchantConfig:
    """The merchant settings a create checks, as of the request's start."""

    mchid: str
    appid: str
    service_id: str
    risk_fund_ceiling: int


@dataclass(frozen=True)
class RequestState:
    """What one request needs to know before its view runs, read in one statement."""

    now_us: int
    fault_version: int | None
    signing_mode: str
    merchant: MerchantConfig | None = None


def wall_us() -> int:
    return time.time_ns() // 1000


def clock_now_us(offset_us: int, frozen_at_us: int | None) -> int:
    """The sandbox clock from its row: frozen at an instant, else wall time plus the offset."""
    return frozen_at_us if frozen_at_us is not None else wall_us() + offset_us


class StateProbe:
    """Clock, fault version and a merchant's signing mode and settings in one indexed read."""

    def __init__(self, engine: Engine, held: HeldConnection):
        c, v, m = db.clock, db.fault_version, db.merchants
        stmt = (select(c.c.offset_us, c.c.frozen_at_us, v.c.version, m.c.signing_mode,
                       m.c.mchid, m.c.appid, m.c.service_id, m.c.risk_fund_ceiling)
                .select_from(c.outerjoin(v, v.c.id == literal_column("1"))
                             .outerjoin(m, m.c.mchid == bindparam("mchid")))
                .where(c.c.id == literal_column("1")))
        self._state = Compiled(stmt, engine)
        self._version = Compiled(select(v.c.version).where(v.c.id == literal_column("1")),
                                 engine)
        self.held = held

    def request_state(self, mchid: str | None) -> RequestState:
        row = self.held.execute(self._state, {"mchid": mchid or ""})
        if row is None:  # no clock row yet: wall time
            return RequestState(wall_us(), None, "certificate")
        offset, frozen, version, mode, *merchant = row
        now = clock_now_us(offset, frozen)
        config = MerchantConfig(*merchant) if merchant[0] is not None else None
        return RequestState(now, version, mode or "certificate", config)

    def now_us(self) -> int:
        return self.request_state(None).now_us

    def fault_version(self) -> int | None:
        row = self.held.execute(self._version)
        return row[0] if row else None


class RequestLog:
    """Writes the request log row of each request: one autocommit INSERT on the held
    connection, taking its turn among SQLite writers like any write transaction."""

    def __init__(self, engine: Engine, held: HeldConnection):
        self._insert = Compiled(db.request_log.insert().values(
            {c.name: bindparam(c.name) for c in db.request_log.columns if c.name != "id"}),
            engine)
        self._writers = getattr(engine, "payscore_writers", None)
        self.held = held

    def write(self, row: Mapping[str, Any]) -> None:
        if self._writers is None:
            self.held.execute(self._insert, row)
            return
        with self._writers.turn():
            self.held.execute(self._insert, row)
