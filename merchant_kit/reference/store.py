"""The reference merchant's own database (SQLite by default, SQLAlchemy Core).

Tables: devices (the power banks), rentals, refunds, audit (every decision, for the timeline),
and the kit's processed-notifications table (the durable dedupe key). Write transactions take
SQLite's write lock up front (BEGIN IMMEDIATE), so a read-modify-write of a rental never
interleaves with a callback applying to the same rental.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, Row

metadata = MetaData()

devices = Table(
    "devices", metadata,
    Column("device_id", String(32), primary_key=True),
    # AVAILABLE in the station | RESERVED for a rental awaiting confirmation | IN_USE (unlocked)
    Column("state", String(16), nullable=False),
    Column("rental_id", Integer, nullable=True),
    Column("updated_at", Float, nullable=False),
)

rentals = Table(
    "rentals", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("openid", String(128), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("deposit", Integer, nullable=False),
    Column("service_id", String(32), nullable=False),
    Column("device_id", String(32), nullable=True),
    # The number used at the provider; shown to the driver only while `order_created`.
    Column("out_order_no", String(32), nullable=True, unique=True),
    Column("order_created", Boolean, nullable=False, default=False),
    Column("state", String(20), nullable=False),
    # create | complete | cancel: an operation whose outcome is not known yet (UNKNOWN).
    Column("unknown_op", String(16), nullable=True),
    Column("create_request", JSON, nullable=True),
    Column("finish_amount", Integer, nullable=True),
    Column("finish_pending", Boolean, nullable=False, default=False),
    Column("complete_request", JSON, nullable=True),
    Column("cancel_reason", String(30), nullable=True),
    Column("charged", Integer, nullable=False, default=0),
    Column("transaction_id", String(32), nullable=True),
    Column("transaction_amount", Integer, nullable=True),
    Column("device_released", Boolean, nullable=False, default=False),
    Column("callbacks", Integer, nullable=False, default=0),
    Column("provider_calls", Integer, nullable=False, default=0),
    Column("last_error", JSON, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("completed_at", Float, nullable=True),
    Column("last_pay_nudge_at", Float, nullable=True),
)

refunds = Table(
    "refunds", metadata,
    Column("out_refund_no", String(64), primary_key=True),
    Column("rental_id", Integer, ForeignKey("rentals.id"), nullable=False, index=True),
    Column("transaction_id", String(32), nullable=False),
    Column("amount", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    # UNKNOWN (outcome not known) | PROCESSING | SUCCESS | ABNORMAL | CLOSED | FAILED (refused)
    Column("status", String(16), nullable=False),
    Column("request", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rental_id", Integer, nullable=True, index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("detail", JSON, nullable=True),
)

OPEN_REFUNDS = ("UNKNOWN", "PROCESSING", "ABNORMAL")
COUNTED_REFUNDS = ("PROCESSING", "SUCCESS", "ABNORMAL")  # accepted and not closed


def make_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    # Pooled: a new SQLite connection (file, WAL index, PRAGMAs) per transaction was a tenth
    # of the merchant's CPU under load. The pool outgrows its size when threads need more.
    pool = {} if ":memory:" in url else {"pool_size": 8, "max_overflow": 64}
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           **pool)
    # This merchant is one process: its writers queue on a lock rather than in SQLite's busy
    # handler, whose sleeps (up to 100 ms each) made a loaded driver call take seconds.
    engine.payscore_writers = threading.RLock()  # type: ignore[attr-defined]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        # On the DBAPI connection: through exec_driver_sql a BEGIN took the whole statement
        # path (events, result setup), as much CPU as a query.
        conn.connection.driver_connection.execute(f"BEGIN {mode}")

    return engine


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    writers = getattr(engine, "payscore_writers", None)
    with writers if writers is not None else contextlib.nullcontext(), \
            engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def lock(stmt: Any, conn: Connection) -> Any:
    return stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt


# ---------------------------------------------------------------------- rentals


# Statements built once, values as parameters: building one per call (coercion, cache key)
# cost more CPU than running it, and the merchant runs these on every driver call and callback.
_RENTAL = select(rentals).where(rentals.c.id == bindparam("rental_pk"))
_RENTAL_BY_ORDER = select(rentals).where(rentals.c.out_order_no == bindparam("order_no"))
_UPDATE_RENTAL = update(rentals).where(rentals.c.id == bindparam("rental_pk"))  # SET: the keys
_UPDATE_RENTAL_CALLS = _UPDATE_RENTAL.values(
    provider_calls=rentals.c.provider_calls + bindparam("calls_made"))


def get_rental(conn: Connection, rental_id: int, for_update: bool = False) -> Row | None:
    stmt = lock(_RENTAL, conn) if for_update else _RENTAL
    return conn.execute(stmt, {"rental_pk": rental_id}).first()


def rental_by_order(conn: Connection, out_order_no: str) -> Row | None:
    return conn.execute(lock(_RENTAL_BY_ORDER, conn), {"order_no": out_order_no}).first()


def update_rental(conn: Connection, rental_id: int, now: float, *, calls: int = 0,
                  **values: Any) -> None:
    params = {"rental_pk": rental_id, "updated_at": now, **values}
    if calls:
        conn.execute(_UPDATE_RENTAL_CALLS, {**params, "calls_made": calls})
    else:
        conn.execute(_UPDATE_RENTAL, params)


def rentals_to_reconcile(conn: Connection, limit: int) -> list[int]:
    """Open orders, unresolved outcomes, pending finishes and open refunds, oldest first."""
    open_refund = select(refunds.c.rental_id).where(refunds.c.status.in_(OPEN_REFUNDS))
    stmt = (select(rentals.c.id).where(
        rentals.c.order_created.is_(True),
        (rentals.c.state.in_(("PENDING_CONFIRM", "IN_SERVICE", "AWAITING_PAYMENT")))
        | rentals.c.unknown_op.is_not(None) | rentals.c.id.in_(open_refund))
        .order_by(rentals.c.updated_at).limit(limit))
    return list(conn.execute(stmt).scalars())


# ---------------------------------------------------------------------- devices


_FREE_DEVICE = (select(devices.c.device_id).where(devices.c.state == "AVAILABLE")
                .order_by(devices.c.device_id).limit(1))
_SET_DEVICE = update(devices).where(devices.c.device_id == bindparam("device_pk"))


def reserve_device(conn: Connection, rental_id: int, now: float) -> str:
    """A free power bank for the rental; the station grows one if all are out."""
    free = conn.execute(lock(_FREE_DEVICE, conn)).scalar()
    if free is None:
        count = conn.execute(select(func.count()).select_from(devices)).scalar_one()
        free = f"PB-{count + 1:06d}"
        conn.execute(devices.insert().values(device_id=free, state="RESERVED",
                                             rental_id=rental_id, updated_at=now))
    else:
        conn.execute(_SET_DEVICE, {"device_pk": free, "state": "RESERVED",
                                   "rental_id": rental_id, "updated_at": now})
    return free


def set_device(conn: Connection, device_id: str | None, state: str, now: float) -> None:
    if device_id is None:
        return
    values: dict[str, Any] = {"device_pk": device_id, "state": state, "updated_at": now}
    if state == "AVAILABLE":
        values["rental_id"] = None
    conn.execute(_SET_DEVICE, values)


# ---------------------------------------------------------------------- refunds and audit


_REFUNDS_OF = (select(refunds).where(refunds.c.rental_id == bindparam("rental_pk"))
               .order_by(refunds.c.created_at, refunds.c.out_refund_no))
_NOTE = audit.insert()


def refunds_of(conn: Connection, rental_id: int) -> list[Row]:
    return list(conn.execute(_REFUNDS_OF, {"rental_pk": rental_id}))


def get_refund(conn: Connection, out_refund_no: str) -> Row | None:
    return conn.execute(lock(select(refunds).where(refunds.c.out_refund_no == out_refund_no),
                             conn)).first()


def note(conn: Connection, rental_id: int | None, now: float, kind: str,
         **detail: Any) -> None:
    """One audit row; detail must be JSON-safe (it is also what the demo prints)."""
    json.dumps(detail, default=str)  # fail here, not at commit, on something unserialisable
    conn.execute(_NOTE, {"rental_id": rental_id, "at": now, "kind": kind,
                         "detail": detail or None})


def timeline(conn: Connection, rental_id: int, limit: int = 500) -> list[dict[str, Any]]:
    rows = conn.execute(select(audit).where(audit.c.rental_id == rental_id)
                        .order_by(audit.c.id).limit(limit))
    return [{"at": r.at, "kind": r.kind, "detail": r.detail or {}} for r in rows]
