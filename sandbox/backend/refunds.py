"""Domestic refunds against a Pay Score collection's transaction (reference §2.11, §2.12).

A refund is accepted as PROCESSING; a timed job (`refund_settle`, one minute later on the
sandbox clock) makes it SUCCESS unless the control API forced another outcome first. Every
outcome enqueues its REFUND.* notification in the same transaction.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection, Engine, Row

from merchant_kit.protocol import rfc3339
from sandbox import db, errors, jobs, provision
from sandbox.backend import orders as o
from sandbox.callbacks import outbox
from sandbox.clock import to_datetime
from sandbox.world.jobs_registry import register_job

SETTLE_AFTER_US = 60 * 1_000_000
MIN_GAP_US = 60 * 1_000_000  # partial refunds of one transaction: at least a minute apart
MAX_REFUNDS = 50
REFUND_WINDOW_US = 365 * jobs.DAY_US
FINAL = ("SUCCESS", "CLOSED")
# Which outcomes the control API may force from which status (ABNORMAL is handled by hand
# at the merchant and can still end either way).
FORCIBLE = {"PROCESSING": ("SUCCESS", "ABNORMAL", "CLOSED"), "ABNORMAL": ("SUCCESS", "CLOSED")}


def _order_missing() -> errors.ResourceNotExists:
    return errors.ResourceNotExists("订单不存在")


def _refund_missing() -> errors.ResourceNotExists:
    return errors.ResourceNotExists("退款单不存在")


class Refunds:
    def __init__(self, engine: Engine):
        self.engine = engine

    def create_refund(self, mchid: str, body: dict, now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            request_digest = o.digest(body)
            existing = _lock_refund(conn, mchid, body["out_refund_no"])
            if existing is not None:
                if existing.request_digest != request_digest:
                    raise errors.InvalidRequest("退款单号重复，且请求参数与原退款请求不一致",
                                                detail={"field": "/out_refund_no",
                                                        "location": "body",
                                                        "issue": "same number, other request"})
                return refund_view(conn, existing)  # same out_refund_no: the same refund
            txn = self._transaction(conn, mchid, body)
            amount = body["amount"]
            if amount["total"] != txn.amount:
                raise errors.InvalidRequest("订单金额与原交易金额不一致",
                                            detail={"field": "/amount/total", "location": "body",
                                                    "value": amount["total"],
                                                    "issue": "must equal the transaction amount"})
            if amount["refund"] > txn.amount - txn.refunded:
                raise errors.InvalidRequest("申请退款金额超过订单可退金额",
                                            detail={"field": "/amount/refund", "location": "body",
                                                    "value": amount["refund"],
                                                    "issue": "exceeds what is left to refund"})
            if now_us > txn.paid_us + REFUND_WINDOW_US:
                raise errors.InvalidRequest("订单已超过退款期限")
            self._check_pace(conn, txn, now_us)
            pk = conn.execute(db.refunds.insert().values(
                mchid=mchid, out_refund_no=body["out_refund_no"],
                refund_id="50" + "".join(secrets.choice("0123456789") for _ in range(27)),
                transaction_id=txn.transaction_id, amount=amount["refund"], total=txn.amount,
                status="PROCESSING", request_digest=request_digest,
                doc={k: body[k] for k in ("reason", "funds_account", "goods_detail")
                     if k in body} | {"from": amount.get("from_", [])},
                notify_url=body.get("notify_url"), created_us=now_us,
                success_us=None)).inserted_primary_key[0]
            conn.execute(update(db.transactions)
                         .where(db.transactions.c.transaction_id == txn.transaction_id)
                         .values(refunded=txn.refunded + amount["refund"]))
            jobs.schedule(conn, now_us + SETTLE_AFTER_US, "refund_settle", str(pk))
            o.record_event(conn, txn.order_pk, now_us, "refund", detail={
                "out_refund_no": body["out_refund_no"], "amount": amount["refund"],
                "transaction_id": txn.transaction_id})
            return refund_view(conn, _refund(conn, pk))

    def query_refund(self, mchid: str, out_refund_no: str) -> dict[str, Any]:
        with db.read_tx(self.engine) as conn:
            row = conn.execute(select(db.refunds).where(
                db.refunds.c.mchid == mchid,
                db.refunds.c.out_refund_no == out_refund_no)).first()
            if row is None:
                raise _refund_missing()
            return refund_view(conn, row)

    def settle_refund(self, mchid: str, out_refund_no: str, body: dict,
                      now_us: int) -> dict[str, Any]:
        """Control API: force the refund's outcome now instead of waiting for the job."""
        with db.write_tx(self.engine) as conn:
            row = _lock_refund(conn, mchid, out_refund_no)
            if row is None:
                raise _refund_missing()
            wanted = body["status"]
            if row.status == wanted:
                return refund_view(conn, row)
            if wanted not in FORCIBLE.get(row.status, ()):
                raise errors.InvalidRequest(f"退款单状态为{row.status}，不能变为{wanted}")
            jobs.cancel(conn, "refund_settle", str(row.pk))
            finish(conn, row, wanted, now_us)
            return refund_view(conn, _refund(conn, row.pk))

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _transaction(conn: Connection, mchid: str, body: dict) -> Row:
        """transaction_id, or out_trade_no (for Pay Score: the debit's number, which the
        sandbox makes equal to the transaction id); never the service order's out_order_no."""
        key = body.get("transaction_id") or body.get("out_trade_no")
        t = db.transactions
        txn = conn.execute(db.for_update(select(t).where(t.c.mchid == mchid,
                                                         t.c.transaction_id == key),
                                         conn)).first()
        if txn is None:
            raise _order_missing()
        return txn

    @staticmethod
    def _check_pace(conn: Connection, txn: Row, now_us: int) -> None:
        r = db.refunds
        count, last = conn.execute(select(func.count(), func.max(r.c.created_us))
                                   .where(r.c.transaction_id == txn.transaction_id)).one()
        if count >= MAX_REFUNDS:
            raise errors.InvalidRequest("订单退款次数超过限制（50次）")
        if last is not None and now_us - last < MIN_GAP_US:
            raise errors.FrequencyLimited("频率限制，同一订单的部分退款需间隔1分钟，请稍后再试")


def finish(conn: Connection, row: Row, status: str, now_us: int) -> None:
    """Move a refund to its outcome and tell the merchant (REFUND.SUCCESS / ABNORMAL / CLOSED)."""
    values: dict[str, Any] = {"status": status}
    if status == "SUCCESS":
        values["success_us"] = now_us
    conn.execute(update(db.refunds).where(db.refunds.c.pk == row.pk).values(**values))
    if status == "CLOSED":  # the money never left: it can be refunded again
        t = db.transactions
        conn.execute(update(t).where(t.c.transaction_id == row.transaction_id)
                     .values(refunded=t.c.refunded - row.amount))
    row = _refund(conn, row.pk)
    merchant = provision.merchant_row(conn, row.mchid)
    resource: dict[str, Any] = {
        "mchid": row.mchid, "out_trade_no": row.transaction_id,
        "transaction_id": row.transaction_id, "out_refund_no": row.out_refund_no,
        "refund_id": row.refund_id, "refund_status": status,
        "user_received_account": "支付用户零钱",
        "amount": {"total": row.total, "refund": row.amount, "payer_total": row.total,
                   "payer_refund": row.amount}}
    if status == "SUCCESS":
        resource["success_time"] = rfc3339(to_datetime(now_us))
    outbox.enqueue(conn, mchid=row.mchid, event_type=f"REFUND.{status}",
                   url=row.notify_url or merchant.refund_notify_url, resource=resource,
                   now_us=now_us, refund_pk=row.pk)


@register_job("refund_settle")
def refund_settle(conn: Connection, job: Row, now_us: int) -> None:
    """A minute after it was accepted, a refund still PROCESSING succeeds (to 零钱)."""
    try:
        pk = int(job.ref)
    except (TypeError, ValueError):
        return
    row = conn.execute(db.for_update(select(db.refunds).where(db.refunds.c.pk == pk),
                                     conn)).first()
    if row is not None and row.status == "PROCESSING":
        finish(conn, row, "SUCCESS", now_us)


def refund_view(conn: Connection, row: Row) -> dict[str, Any]:
    """The Refund object of §2.11, as create and query answer it."""
    doc = row.doc or {}
    amount: dict[str, Any] = {"total": row.total, "refund": row.amount}
    if doc.get("from"):
        amount["from"] = doc["from"]
    amount.update(payer_total=row.total, payer_refund=row.amount, settlement_refund=row.amount,
                  settlement_total=row.total, discount_refund=0, currency="CNY", refund_fee=0)
    out: dict[str, Any] = {
        "refund_id": row.refund_id, "out_refund_no": row.out_refund_no,
        "transaction_id": row.transaction_id, "out_trade_no": row.transaction_id,
        "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
    }
    if row.success_us is not None:
        out["success_time"] = rfc3339(to_datetime(row.success_us))
    out.update(create_time=rfc3339(to_datetime(row.created_us)), status=row.status,
               funds_account=doc.get("funds_account", "AVAILABLE"), amount=amount,
               promotion_detail=[])
    return out


def _refund(conn: Connection, pk: int) -> Row:
    return conn.execute(select(db.refunds).where(db.refunds.c.pk == pk)).one()


def _lock_refund(conn: Connection, mchid: str, out_refund_no: str) -> Row | None:
    stmt = select(db.refunds).where(db.refunds.c.mchid == mchid,
                                    db.refunds.c.out_refund_no == out_refund_no)
    return conn.execute(db.for_update(stmt, conn)).first()
