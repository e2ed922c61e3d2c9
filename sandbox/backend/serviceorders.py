"""Service-order operations, one method per operation name (the contract's operationIds)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine, Row

from sandbox import db, errors, provision, statemachine
from sandbox.backend import orders as o
from sandbox.callbacks import outbox
from sandbox.world import reactions

_DOC_KEYS = ("service_introduction", "post_payments", "post_discounts", "risk_fund",
             "time_range", "location", "attach", "device")


class ServiceOrders:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------ merchant operations

    def create_service_order(self, mchid: str, body: dict, now_us: int,
                             merchant: Any = None) -> dict[str, Any]:
        """`merchant`: the settings the request read at its start (sandbox.held), if any."""
        with db.write_tx(self.engine) as conn:
            merchant = merchant or provision.merchant_row(conn, mchid)
            o.check_merchant_ids(merchant, body["appid"], body["service_id"])
            request_digest = o.digest(body)
            existing = self._existing(conn, mchid, body["out_order_no"])
            if existing is not None:
                if existing.request_digest != request_digest:
                    raise o.replay_mismatch()
                return o.create_answer(conn, existing)  # "原参重入": the same order (§1.4)
            risk = body["risk_fund"]
            if risk["amount"] > merchant.risk_fund_ceiling:
                raise errors.InvalidRequest("创建订单的订单风险金额超过此服务的服务风险金额")
            o.check_create_times(body["time_range"], now_us)
            reactions.check_create(conn, merchant, body.get("openid"), risk["amount"], now_us)
            confirmed = not body.get("need_user_confirm", True)
            if confirmed:
                require_authorised(conn, merchant.mchid, merchant.service_id, body["openid"])
            doc = {k: body[k] for k in _DOC_KEYS if k in body}
            doc["package"] = secrets.token_urlsafe(48)
            order = o.insert_order(
                conn, "create_confirmed" if confirmed else "create", now_us,
                {"need_user_confirm": not confirmed},
                mchid=mchid, out_order_no=body["out_order_no"], order_id=o.new_order_id(),
                query_id=secrets.token_hex(16), appid=body["appid"],
                service_id=body["service_id"], openid=body.get("openid"),
                need_user_confirm=not confirmed, total_amount=None, paid_amount=0,
                request_digest=request_digest, doc=doc, notify_url=body.get("notify_url"),
                deducting=False)
            reactions.on_order_created(conn, order, now_us)
            return o.create_answer(conn, order)

    def query_service_order(self, mchid: str, query: dict) -> dict[str, Any]:
        with db.read_tx(self.engine) as conn:
            order = o.find_order(conn, mchid, query["appid"], query["service_id"],
                                 query.get("out_order_no"), query.get("query_id"))
            return o.entity(conn, order)

    def cancel_service_order(self, mchid: str, out_order_no: str, body: dict,
                             now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            order = self._own(conn, mchid, out_order_no, body)
            cancel_digest = o.digest(body)
            if order.state == "REVOKED" and order.cancel_digest == cancel_digest:
                return self._ref(order)  # a retry with exactly the same parameters (§1.4)
            o.transition(conn, order, "cancel", now_us, {"reason": body["reason"]},
                         cancel_digest=cancel_digest)
            return self._ref(order)

    def complete_service_order(self, mchid: str, out_order_no: str, body: dict,
                               now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            order = self._own(conn, mchid, out_order_no, body)
            complete_digest = o.digest(body)
            if statemachine.state_of(order) == statemachine.COMPLETED:
                # §1.4: an identical re-entry answers again; anything else is refused
                if order.complete_digest == complete_digest:
                    return self._complete_answer(conn, order)
                raise o.replay_mismatch()
            statemachine.next_state("complete", statemachine.state_of(order))  # state first
            total = o.check_total(body)
            self._check_ceiling(conn, order, total)
            start = order.doc["time_range"].get("start_time")
            end = (body.get("time_range") or {}).get("end_time") \
                or order.doc["time_range"].get("end_time")
            o.check_actual_times(start, end, now_us, o.accepted_at(conn, order))
            doc = replace_amounts(dict(order.doc), body)
            if "time_range" in body:
                doc["time_range"] = {**doc["time_range"], **body["time_range"]}
            if "location" in body:
                doc["location"] = {**(doc.get("location") or {}), **body["location"]}
            event = "complete" if total > 0 else "complete_free"
            o.transition(conn, order, event, now_us, {"total_amount": total},
                         total_amount=total, complete_digest=complete_digest, doc=doc)
            order = o.reload(conn, order.pk)
            if total > 0:
                reactions.on_order_completed(conn, order, now_us)
            return self._complete_answer(conn, order)

    def modify_service_order(self, mchid: str, out_order_no: str, body: dict,
                             now_us: int) -> dict[str, Any]:
        """§2.6: lower the amount still to collect; each modification lowers it again."""
        with db.write_tx(self.engine) as conn:
            order = self._own(conn, mchid, out_order_no, body)
            modify_digest = o.digest(body)
            if order.doc.get("modify_digest") == modify_digest \
                    and statemachine.state_of(order) == statemachine.COMPLETED:
                return o.entity(conn, order)  # the same modification, sent again
            statemachine.next_state("modify", statemachine.state_of(order))
            o.check_not_deducting(order)
            total = o.check_total(body)
            if total >= (order.total_amount or 0):
                raise errors.InvalidRequest("修改后的订单金额必须小于原订单金额",
                                            detail={"field": "/total_amount",
                                                    "value": total, "location": "body",
                                                    "issue": "may only go down"})
            if total < 1:
                raise errors.param_error("/total_amount",
                                         "must stay above 0: nothing left to collect is "
                                         "not a modification", total)
            doc = replace_amounts({**order.doc, "modify_digest": modify_digest}, body)
            o.transition(conn, order, "modify", now_us,
                         {"from_total": order.total_amount, "total_amount": total,
                          "reason": body["reason"]}, total_amount=total, doc=doc)
            return o.entity(conn, o.reload(conn, order.pk))

    def pay_service_order(self, mchid: str, out_order_no: str, body: dict,
                          now_us: int) -> dict[str, Any]:
        """§2.7: ask WeChat to try collecting now; the world decides whether it can."""
        with db.write_tx(self.engine) as conn:
            order = self._own(conn, mchid, out_order_no, body)
            statemachine.next_state("pay", statemachine.state_of(order))
            o.check_not_deducting(order)
            reactions.on_pay_requested(conn, order, now_us)
            o.transition(conn, order, "pay", now_us, {"by": "merchant"})
            return self._ref(order)

    def sync_service_order(self, mchid: str, out_order_no: str, body: dict,
                           now_us: int) -> dict[str, Any]:
        """§2.8: the user paid the merchant another way; the order is done (paid_type MCH).

        No PAYSCORE.USER_PAID callback follows: the merchant told WeChat, not the reverse.
        """
        from sandbox.clock import from_datetime
        from sandbox.schemas.common import parse_payscore_time

        with db.write_tx(self.engine) as conn:
            order = self._own(conn, mchid, out_order_no, body)
            statemachine.next_state("sync_paid", statemachine.state_of(order))
            o.check_not_deducting(order)
            paid_time = body["detail"]["paid_time"]
            paid_us = from_datetime(parse_payscore_time(paid_time))  # type: ignore[arg-type]
            if paid_us > now_us:
                raise errors.param_error("/detail/paid_time", "must not be in the future",
                                         paid_time)
            settle_paid(conn, order.pk, now_us, paid_type="MCH", paid_us=paid_us)
            reactions.on_order_paid(conn, order.pk, now_us)
            return o.entity(conn, o.reload(conn, order.pk))

    def direct_complete_service_order(self, mchid: str, body: dict,
                                      now_us: int) -> dict[str, Any]:
        """§2.9: create and complete at once for a pre-authorised user (no risk fund)."""
        with db.write_tx(self.engine) as conn:
            merchant = provision.merchant_row(conn, mchid)
            o.check_merchant_ids(merchant, body["appid"], body["service_id"])
            request_digest = o.digest(body)
            existing = self._existing(conn, mchid, body["out_order_no"])
            if existing is not None:
                if existing.request_digest != request_digest:
                    raise o.replay_mismatch()
                return self._direct_answer(conn, existing)
            total = o.check_total(body)
            if total > 0 and not body.get("notify_url"):
                raise errors.param_error("/notify_url",
                                         "required when there is something to collect")
            o.check_actual_times(body["time_range"]["start_time"],
                                 body["time_range"]["end_time"], now_us)
            require_authorised(conn, mchid, merchant.service_id, body["openid"])
            reactions.check_create(conn, merchant, body["openid"], total, now_us)
            doc = {k: body[k] for k in _DOC_KEYS if k in body}
            order = o.insert_order(
                conn, "direct_complete" if total > 0 else "direct_complete_free", now_us,
                {"total_amount": total},
                mchid=mchid, out_order_no=body["out_order_no"], order_id=o.new_order_id(),
                query_id=secrets.token_hex(16), appid=body["appid"],
                service_id=body["service_id"], openid=body["openid"], need_user_confirm=False,
                total_amount=total, paid_amount=0, request_digest=request_digest,
                complete_digest=request_digest, doc=doc, notify_url=body.get("notify_url"),
                deducting=False)
            if total > 0:
                reactions.on_order_completed(conn, order, now_us)
            return self._direct_answer(conn, order)

    # ------------------------------------------------------------ simulated users

    def user_confirm(self, mchid: str, out_order_no: str, now_us: int,
                     openid: str | None = None) -> dict[str, Any]:
        """The user taps "confirm" in the Pay Score mini-program (PAYSCORE.USER_CONFIRM)."""
        with db.write_tx(self.engine) as conn:
            order = o.lock_order(conn, mchid, out_order_no)
            values = {"openid": openid} if openid and not order.openid else {}
            if not (order.openid or openid):
                raise errors.param_error("openid", "which user confirms? pass an openid")
            o.transition(conn, order, "user_confirm", now_us, {"by": "user"}, **values)
            order = o.reload(conn, order.pk)
            resource = o.entity(conn, order)
            outbox.enqueue(conn, mchid=mchid, event_type="PAYSCORE.USER_CONFIRM",
                           url=order.notify_url, resource=resource, now_us=now_us,
                           order_pk=order.pk)
            return resource

    def user_decline(self, mchid: str, out_order_no: str, now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            order = o.lock_order(conn, mchid, out_order_no)
            o.transition(conn, order, "user_decline", now_us, {"by": "user"})
            return o.entity(conn, o.reload(conn, order.pk))

    def deduction_succeeded(self, order_pk: int, now_us: int, paid_type: str = "NEWTON"
                            ) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            paid = settle_paid(conn, order_pk, now_us, paid_type)
            reactions.on_order_paid(conn, order_pk, now_us)  # the user's on-time record
            return paid

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _existing(conn: Connection, mchid: str, out_order_no: str) -> Row | None:
        return o.order_by_no(conn, mchid, out_order_no, lock=True)

    @staticmethod
    def _own(conn: Connection, mchid: str, out_order_no: str, body: dict) -> Row:
        order = o.lock_order(conn, mchid, out_order_no)
        if order.appid != body["appid"] or order.service_id != body["service_id"]:
            raise errors.ParamError("appid或service_id与订单不一致",
                                    detail={"field": "/appid", "issue": "does not match order",
                                            "location": "body"})
        return order

    @staticmethod
    def _check_ceiling(conn: Connection, order: Row, total: int) -> None:
        """先享 (ESTIMATE_ORDER_COST): the service's ceiling; 先免: the order's risk fund."""
        risk = order.doc["risk_fund"]
        if risk["name"] == "ESTIMATE_ORDER_COST":
            merchant = provision.merchant_row(conn, order.mchid)
            if total > merchant.risk_fund_ceiling:
                raise errors.InvalidRequest("总金额超过此服务的服务风险金额",
                                            internal_code="271316656")
        elif total > risk["amount"]:
            raise errors.InvalidRequest("总金额超过订单风险金额")

    @staticmethod
    def _ref(order: Row) -> dict[str, Any]:
        return {"appid": order.appid, "mchid": order.mchid, "out_order_no": order.out_order_no,
                "service_id": order.service_id, "order_id": order.order_id}

    @staticmethod
    def _complete_answer(conn: Connection, order: Row) -> dict[str, Any]:
        out = o.entity(conn, order)
        for key in ("collection", "openid", "attach", "notify_url"):
            out.pop(key, None)
        return out

    @staticmethod
    def _direct_answer(conn: Connection, order: Row) -> dict[str, Any]:
        out = o.entity(conn, order)
        for key in ("collection", "need_collection", "openid", "risk_fund"):
            out.pop(key, None)
        return out


def replace_amounts(doc: dict, body: dict) -> dict:
    """complete/modify replace both lists, so the stored order adds up to its total_amount."""
    doc["post_payments"] = body["post_payments"]
    doc.pop("post_discounts", None)
    if body.get("post_discounts"):
        doc["post_discounts"] = body["post_discounts"]
    if "device" in body:
        doc["device"] = body["device"]
    return doc


def require_authorised(conn: Connection, mchid: str, service_id: str, openid: str) -> None:
    """No-confirm create and direct-complete need the user's AVAILABLE authorisation."""
    row = conn.execute(select(db.permissions.c.pk).where(
        db.permissions.c.mchid == mchid,
        db.permissions.c.service_id == service_id,
        db.permissions.c.openid == openid,
        db.permissions.c.state == "AVAILABLE").limit(1)).first()
    if row is None:
        raise errors.NoAuth("请检查服务授权状态")


def settle_paid(conn: Connection, order_pk: int, now_us: int, paid_type: str,
                paid_us: int | None = None) -> dict[str, Any]:
    """Record the collection and move the order to DONE/USER_PAID.

    NEWTON (WeChat collected) sends PAYSCORE.USER_PAID; MCH (`sync`) does not: the merchant
    reported the payment itself, so there is nothing to tell it.
    """
    order = o.order_by_pk(conn, order_pk, lock=True)
    assert order is not None  # the caller holds it
    amount = (order.total_amount or 0) - order.paid_amount
    event = "deduction_succeeded" if paid_type == "NEWTON" else "sync_paid"
    o.transition(conn, order, event, now_us, {"amount": amount, "paid_type": paid_type},
                 paid_amount=order.total_amount, deducting=False)
    seq = len(o.transactions_of(conn, order.pk)) + 1
    conn.execute(db.transactions.insert().values(
        transaction_id="42" + "".join(secrets.choice("0123456789") for _ in range(26)),
        order_pk=order.pk, mchid=order.mchid, seq=seq, amount=amount, refunded=0,
        paid_type=paid_type, paid_us=now_us if paid_us is None else paid_us))
    conn.execute(update(db.orders).where(db.orders.c.pk == order.pk).values(deducting=False))
    order = o.reload(conn, order.pk)
    resource = o.entity(conn, order)
    if paid_type == "NEWTON":
        outbox.enqueue(conn, mchid=order.mchid, event_type="PAYSCORE.USER_PAID",
                       url=order.notify_url, resource=resource, now_us=now_us,
                       order_pk=order.pk)
    return resource
