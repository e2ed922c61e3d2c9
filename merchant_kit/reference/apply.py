"""Applying what the provider says (a reply, a query, a callback) to a rental, in one transaction.

Every source goes through `apply_order`, so a callback, a reconciliation query and an
operation's own reply can arrive in any order and the rental still ends in the same place:
states only move forward, `charged` only grows, and the device follows the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Row

from merchant_kit import ServiceOrder
from merchant_kit.reference import states, store

_REFUND_RANK = {"UNKNOWN": 0, "PROCESSING": 1, "ABNORMAL": 2, "SUCCESS": 3, "CLOSED": 3,
                "FAILED": 3}


@dataclass
class Applied:
    state: str
    complete_now: bool = False  # a finish was waiting for the confirmation that just arrived


def _transaction(order: ServiceOrder) -> tuple[str | None, int | None]:
    details = order.collection.details if order.collection is not None else None
    for detail in details or []:
        if detail.transaction_id:
            return detail.transaction_id, detail.amount
    return None, None


def apply_order(conn: Connection, rental: Row, order: ServiceOrder, now: float, source: str,
                bugs: frozenset[str] = frozenset(), calls: int = 0,
                **extra: Any) -> Applied:
    """Merge the provider's order into the rental; `extra` columns are written as well."""
    truth = states.from_order(order)
    values: dict[str, Any] = dict(extra)
    if truth is None:
        store.note(conn, rental.id, now, "order_unrecognised", source=source,
                   state=order.state, state_description=order.state_description)
        store.update_rental(conn, rental.id, now, calls=calls, **values)
        return Applied(rental.state)
    if "accept_out_of_order" in bugs and source == "callback":
        new = truth  # the bug: whatever arrives last wins
    else:
        new = states.merge(rental.state, truth)
    unknown_op = values.get("unknown_op", rental.unknown_op)
    if unknown_op and states.settles(unknown_op, truth):
        values["unknown_op"] = unknown_op = None
    values.setdefault("order_created", True)
    paid = order.collection.paid_amount if order.collection is not None else None
    if isinstance(paid, int) and paid > rental.charged:
        values["charged"] = paid
    txn, txn_amount = _transaction(order)
    if txn and txn != rental.transaction_id:
        values.update(transaction_id=txn, transaction_amount=txn_amount)
    finish_pending = values.get("finish_pending", rental.finish_pending)
    if new != rental.state:
        values["state"] = new
        store.note(conn, rental.id, now, "state", from_state=rental.state, to_state=new,
                   source=source, provider=_triple(order))
        _device_follows(conn, rental, new, now, bugs, values)
        if new in (states.AWAITING_PAYMENT, states.PAID, states.CANCELLED, states.EXPIRED):
            values["finish_pending"] = finish_pending = False
        if new in (states.AWAITING_PAYMENT, states.PAID) and rental.completed_at is None:
            values["completed_at"] = now
        if new == states.PAID:
            store.note(conn, rental.id, now, "receipt_sent", charged=values.get(
                "charged", rental.charged))
    store.update_rental(conn, rental.id, now, calls=calls, **values)
    complete_now = bool(finish_pending and new == states.IN_SERVICE and unknown_op is None)
    return Applied(new, complete_now=complete_now)


def _triple(order: ServiceOrder) -> str:
    collection = order.collection.state if order.collection is not None else None
    return "/".join(p for p in (order.state, order.state_description, collection) if p)


def _device_follows(conn: Connection, rental: Row, new: str, now: float,
                    bugs: frozenset[str], values: dict[str, Any]) -> None:
    if new == states.IN_SERVICE:
        store.set_device(conn, rental.device_id, "IN_USE", now)
        values["device_released"] = False
        store.note(conn, rental.id, now, "device_unlocked", device_id=rental.device_id)
        return
    if new in states.HOLDS_DEVICE or rental.device_released:
        return
    if new == states.EXPIRED and "no_expiry_release" in bugs:
        return
    release_device(conn, rental, now, values, reason=new)


def release_device(conn: Connection, rental: Row, now: float, values: dict[str, Any],
                   reason: str) -> None:
    store.set_device(conn, rental.device_id, "AVAILABLE", now)
    values["device_released"] = True
    store.note(conn, rental.id, now, "device_released", device_id=rental.device_id,
               reason=reason)


def apply_refund(conn: Connection, refund: Row, status: str | None, now: float, source: str,
                 **extra: Any) -> bool:
    """Move a refund forward (PROCESSING -> SUCCESS/ABNORMAL/CLOSED); True if it changed."""
    if status not in _REFUND_RANK:
        store.note(conn, refund.rental_id, now, "refund_unrecognised", source=source,
                   out_refund_no=refund.out_refund_no, status=status)
        return False
    if _REFUND_RANK[status] <= _REFUND_RANK.get(refund.status, 0) and status != "FAILED":
        return False
    if refund.status in ("SUCCESS", "CLOSED", "FAILED"):
        return False
    conn.execute(store.refunds.update().where(
        store.refunds.c.out_refund_no == refund.out_refund_no).values(
        status=status, updated_at=now, **extra))
    store.note(conn, refund.rental_id, now, "refund_state", out_refund_no=refund.out_refund_no,
               from_status=refund.status, to_status=status, source=source)
    return True


def rental_view(conn: Connection, rental: Row) -> dict[str, Any]:
    """GET /driver/rentals/{id}: the contract's fields first, then the documented extras."""
    refunds = store.refunds_of(conn, rental.id)
    return {
        "rental_id": str(rental.id),
        "out_order_no": rental.out_order_no if rental.order_created else None,
        "merchant_state": states.UNKNOWN if rental.unknown_op else rental.state,
        "charged": rental.charged,
        "refunded": sum(r.amount for r in refunds if r.status in store.COUNTED_REFUNDS),
        "device_released": bool(rental.device_released),
        "mode": rental.mode,
        "openid": rental.openid,
        "deposit": rental.deposit,
        "device_id": rental.device_id,
        "finish_pending": bool(rental.finish_pending),
        "finish_amount": rental.finish_amount,
        "unknown_op": rental.unknown_op,
        "callbacks": rental.callbacks,
        "provider_calls": rental.provider_calls,
        "refunds": [{"out_refund_no": r.out_refund_no, "amount": r.amount, "status": r.status}
                    for r in refunds],
        "last_error": rental.last_error,
    }
