"""The sandbox's state: SQLAlchemy Core tables, engines and transactions.

SQLite (WAL) is the embedded default; PostgreSQL serves several workers or hosts. A backend
operation is one `write_tx`: on SQLite it starts with BEGIN IMMEDIATE so two workers can never
interleave read-modify-write on an order; on PostgreSQL rows are locked with FOR UPDATE.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
)
from sqlalchemy.engine import Connection, Engine

from sandbox import sqlite_engine

metadata = MetaData()

# Times are integer microseconds on the sandbox clock (sandbox.clock); money is integer fen.
Micros = BigInteger

clock = Table(
    "clock", metadata,
    Column("id", Integer, primary_key=True),
    Column("offset_us", Micros, nullable=False, default=0),
    Column("frozen_at_us", Micros, nullable=True),
)

platform_keys = Table(
    "platform_keys", metadata,
    Column("serial", String(64), primary_key=True),  # cert serial (hex) or PUB_KEY_ID_...
    Column("kind", String(16), nullable=False),  # certificate | public_key
    Column("private_key_pem", Text, nullable=False),
    Column("certificate_pem", Text, nullable=True),
    Column("public_key_pem", Text, nullable=False),
    Column("effective_us", Micros, nullable=False),
    Column("expire_us", Micros, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
)

merchants = Table(
    "merchants", metadata,
    Column("mchid", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("appid", String(32), nullable=False),
    Column("service_id", String(32), nullable=False),
    Column("serial_no", String(64), nullable=False),
    Column("certificate_pem", Text, nullable=False),
    Column("apiv3_key", String(32), nullable=False),
    Column("notify_url", String(255), nullable=True),
    Column("refund_notify_url", String(256), nullable=True),
    Column("risk_fund_ceiling", BigInteger, nullable=False, default=100000),
    Column("risk_fund_mode", String(16), nullable=False, default="ENJOY_FIRST"),
    # certificate | public_key | migrating: which platform key signs callbacks (§5.3-§5.4)
    Column("signing_mode", String(16), nullable=False, default="certificate"),
    Column("migration_ratio", Float, nullable=False, default=0.0),
    Column("created_us", Micros, nullable=False),
)

users = Table(
    "users", metadata,
    Column("openid", String(128), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("age", Integer, nullable=False),
    Column("real_name", Boolean, nullable=False),
    Column("bank_card", Boolean, nullable=False),
    Column("face_verified", Boolean, nullable=False),
    Column("client_version", String(16), nullable=False),
    Column("balance_behaviour", String(16), nullable=False),  # pays | late | cannot
    Column("pay_delay_days", Integer, nullable=False, default=0),
    Column("confirm_behaviour", String(16), nullable=False),  # confirms | declines | ignores
    Column("confirm_delay_s", Integer, nullable=False, default=30),
    Column("payment_activity", Integer, nullable=False, default=0),  # payments per month
    Column("social", Float, nullable=False, default=0.5),  # 0..1
    Column("assets", Float, nullable=False, default=0.0),  # 0..1
    Column("on_time_orders", Integer, nullable=False, default=0),
    Column("defaults_total", Integer, nullable=False, default=0),
    Column("overdue_fen", BigInteger, nullable=False, default=0),
    Column("frozen_until_us", Micros, nullable=True),
    Column("blacklisted", Boolean, nullable=False, default=False),
    Column("malicious", Boolean, nullable=False, default=False),
    Column("magic", String(32), nullable=True),
    Column("seed_batch", String(32), nullable=True),
    Column("fail_next_deductions", Integer, nullable=False, default=0),
)

score_history = Table(
    "score_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("openid", String(128), nullable=False, index=True),
    Column("at_us", Micros, nullable=False),
    Column("score", Integer, nullable=False),
    Column("reason", String(64), nullable=False),
)

user_defaults = Table(
    "user_defaults", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("openid", String(128), nullable=False, index=True),
    Column("order_pk", Integer, nullable=True),
    Column("at_us", Micros, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("settled", Boolean, nullable=False, default=False),
)

orders = Table(
    "orders", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("mchid", String(32), ForeignKey("merchants.mchid"), nullable=False),
    Column("out_order_no", String(32), nullable=False),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("query_id", String(64), nullable=False, unique=True),
    Column("appid", String(32), nullable=False),
    Column("service_id", String(32), nullable=False),
    Column("openid", String(128), nullable=True),
    Column("need_user_confirm", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_description", String(16), nullable=True),
    Column("collection_state", String(16), nullable=True),
    Column("total_amount", BigInteger, nullable=True),
    Column("paid_amount", BigInteger, nullable=False, default=0),
    Column("request_digest", String(64), nullable=False),  # create replay check (§1.4)
    Column("complete_digest", String(64), nullable=True),  # complete re-entry check
    Column("cancel_digest", String(64), nullable=True),
    Column("doc", JSON, nullable=False),  # the entity fields not used in queries
    Column("notify_url", String(255), nullable=True),
    Column("deducting", Boolean, nullable=False, default=False),
    Column("created_us", Micros, nullable=False),
    Column("updated_us", Micros, nullable=False),
    Column("version", Integer, nullable=False, default=1),
    UniqueConstraint("mchid", "out_order_no", name="uq_orders_mch_out_order_no"),
    Index("ix_orders_state_created", "state", "created_us"),
    Index("ix_orders_mch_created", "mchid", "created_us"),
    Index("ix_orders_openid", "openid"),
    # the dashboard's order list: newest first, alone or per merchant and state (inspect.py)
    Index("ix_orders_created", "created_us"),
    Index("ix_orders_mch_state_created", "mchid", "state", "created_us"),
)

order_events = Table(
    "order_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("order_pk", Integer, ForeignKey("orders.pk"), nullable=False, index=True),
    Column("at_us", Micros, nullable=False),
    Column("kind", String(32), nullable=False),  # transition name or timeline note
    Column("from_state", String(48), nullable=True),
    Column("to_state", String(48), nullable=True),
    Column("detail", JSON, nullable=True),
)

transactions = Table(
    "transactions", metadata,
    Column("transaction_id", String(32), primary_key=True),
    Column("order_pk", Integer, ForeignKey("orders.pk"), nullable=False, index=True),
    Column("mchid", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("refunded", BigInteger, nullable=False, default=0),
    Column("paid_type", String(16), nullable=False),  # NEWTON | MCH
    Column("paid_us", Micros, nullable=False),
)

refunds = Table(
    "refunds", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("mchid", String(32), nullable=False),
    Column("out_refund_no", String(64), nullable=False),
    Column("refund_id", String(32), nullable=False, unique=True),
    Column("transaction_id", String(32), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("request_digest", String(64), nullable=False),
    Column("doc", JSON, nullable=False),
    Column("notify_url", String(256), nullable=True),
    Column("created_us", Micros, nullable=False),
    Column("success_us", Micros, nullable=True),
    UniqueConstraint("mchid", "out_refund_no", name="uq_refunds_mch_out_refund_no"),
)

permissions = Table(
    "permissions", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("mchid", String(32), nullable=False),
    Column("service_id", String(32), nullable=False),
    Column("appid", String(32), nullable=False),
    Column("authorization_code", String(32), nullable=True),
    Column("openid", String(128), nullable=True),
    Column("state", String(16), nullable=False),  # UNBINDUSER | AVAILABLE | UNAVAILABLE
    Column("notify_url", String(255), nullable=True),
    Column("token", String(300), nullable=True),
    Column("authorized_us", Micros, nullable=True),
    Column("cancelled_us", Micros, nullable=True),
    Column("created_us", Micros, nullable=False),
    UniqueConstraint("mchid", "authorization_code", name="uq_permissions_code"),
    Index("ix_permissions_openid", "mchid", "service_id", "openid"),
)

notifications = Table(
    "notifications", metadata,
    Column("id", String(36), primary_key=True),  # the envelope id
    Column("mchid", String(32), nullable=False, index=True),
    Column("order_pk", Integer, nullable=True, index=True),
    Column("refund_pk", Integer, nullable=True),
    Column("event_type", String(32), nullable=False),
    Column("summary", String(64), nullable=False),
    Column("original_type", String(16), nullable=False),
    Column("url", String(255), nullable=False),
    Column("resource", JSON, nullable=False),  # the plaintext payload, encrypted at send time
    Column("status", String(16), nullable=False),  # PENDING | DELIVERED | FAILED
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_us", Micros, nullable=True),
    Column("lease_until_us", Micros, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("created_us", Micros, nullable=False),
    Column("delivered_us", Micros, nullable=True),
    Column("scenario_id", String(32), nullable=True),
    Index("ix_notifications_due", "status", "next_attempt_us"),
    # the dashboard's outbox list: newest first, alone or per status (inspect.py)
    Index("ix_notifications_created", "created_us"),
    Index("ix_notifications_status_created", "status", "created_us"),
)

delivery_attempts = Table(
    "delivery_attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(36), nullable=False, index=True),
    Column("at_us", Micros, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("answer", Text, nullable=True),
    Column("error", String(255), nullable=True),
    Column("fault", String(64), nullable=True),
    Column("scenario_id", String(32), nullable=True),  # of the fault taken, for the judges
    Column("signature_serial", String(64), nullable=True),
)

jobs = Table(
    "jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("due_us", Micros, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("ref", String(128), nullable=True),
    Column("payload", JSON, nullable=True),
    Column("done", Boolean, nullable=False, default=False),
    Index("ix_jobs_due", "done", "due_us"),
    # An order's pending jobs of one kind, cancelled on every payment: without this index
    # SQLite scanned every pending job per cancel, and a 50,000-user gray release slowed to
    # ~20 users/s as the jobs piled up.
    Index("ix_jobs_kind_ref", "kind", "ref", "done"),
)

faults = Table(
    "faults", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scenario_id", String(32), nullable=True),
    Column("effect", String(32), nullable=False),
    Column("hook", String(16), nullable=False),  # before | after | build | send
    Column("params", JSON, nullable=True),
    Column("mchid", String(32), nullable=True),
    Column("out_order_no", String(32), nullable=True),
    Column("openid", String(128), nullable=True),
    Column("operation", String(48), nullable=True),
    Column("remaining", Integer, nullable=True),  # None: unlimited
    Column("probability", Float, nullable=True),
    Column("seed", Integer, nullable=True),
    Column("window_start_us", Micros, nullable=True),
    Column("window_end_us", Micros, nullable=True),
    Column("taken", Integer, nullable=False, default=0),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_us", Micros, nullable=False),
    # matching calls so far: the index of the seeded probability draw (sandbox.faults.engine)
    Column("matched", Integer, nullable=False, default=0, server_default="0"),
    Column("state", JSON, nullable=True),  # what an effect remembers (rotation, replay, undo)
    Column("disarmed_us", Micros, nullable=True),
)

# Bumped in every transaction that changes the set of armed faults (or the platform keys they
# use): each process re-reads `faults` only when this changes (sandbox.faults.engine).
fault_version = Table(
    "fault_version", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False, default=0),
)

# Callback faults that stick to or hold a notification once taken (drop, reorder, delay,
# outage): which ones, so retries stay bent and disarming releases what is held.
fault_bindings = Table(
    "fault_bindings", metadata,
    Column("fault_id", Integer, primary_key=True),
    Column("notification_id", String(36), primary_key=True),
    Column("at_us", Micros, nullable=False),
)

request_log = Table(
    "request_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("at_us", Micros, nullable=False),
    Column("mchid", String(32), nullable=True, index=True),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("operation", String(48), nullable=True),
    Column("out_order_no", String(32), nullable=True, index=True),
    Column("status", Integer, nullable=True),
    Column("code", String(32), nullable=True),
    Column("verdict", String(255), nullable=True),  # signature verdict in words
    Column("fault", String(64), nullable=True),
    Column("scenario_id", String(32), nullable=True, index=True),
    Column("duration_ms", Float, nullable=True),
)


def make_engine(url: str) -> Engine:
    """An engine tuned for the sandbox: WAL + busy timeout on SQLite, pooled PostgreSQL."""
    if url.startswith("sqlite"):
        engine = sqlite_engine.create(url)
    else:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    _close_pool_before_fork(engine)
    return engine


def _close_pool_before_fork(engine: Engine) -> None:
    """A pooled connection must not cross a fork (the child would share the parent's SQLite
    file locks or PostgreSQL socket): the gunicorn master closes its idle ones before forking
    workers, which open their own. Weak, so an engine nobody uses can still be collected."""
    ref = weakref.ref(engine)

    def dispose() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose()

    os.register_at_fork(before=dispose)


def is_postgres(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "postgresql"


def init_db(engine: Engine) -> None:
    from sandbox.migrate import upgrade

    metadata.create_all(engine)
    upgrade(engine)
    with write_tx(engine) as conn:
        if conn.execute(clock.select()).first() is None:
            conn.execute(clock.insert().values(id=1, offset_us=0, frozen_at_us=None))
        if conn.execute(fault_version.select()).first() is None:
            conn.execute(fault_version.insert().values(id=1, version=0))


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction; SQLite takes the write lock up front (BEGIN IMMEDIATE)."""
    writers: sqlite_engine.WriterTurns | None = getattr(engine, "payscore_writers", None)
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with writers.turn() if writers is not None else contextlib.nullcontext(), conn.begin():
            yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn, conn.begin():
        yield conn


def for_update(stmt, conn: Connection):
    """Lock selected rows on PostgreSQL; SQLite's IMMEDIATE transaction already serialises."""
    return stmt.with_for_update() if is_postgres(conn) else stmt
