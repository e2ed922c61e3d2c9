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

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Row

from sandbox import db, errors, statemachine
from sandbox.statemachine import State

CREATE_REPLAY_MISMATCH = ("订单重入参数校验失败", "271316598")


def digest(data: dict) -> str:
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def new_order_id() -> str:
    return "1000000000" + "".join(secrets.choice("0123456789") for _ in range(21))


def check_merchant_ids(merchant: Row, appid: str, service_id: str) -> None:
    """appid must be bound to the mchid and the service_id must be the merchant's (§2.2)."""
    if appid != merchant.appid:
        raise errors.ParamError("appid和mch_id不匹配",
                                detail={"field": "/appid", "issue": "not bound to this mchid",
                                        "location": "body"})
    if service_id != merchant.service_id:
        raise errors.NoAuth("商户暂无权限使用此服务")


def lock_order(conn: Connection, mchid: str, out_order_no: str) -> Row:
    stmt = select(db.orders).where(db.orders.c.mchid == mchid,
                                   db.orders.c.out_order_no == out_order_no)
    row = conn.execute(db.for_update(stmt, conn)).first()
    if row is None:
        raise errors.OrderNotExist("订单不存在", internal_code="271317510")
    return row


def transition(conn: Connection, order: Row, event: str, now_us: int,
               detail: dict | None = None, **values: Any) -> State:
    """The only writer of order state: table lookup, order update, timeline event."""
    current = statemachine.state_of(order)
    target = statemachine.next_state(event, current)
    state, description, collection = target
    conn.execute(update(db.orders).where(db.orders.c.pk == order.pk).values(
        state=state, state_description=description, collection_state=collection,
        updated_us=now_us, version=order.version + 1, **values))
    record_event(conn, order.pk, now_us, event, statemachine.name(current),
                 statemachine.name(target), detail)
    return target


def record_event(conn: Connection, order_pk: int, now_us: int, kind: str,
                 from_state: str | None = None, to_state: str | None = None,
                 detail: dict | None = None) -> None:
    conn.execute(db.order_events.insert().values(
        order_pk=order_pk, at_us=now_us, kind=kind, from_state=from_state, to_state=to_state,
        detail=detail))


def reload(conn: Connection, pk: int) -> Row:
    return conn.execute(select(db.orders).where(db.orders.c.pk == pk)).one()


def transactions_of(conn: Connection, order_pk: int) -> list[Row]:
    return list(conn.execute(select(db.transactions)
                             .where(db.transactions.c.order_pk == order_pk)
                             .order_by(db.transactions.c.seq)))


def entity(conn: Connection, order: Row) -> dict[str, Any]:
    """The ServiceOrderEntity of reference §2.1, as query and callbacks render it."""
    from merchant_kit.protocol import payscore_time
    from sandbox.clock import to_datetime

    doc = order.doc
    out: dict[str, Any] = {
        "out_order_no": order.out_order_no, "service_id": order.service_id,
        "appid": order.appid, "mchid": order.mchid,
        "service_introduction": doc["service_introduction"], "state": order.state,
    }
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
    stmt = select(db.orders).where(db.orders.c.mchid == mchid)
    if out_order_no is not None:
        stmt = stmt.where(db.orders.c.out_order_no == out_order_no)
    else:
        stmt = stmt.where(db.orders.c.query_id == query_id)
    row = conn.execute(stmt).first()
    if row is None or row.appid != appid or row.service_id != service_id:
        # another merchant's order, or another appid: indistinguishable from "no such order"
        raise errors.OrderNotExist("订单不存在", internal_code="271317510")
    return row
