"""Service-order operations: the rules of reference §2 and §3 over the database.

Each public method is one operation and one transaction: it locks the order, asks the
transition table for the next state, writes the order and its timeline event, and enqueues any
notification or timed job it causes, all in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection, Row

from merchant_kit.protocol import CST
from sandbox import db, errors, statemachine
from sandbox.statemachine import State

CREATE_REPLAY_MISMATCH = ("订单重入参数校验失败", "271316598")
# §2.6-§2.8: modify, pay and sync refuse while an automatic deduction is in flight
DEBIT_IN_PROGRESS = ("单据正在扣款中，请稍后再试", "271316754")


# Built once, values as parameters: every request runs some of these, and building a statement
# cost more CPU than running it (profiled: coercion and cache-key generation dominated).
_o = db.orders
_BY_NO = select(_o).where(_o.c.mchid == bindparam("mchid"),
                          _o.c.out_order_no == bindparam("out_order_no"))
_BY_NO_FOR_UPDATE = _BY_NO.with_for_update()
_BY_QUERY_ID = select(_o).where(_o.c.mchid == bindparam("mchid"),
                                _o.c.query_id == bindparam("query_id"))
_BY_PK = select(_o).where(_o.c.pk == bindparam("order_pk"))
_INSERT = _o.insert().returning(*_o.c)
_UPDATE = update(_o).where(_o.c.pk == bindparam("order_pk"))  # SET: the parameters' keys
_EVENT = db.order_events.insert()
_TRANSACTIONS = select(db.transactions).where(
    db.transactions.c.order_pk == bindparam("order_pk")).order_by(db.transactions.c.seq)


def order_by_no(conn: Connection, mchid: str, out_order_no: str, lock: bool = False) -> Row | None:
    """The merchant's order; `lock` takes its row lock on PostgreSQL (SQLite's IMMEDIATE
    transaction already serialises writers)."""
    stmt = _BY_NO_FOR_UPDATE if lock and db.is_postgres(conn) else _BY_NO
    return conn.execute(stmt, {"mchid": mchid, "out_order_no": out_order_no}).first()


def order_by_pk(conn: Connection, pk: int, lock: bool = False) -> Row | None:
    return conn.execute(db.for_update(_BY_PK, conn) if lock else _BY_PK,
                        {"order_pk": pk}).first()


def digest(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_order_id() -> str:
    return f"1000000000{secrets.randbelow(10**21):021d}"


def check_merchant_ids(merchant: Row, appid: str, service_id: str) -> None:
    """appid must be bound to the mchid and the service_id must be the merchant's (§2.2)."""
    if appid != merchant.appid:
        raise errors.ParamError("appid和mch_id不匹配",
                                detail={"field": "/appid", "issue": "not bound to this mchid",
                                        "location": "body"})
    if service_id != merchant.service_id:
        raise errors.NoAuth("商户暂无权限使用此服务")


def lock_order(conn: Connection, mchid: str, out_order_no: str) -> Row:
    row = order_by_no(conn, mchid, out_order_no, lock=True)
    if row is None:
        raise errors.OrderNotExist("订单不存在", internal_code="271317510")
    return row


def replay_mismatch() -> errors.InvalidRequest:
    message, internal = CREATE_REPLAY_MISMATCH
    return errors.InvalidRequest(message, internal_code=internal)


def check_not_deducting(order: Row) -> None:
    if order.deducting:
        message, internal = DEBIT_IN_PROGRESS
        raise errors.InvalidRequest(message, internal_code=internal)


def insert_order(conn: Connection, event: str, now_us: int, detail: dict | None = None,
                 **values: Any) -> Row:
    """A new order whose first state the transition table gives for (event, None)."""
    state, description, collection = statemachine.next_state(event, None)  # type: ignore[arg-type]
    row = conn.execute(_INSERT, {
        "state": state, "state_description": description, "collection_state": collection,
        "created_us": now_us, "updated_us": now_us, "version": 1, **values}).one()
    record_event(conn, row.pk, now_us, event, None,
                 statemachine.name((state, description, collection)), detail)
    return row


def transition(conn: Connection, order: Row, event: str, now_us: int,
               detail: dict | None = None, **values: Any) -> State:
    """The only writer of order state: table lookup, order update, timeline event."""
    current = statemachine.state_of(order)
    target = statemachine.next_state(event, current)
    state, description, collection = target
    conn.execute(_UPDATE, {
        "order_pk": order.pk, "state": state, "state_description": description,
        "collection_state": collection, "updated_us": now_us, "version": order.version + 1,
        **values})
    record_event(conn, order.pk, now_us, event, statemachine.name(current),
                 statemachine.name(target), detail)
    return target


def record_event(conn: Connection, order_pk: int, now_us: int, kind: str,
                 from_state: str | None = None, to_state: str | None = None,
                 detail: dict | None = None) -> None:
    conn.execute(_EVENT, {"order_pk": order_pk, "at_us": now_us, "kind": kind,
                          "from_state": from_state, "to_state": to_state, "detail": detail})


def reload(conn: Connection, pk: int) -> Row:
    return conn.execute(_BY_PK, {"order_pk": pk}).one()


def transactions_of(conn: Connection, order_pk: int) -> list[Row]:
    return list(conn.execute(_TRANSACTIONS, {"order_pk": order_pk}))


def entity(conn: Connection, order: Row) -> dict[str, Any]:
    """The ServiceOrderEntity of reference §2.1, as query and callbacks render it."""
    from merchant_kit.protocol import payscore_time
    from sandbox.clock import to_datetime

    doc = order.doc
    out: dict[str, Any] = {
        "out_order_no": order.out_order_no, "service_id": order.service_id,
        "appid": order.appid, "mchid": order.mchid,
        "state": order.state,
    }
    if doc.get("service_introduction"):
        out["service_introduction"] = doc["service_introduction"]
    if order.state_description:
        out["state_description"] = order.state_description
    for key in ("post_payments", "post_discounts", "risk_fund", "time_range", "location",
                "attach"):
        if doc.get(key) not in (None, [], {}):
            out[key] = doc[key]
    if order.total_amount is not None:
        out["total_amount"] = order.total_amount
    out["need_collection"] = order.collection_state is not None
    if order.collection_state is not None:
        details = [{"seq": t.seq, "amount": t.amount, "paid_type": t.paid_type,
                    "paid_time": payscore_time(to_datetime(t.paid_us)),
                    "transaction_id": t.transaction_id}
                   for t in transactions_of(conn, order.pk)]
        total = order.total_amount or 0
        out["collection"] = {"state": order.collection_state, "total_amount": total,
                             "paying_amount": max(total - order.paid_amount, 0),
                             "paid_amount": order.paid_amount, "details": details}
    if order.notify_url:
        out["notify_url"] = order.notify_url
    if order.openid:
        out["openid"] = order.openid
    out["order_id"] = order.order_id
    return out


def create_answer(conn: Connection, order: Row) -> dict[str, Any]:
    out = entity(conn, order)
    for key in ("collection", "need_collection", "total_amount", "openid"):
        out.pop(key, None)
    out["package"] = order.doc["package"]
    return out


def find_order(conn: Connection, mchid: str, appid: str, service_id: str,
               out_order_no: str | None = None, query_id: str | None = None) -> Row:
    if out_order_no is not None:
        row = order_by_no(conn, mchid, out_order_no)
    else:
        row = conn.execute(_BY_QUERY_ID, {"mchid": mchid, "query_id": query_id}).first()
    if row is None or row.appid != appid or row.service_id != service_id:
        # another merchant's order, or another appid: indistinguishable from "no such order"
        raise errors.OrderNotExist("订单不存在", internal_code="271317510")
    return row


# ---------------------------------------------------------------- amount and time rules


def check_total(body: dict) -> int:
    """total_amount must equal the payments minus the discounts (§2.5); `amount` is the line
    total, `count` is display only (the reference leaves it open; merchants merge lines)."""
    payments = sum(p.get("amount", 0) for p in body.get("post_payments", []))
    discounts = sum(d.get("amount", 0) for d in body.get("post_discounts", []))
    total = body.get("total_amount", payments - discounts)
    if total != payments - discounts or total < 0:
        raise errors.ParamError("最终总金额计算非法",
                                detail={"field": "/total_amount", "issue":
                                        "must equal sum(post_payments) - sum(post_discounts)",
                                        "location": "body"})
    return total


def _moment(text: str) -> tuple[str, int]:
    """('day' | 'second', microseconds of its first instant) for a validated payscore time."""
    from sandbox.clock import from_datetime
    from sandbox.schemas.common import parse_payscore_time

    moment = parse_payscore_time(text)
    if moment is None:  # the schema already refused it; defensive for stored documents
        raise errors.param_error("/time_range", "not a real date/time", text)
    return ("day" if len(text) == 8 else "second"), from_datetime(moment)


def _day_start_us(us: int) -> int:
    from sandbox.clock import from_datetime, to_datetime

    local = to_datetime(us).astimezone(CST)
    return from_datetime(local.replace(hour=0, minute=0, second=0, microsecond=0))


def check_create_times(time_range: dict, now_us: int) -> None:
    """§2.1 TimeRange at create, in China time: a second-precision start must lie after the
    call, a day-precision one today or later; an end after the start and after now + 1 min
    (second precision) or on/after the start's day and today (day precision)."""
    now_s_us = now_us - now_us % 1_000_000
    today = _day_start_us(now_us)
    start = time_range["start_time"]
    start_first = None
    if start != "OnAccept":
        precision, start_first = _moment(start)
        if precision == "second" and start_first <= now_s_us:
            raise _time_error("/time_range/start_time", "服务开始时间不能早于当前时间", start)
        if precision == "day" and start_first < today:
            raise _time_error("/time_range/start_time", "服务开始日期不能早于当天", start)
    end = time_range.get("end_time")
    if end is None:
        return
    precision, end_first = _moment(end)
    if precision == "second":
        if end_first <= now_s_us + 60_000_000:
            raise _time_error("/time_range/end_time", "预计结束时间需晚于当前时间1分钟", end)
        if start_first is not None and end_first <= start_first:
            raise _time_error("/time_range/end_time", "预计结束时间需晚于服务开始时间", end)
    else:
        if end_first < today:
            raise _time_error("/time_range/end_time", "预计结束日期不能早于当天", end)
        if start_first is not None and end_first < _day_start_us(start_first):
            raise _time_error("/time_range/end_time", "预计结束日期不能早于服务开始日期", end)


_ACCEPTED_AT = (select(db.order_events.c.at_us)
                .where(db.order_events.c.order_pk == bindparam("order_pk"),
                       db.order_events.c.kind.in_(("user_confirm", "create_confirmed")))
                .order_by(db.order_events.c.id.desc()).limit(1))


def accepted_at(conn: Connection, order: Row) -> int | None:
    """When the user confirmed (or the no-confirm order was created): an OnAccept start."""
    return conn.execute(_ACCEPTED_AT, {"order_pk": order.pk}).scalar()


def check_actual_times(start: str | None, end: str | None, now_us: int,
                       accepted_us: int | None = None) -> None:
    """At complete / direct-complete (§2.1): the real end is known, not after the call and not
    before the start (for OnAccept: the moment the user confirmed)."""
    if end is None:
        raise errors.param_error("/time_range/end_time",
                                 "required at complete when not given at create")
    end_precision, end_first = _moment(end)
    if end_precision == "second" and end_first > now_us:
        raise _time_error("/time_range/end_time", "实际结束时间不能晚于使用完结接口的时间", end)
    if end_precision == "day" and end_first > _day_start_us(now_us):
        raise _time_error("/time_range/end_time", "实际结束时间不能晚于使用完结接口的时间", end)
    if start == "OnAccept" and accepted_us is not None:
        start_precision, start_first = "second", accepted_us - accepted_us % 1_000_000
    elif start and start != "OnAccept":
        start_precision, start_first = _moment(start)
    else:
        return
    if "day" in (start_precision, end_precision):
        start_first, end_first = _day_start_us(start_first), _day_start_us(end_first)
    if end_first < start_first:
        raise _time_error("/time_range/end_time", "真实结束时间小于预计开始时间", end)


def _time_error(field: str, message: str, value: str) -> errors.ParamError:
    return errors.ParamError(message, detail={"field": field, "value": value,
                                              "issue": message, "location": "body"})
