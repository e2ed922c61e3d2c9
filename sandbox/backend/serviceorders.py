"""Service-order operations, one method per operation name (the contract's operationIds)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine, Row

from sandbox import db, errors, provision
from sandbox.backend import orders as o
from sandbox.callbacks import outbox
from sandbox.world import reactions


class ServiceOrders:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------ merchant operations

    def create_service_order(self, mchid: str, body: dict, now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            merchant = provision.merchant_row(conn, mchid)
            o.check_merchant_ids(merchant, body["appid"], body["service_id"])
            request_digest = o.digest(body)
            existing = conn.execute(db.for_update(select(db.orders).where(
                db.orders.c.mchid == mchid, db.orders.c.out_order_no == body["out_order_no"]),
                conn)).first()
            if existing is not None:
                if existing.request_digest != request_digest:
                    message, internal = o.CREATE_REPLAY_MISMATCH
                    raise errors.InvalidRequest(message, internal_code=internal)
                return o.create_answer(conn, existing)  # "原参重入": the same order (§1.4)
            risk = body["risk_fund"]
            if risk["amount"] > merchant.risk_fund_ceiling:
                raise errors.InvalidRequest("创建订单的订单风险金额超过此服务的服务风险金额")
            reactions.check_create(conn, merchant, body.get("openid"), risk["amount"], now_us)
            confirmed = not body.get("need_user_confirm", True)
            if confirmed:
                self._require_authorised(conn, merchant, body["openid"])
            doc = {k: body[k] for k in ("service_introduction", "post_payments",
                                        "post_discounts", "risk_fund", "time_range",
                                        "location", "attach", "device") if k in body}
            doc["package"] = secrets.token_urlsafe(48)
            pk = conn.execute(db.orders.insert().values(
                mchid=mchid, out_order_no=body["out_order_no"], order_id=o.new_order_id(),
                query_id=secrets.token_hex(16), appid=body["appid"],
                service_id=body["service_id"], openid=body.get("openid"),
                need_user_confirm=not confirmed, state="CREATED", state_description=None,
                collection_state=None, total_amount=None, paid_amount=0,
                request_digest=request_digest, doc=doc, notify_url=body.get("notify_url"),
                deducting=False, created_us=now_us, updated_us=now_us, version=1,
            )).inserted_primary_key[0]
            o.record_event(conn, pk, now_us, "create", None, "CREATED",
                           {"need_user_confirm": not confirmed})
            order = o.reload(conn, pk)
            if confirmed:
                o.transition(conn, order, "user_confirm", now_us, {"mode": "pre-authorised"})
                order = o.reload(conn, pk)
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
            if order.state_description == "MCH_COMPLETE" or order.state == "DONE":
                if order.complete_digest == complete_digest and order.state == "DOING":
                    return self._complete_answer(conn, order)
                if order.complete_digest is not None and order.state == "DOING":
                    message, internal = o.CREATE_REPLAY_MISMATCH
                    raise errors.InvalidRequest(message, internal_code=internal)
            total = check_total(body)
            risk_amount = order.doc["risk_fund"]["amount"]
            if order.doc["risk_fund"]["name"] == "ESTIMATE_ORDER_COST":
                merchant = provision.merchant_row(conn, mchid)
                if total > merchant.risk_fund_ceiling:
                    raise errors.InvalidRequest("总金额超过此服务的服务风险金额",
                                                internal_code="271316656")
            elif total > risk_amount:
                raise errors.InvalidRequest("总金额超过订单风险金额")
            check_end_time(order, body, now_us)
            doc = dict(order.doc)
            for key in ("post_payments", "post_discounts", "time_range", "device"):
                if key in body:
                    doc[key] = {**doc.get(key, {}), **body[key]} if key == "time_range" \
                        else body[key]
            if "location" in body:
                doc["location"] = {**(doc.get("location") or {}), **body["location"]}
            event = "complete" if total > 0 else "complete_free"
            o.transition(conn, order, event, now_us, {"total_amount": total},
                         total_amount=total, complete_digest=complete_digest, doc=doc)
            order = o.reload(conn, order.pk)
            if total > 0:
                reactions.on_order_completed(conn, order, now_us)
            return self._complete_answer(conn, order)

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
            return settle_paid(conn, order_pk, now_us, paid_type)

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _own(conn, mchid: str, out_order_no: str, body: dict) -> Row:
        order = o.lock_order(conn, mchid, out_order_no)
        if order.appid != body["appid"] or order.service_id != body["service_id"]:
            raise errors.ParamError("appid或service_id与订单不一致",
                                    detail={"field": "/appid", "issue": "does not match order",
                                            "location": "body"})
        return order

    @staticmethod
    def _ref(order: Row) -> dict[str, Any]:
        return {"appid": order.appid, "mchid": order.mchid, "out_order_no": order.out_order_no,
                "service_id": order.service_id, "order_id": order.order_id}

    @staticmethod
    def _complete_answer(conn, order: Row) -> dict[str, Any]:
        out = o.entity(conn, order)
        out.pop("collection", None)
        out.pop("openid", None)
        out.pop("attach", None)
        out.pop("notify_url", None)
        return out

    @staticmethod
    def _require_authorised(conn, merchant: Row, openid: str) -> None:
        row = conn.execute(select(db.permissions).where(
            db.permissions.c.mchid == merchant.mchid,
            db.permissions.c.service_id == merchant.service_id,
            db.permissions.c.openid == openid,
            db.permissions.c.state == "AVAILABLE")).first()
        if row is None:
            raise errors.NoAuth("请检查服务授权状态")


def check_total(body: dict) -> int:
    """total_amount must equal the payments minus the discounts (§2.5)."""
    payments = sum(p.get("amount", 0) for p in body.get("post_payments", []))
    discounts = sum(d.get("amount", 0) for d in body.get("post_discounts", []))
    if body["total_amount"] != payments - discounts:
        raise errors.ParamError("最终总金额计算非法",
                                detail={"field": "/total_amount", "issue":
                                        "must equal sum(post_payments) - sum(post_discounts)",
                                        "location": "body"})
    return body["total_amount"]


def check_end_time(order: Row, body: dict, now_us: int) -> None:
    from merchant_kit.protocol import payscore_time
    from sandbox.clock import to_datetime

    end = (body.get("time_range") or {}).get("end_time") or order.doc["time_range"].get("end_time")
    if end is None:
        raise errors.param_error("/time_range/end_time",
                                 "required at complete when not given at create")
    now_text = payscore_time(to_datetime(now_us))
    if len(end) == 14 and end > now_text:
        raise errors.ParamError("实际结束时间不能晚于使用完结接口的时间")
    start = order.doc["time_range"].get("start_time", "")
    if start.isdigit() and len(start) == len(end) and end < start:
        raise errors.ParamError("真实结束时间小于预计开始时间")


def settle_paid(conn, order_pk: int, now_us: int, paid_type: str) -> dict[str, Any]:
    """Record the collection and move the order to DONE/USER_PAID, with USER_PAID callback."""
    order = conn.execute(db.for_update(select(db.orders).where(db.orders.c.pk == order_pk),
                                       conn)).one()
    amount = (order.total_amount or 0) - order.paid_amount
    event = "deduction_succeeded" if paid_type == "NEWTON" else "sync_paid"
    o.transition(conn, order, event, now_us, {"amount": amount, "paid_type": paid_type},
                 paid_amount=order.total_amount, deducting=False)
    seq = len(o.transactions_of(conn, order.pk)) + 1
    conn.execute(db.transactions.insert().values(
        transaction_id="42" + "".join(secrets.choice("0123456789") for _ in range(26)),
        order_pk=order.pk, mchid=order.mchid, seq=seq, amount=amount, refunded=0,
        paid_type=paid_type, paid_us=now_us))
    conn.execute(update(db.orders).where(db.orders.c.pk == order.pk).values(deducting=False))
    order = o.reload(conn, order.pk)
    resource = o.entity(conn, order)
    if paid_type == "NEWTON":
        outbox.enqueue(conn, mchid=order.mchid, event_type="PAYSCORE.USER_PAID",
                       url=order.notify_url, resource=resource, now_us=now_us,
                       order_pk=order.pk)
    return resource
