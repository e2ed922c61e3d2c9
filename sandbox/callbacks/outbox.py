"""The notification outbox: the `notifications` rows and every read and write of them.

A row is written in the same transaction as the state change that causes it (`enqueue`). The
payload is stored in plaintext and encrypted at send time with the merchant's current APIv3 key,
so a re-delivery is a fresh envelope (new timestamp and nonce) of the same event id. The
dispatcher leases due rows (`claim`, `lease_one`) and closes attempts (`finish_many`); the control
API reads them (`list_notifications`, `get_notification`).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.engine import Connection, Engine, Row

from merchant_kit.protocol import payscore_time, rfc3339
from sandbox import db
from sandbox.clock import parse_duration, to_datetime

SUMMARIES = {
    "PAYSCORE.USER_CONFIRM": "确认订单",
    "PAYSCORE.USER_PAID": "支付成功",
    "PAYSCORE.USER_OPEN_SERVICE": "签约成功",
    "PAYSCORE.USER_CLOSE_SERVICE": "解约成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}

S = 1_000_000
# Retry gaps in seconds after each failed attempt (reference §6.5; sources disagree).
SCHEDULES = {
    "generic": (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800,
                21600, 21600),
    "payscore": (15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600),
}


def parse_schedule(value: object) -> tuple[int, ...]:
    """Retry gaps in µs from a preset name, "15s,3m,...", or a list of seconds/durations."""
    if value is None:
        value = "generic"
    if isinstance(value, str):
        if value in SCHEDULES:
            return tuple(gap * S for gap in SCHEDULES[value])
        value = [part for part in value.split(",") if part.strip()]
    gaps = tuple(parse_duration(str(v)) if isinstance(v, str) else int(float(v) * S)
                 for v in value)  # type: ignore[union-attr]
    if any(g <= 0 for g in gaps):
        raise ValueError("retry gaps must be positive")
    return gaps


def after_attempt(row: Row, delivered: bool, one_shot: bool, schedule_us: tuple[int, ...],
                  now_us: int) -> dict:
    """The row's next status and due time once an attempt is over.

    Retry k falls due at first attempt + sum(gaps[:k]): each is the previous due time plus the
    next gap, so neither slow answers nor a clock jump shift the schedule.
    """
    values: dict = {"attempts": row.attempts + 1}
    if delivered:
        values.update(status="DELIVERED", next_attempt_us=None,
                      delivered_us=row.delivered_us or now_us)
    elif one_shot or row.attempts >= len(schedule_us):
        values.update(status="FAILED", next_attempt_us=None)
    else:
        values.update(status="PENDING",
                      next_attempt_us=row.next_attempt_us + schedule_us[row.attempts])
    return values


def enqueue(conn: Connection, *, mchid: str, event_type: str, url: str | None, resource: dict,
            now_us: int, order_pk: int | None = None, refund_pk: int | None = None,
            scenario_id: str | None = None) -> str | None:
    """Queue one notification; None when there is nowhere to send it (no notify_url)."""
    if not url:
        return None
    notification_id = str(uuid.uuid4())
    conn.execute(_ENQUEUE, {
        "id": notification_id, "mchid": mchid, "order_pk": order_pk, "refund_pk": refund_pk,
        "event_type": event_type, "summary": SUMMARIES.get(event_type, event_type),
        "original_type": "refund" if event_type.startswith("REFUND.") else "payscore",
        "url": url, "resource": resource, "status": "PENDING", "attempts": 0,
        "next_attempt_us": now_us, "created_us": now_us, "scenario_id": scenario_id})
    return notification_id


_ENQUEUE = db.notifications.insert()  # built once: most order changes notify


# ---------------------------------------------------------------- leases (the dispatcher)
# `now_us` is the sandbox clock (when a row is due); `wall_us` the wall clock (leases).


# The dispatcher asks these several times a second per process: built once (per batch size),
# values as parameters, since building a statement cost more CPU than running it.
_n = db.notifications
_DUE = (select(_n.c.id).where(_n.c.status == "PENDING",
                              _n.c.next_attempt_us <= bindparam("now_us"),
                              or_(_n.c.lease_until_us.is_(None),
                                  _n.c.lease_until_us < bindparam("wall_us")))
        .order_by(_n.c.next_attempt_us))
_ANY_DUE = _DUE.limit(1)


@functools.cache
def _claim_statement(limit: int, postgres: bool):
    due = _DUE.limit(limit)
    if postgres:
        due = due.with_for_update(skip_locked=True)
    return (update(_n).where(_n.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=bindparam("owner"), lease_until_us=bindparam("lease_until"))
            .returning(*_n.c))


def any_due(conn: Connection, now_us: int, wall_us: int) -> bool:
    return conn.execute(_ANY_DUE, {"now_us": now_us, "wall_us": wall_us}).first() is not None


def claim(conn: Connection, owner: str, limit: int, now_us: int, wall_us: int,
          lease_until_us: int) -> list[Row]:
    """Lease up to `limit` due rows to `owner` (in the caller's write transaction)."""
    return conn.execute(_claim_statement(limit, db.is_postgres(conn)), {
        "now_us": now_us, "wall_us": wall_us, "owner": owner,
        "lease_until": lease_until_us}).all()


def lease_one(conn: Connection, notification_id: str, owner: str, now_us: int, wall_us: int,
              lease_until_us: int) -> Row | None:
    """Make one row due now and lease it to `owner`, whatever its status; None when it does not
    exist or is in flight elsewhere (a live lease)."""
    n = db.notifications
    return conn.execute(update(n).where(n.c.id == notification_id,
                                        or_(n.c.lease_until_us.is_(None),
                                            n.c.lease_until_us < wall_us))
                        .values(status="PENDING", next_attempt_us=now_us, lease_owner=owner,
                                lease_until_us=lease_until_us)
                        .returning(*n.c)).first()


def exists(conn: Connection, notification_id: str) -> bool:
    n = db.notifications
    return conn.execute(select(n.c.id).where(n.c.id == notification_id)).first() is not None


def extend_lease(conn: Connection, notification_id: str, owner: str, until_us: int) -> None:
    n = db.notifications
    conn.execute(update(n).where(n.c.id == notification_id, n.c.lease_owner == owner)
                 .values(lease_until_us=until_us))


def finish_many(conn: Connection, owner: str, work: list[tuple[str, dict, list[dict]]]
                ) -> None:
    """Record attempt rows and release leases, each row with its new status and due time.

    A row whose lease is no longer `owner`'s keeps its state (its attempts are still logged).
    """
    attempts = [record for _, _, records in work for record in records]
    if attempts:
        conn.execute(db.delivery_attempts.insert(), attempts)
    by_columns: dict[tuple[str, ...], list[dict]] = {}  # one executemany per shape of update
    for notification_id, values, _ in work:
        params = {"n_id": notification_id, **{f"v_{k}": v for k, v in values.items()}}
        by_columns.setdefault(tuple(sorted(values)), []).append(params)
    for columns, params in by_columns.items():
        conn.execute(_finish_statement(columns), [{**p, "owner": owner} for p in params])


@functools.cache
def _finish_statement(columns: tuple[str, ...]):
    n = db.notifications
    return (update(n).where(n.c.id == bindparam("n_id"), n.c.lease_owner == bindparam("owner"))
            .values(lease_owner=None, lease_until_us=None,
                    **{k: bindparam(f"v_{k}") for k in columns}))


def pin_sqlite(engine: Engine):
    """Open one idle SQLite connection for the caller to hold (and close when done).

    Closing the last connection to a WAL database checkpoints and fsyncs (10-25 ms on this
    disk), which every short transaction would otherwise pay; an idle autocommit connection
    holds no snapshot and blocks nothing. None for other databases.
    """
    if engine.dialect.name != "sqlite" or ":memory:" in str(engine.url):
        return None
    pin = engine.raw_connection()
    cursor = pin.cursor()
    cursor.execute("SELECT id FROM clock")
    cursor.fetchall()
    cursor.close()
    return pin


def merchants_for(conn: Connection, mchids: set[str]) -> dict[str, Row]:
    """What encryption and signing need, for the merchants of a claimed batch."""
    if not mchids:
        return {}
    return {r.mchid: r for r in conn.execute(_MERCHANTS, {"mchids": sorted(mchids)})}


_MERCHANTS = select(db.merchants.c.mchid, db.merchants.c.appid, db.merchants.c.service_id,
                    db.merchants.c.apiv3_key, db.merchants.c.signing_mode,
                    db.merchants.c.migration_ratio).where(
    db.merchants.c.mchid.in_(bindparam("mchids", expanding=True)))


def count_due(conn: Connection, now_us: int) -> int:
    n = db.notifications
    return conn.execute(select(func.count()).select_from(n).where(
        n.c.status == "PENDING", n.c.next_attempt_us <= now_us)).scalar_one()


def due_in_flight(conn: Connection, now_us: int, wall_us: int) -> bool:
    """Is a due row being posted right now (a live lease, any dispatcher)?"""
    n = db.notifications
    return conn.execute(select(n.c.id).where(
        n.c.status == "PENDING", n.c.next_attempt_us <= now_us,
        n.c.lease_until_us >= wall_us).limit(1)).first() is not None


# ---------------------------------------------------------------- test notifications


def sample_resource(merchant, event_type: str, now_us: int) -> dict:
    """A plausible decrypted payload (§6.4) for a test notification of `event_type`."""
    now = to_datetime(now_us)
    suffix = uuid.uuid4().hex[:12].upper()
    if event_type.startswith("REFUND."):
        status = event_type.split(".", 1)[1]
        out = {"mchid": merchant.mchid, "out_trade_no": f"SANDBOX_TEST_{suffix}",
               "transaction_id": "42" + "0" * 26, "out_refund_no": f"SANDBOX_REFUND_{suffix}",
               "refund_id": "50" + "0" * 27, "refund_status": status,
               "user_received_account": "支付用户零钱",
               "amount": {"total": 100, "refund": 100, "payer_total": 100, "payer_refund": 100}}
        if status == "SUCCESS":
            out["success_time"] = rfc3339(now)
        return out
    base = {"appid": merchant.appid, "mchid": merchant.mchid, "service_id": merchant.service_id,
            "openid": f"sandbox_test_openid_{suffix.lower()}"}
    if event_type in ("PAYSCORE.USER_OPEN_SERVICE", "PAYSCORE.USER_CLOSE_SERVICE"):
        return {**base, "user_service_status": event_type.split(".", 1)[1],
                "openorclose_time": payscore_time(now)}
    paid = event_type == "PAYSCORE.USER_PAID"
    out = {**base, "out_order_no": f"SANDBOX_TEST_{suffix}", "order_id": "1000000000" + "0" * 21,
           "service_introduction": "sandbox test notification",
           "state": "DONE" if paid else "DOING",
           "state_description": "USER_PAID" if paid else "USER_CONFIRM",
           "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 100},
           "time_range": {"start_time": payscore_time(now)}, "need_collection": paid}
    if paid:
        out["total_amount"] = 100
        out["collection"] = {"state": "USER_PAID", "total_amount": 100, "paying_amount": 0,
                             "paid_amount": 100, "details": [{
                                 "seq": 1, "amount": 100, "paid_type": "NEWTON",
                                 "paid_time": payscore_time(now),
                                 "transaction_id": "42" + "0" * 26}]}
    return out


# ---------------------------------------------------------------- the read side (control API)


def _time(us: int | None) -> str | None:
    return None if us is None else rfc3339(to_datetime(us))


def _summary(row, attempt_rows: int) -> dict:
    return {
        "id": row.id, "mchid": row.mchid, "event_type": row.event_type, "summary": row.summary,
        "original_type": row.original_type, "url": row.url, "status": row.status,
        "out_order_no": (row.resource or {}).get("out_order_no"),
        "attempts": row.attempts, "attempt_rows": attempt_rows,
        "next_attempt_us": row.next_attempt_us, "next_attempt_time": _time(row.next_attempt_us),
        "created_us": row.created_us, "created_time": _time(row.created_us),
        "delivered_us": row.delivered_us, "delivered_time": _time(row.delivered_us),
        "scenario_id": row.scenario_id,
    }


def attempt_view(record: Mapping) -> dict:
    """An attempt row (or the record the dispatcher just wrote) as the control API shows it."""
    keys = ("status_code", "latency_ms", "answer", "error", "fault", "signature_serial",
            "scenario_id")
    return {"at_us": record["at_us"], "at_time": _time(record["at_us"]),
            **{key: record.get(key) for key in keys}}


def list_notifications(conn: Connection, *, mchid: str | None = None,
                       out_order_no: str | None = None, status: str | None = None,
                       limit: int = 50, offset: int = 0) -> dict:
    """Notifications, newest first, with how many attempt rows each has."""
    n, a = db.notifications, db.delivery_attempts
    where = []
    if mchid:
        where.append(n.c.mchid == mchid)
    if status:
        where.append(n.c.status == status)
    if out_order_no:
        orders = select(db.orders.c.pk).where(db.orders.c.out_order_no == out_order_no)
        if mchid:
            orders = orders.where(db.orders.c.mchid == mchid)
        where.append(n.c.order_pk.in_(orders.scalar_subquery()))
    total = conn.execute(select(func.count()).select_from(n).where(*where)).scalar_one()
    attempt_rows = (select(func.count()).where(a.c.notification_id == n.c.id)
                    .correlate(n).scalar_subquery().label("attempt_rows"))
    rows = conn.execute(select(n, attempt_rows).where(*where)
                        .order_by(n.c.created_us.desc(), n.c.id).limit(limit).offset(offset))
    return {"total": total, "limit": limit, "offset": offset,
            "data": [_summary(row, row.attempt_rows) for row in rows]}


def get_notification(conn: Connection, notification_id: str) -> dict | None:
    """One notification with its decrypted payload and every attempt, oldest first."""
    row = conn.execute(select(db.notifications)
                       .where(db.notifications.c.id == notification_id)).first()
    if row is None:
        return None
    a = db.delivery_attempts
    attempts = [attempt_view(r._mapping) for r in conn.execute(
        select(a).where(a.c.notification_id == notification_id).order_by(a.c.id))]
    return {**_summary(row, len(attempts)), "resource": row.resource, "attempt_log": attempts}
