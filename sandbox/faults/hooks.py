"""The hook functions the sandbox calls (sandbox.service.Hooks), and what a fault matches on.

API hooks run inside a request (flask `g`, after the signature check): the scope is g.mchid,
g.operation (the view name = operationId), the order number (path, query string or the JSON
body) and the user (path, query, body, else the order's openid, looked up only when an armed
fault is scoped to a user). Callback hooks match the Delivery (mchid, event type as the
operation, out_order_no, openid). Every fault taken is written down where the evidence lives:
g.fault / g.scenario_id become the request log's columns, delivery.fault / delivery.scenario_id
the delivery attempt's.
"""

from __future__ import annotations

import json
from functools import cached_property

from flask import Response, g, request
from sqlalchemy import select

from sandbox import db
from sandbox.callbacks.delivery import Delivery
from sandbox.faults.effects import Hit
from sandbox.faults.engine import Armed, FaultEngine

FAULT_COLUMN = 64  # request_log.fault and delivery_attempts.fault are String(64)


def _noted(current: str | None, name: str) -> str:
    return (f"{current},{name}" if current else name)[:FAULT_COLUMN]


class RequestScope:
    """What an API call is about, each part computed only if some fault asks for it."""

    def __init__(self, engine: FaultEngine):
        self.engine = engine

    @property
    def mchid(self) -> str | None:
        return g.get("mchid")

    @property
    def operation(self) -> str | None:
        return g.get("operation")

    @cached_property
    def _body(self) -> dict:
        if request.method != "POST":
            return {}
        try:
            body = json.loads(request.get_data(cache=True) or b"null")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _text(self, name: str) -> str | None:
        value = (request.view_args or {}).get(name) or request.args.get(name) or \
            self._body.get(name)
        return value if isinstance(value, str) else None

    @cached_property
    def out_order_no(self) -> str | None:
        return g.get("out_order_no") or self._text("out_order_no")

    @cached_property
    def openid(self) -> str | None:
        found = self._text("openid")
        if found or not (self.mchid and self.out_order_no):
            return found
        o = db.orders.c
        with self.engine.sb.engine.connect() as conn:
            return conn.execute(select(o.openid).where(
                o.mchid == self.mchid, o.out_order_no == self.out_order_no)).scalar()


class FaultHooks:
    def __init__(self, engine: FaultEngine):
        self.engine = engine

    # ------------------------------------------------------------ API requests

    def before(self) -> Response | None:
        snapshot = self.engine.armed(g.get("fault_version"))
        g.fault_snapshot = snapshot
        faults = snapshot.by_hook.get("before")
        if not faults or not g.get("mchid"):
            return None
        scope = g.fault_scope = RequestScope(self.engine)
        for fault in faults:
            if not fault.in_scope(scope):
                continue
            now = self.engine.take(fault, g.now_us)
            if now is None:
                continue
            _record_request(fault)
            answer = fault.effect.appliers["before"](Hit(fault, self.engine, now), None)
            if answer is not None:
                g.fault_answered = True  # the sandbox did not answer: no after-hook faults
                return answer
        return None

    def after(self, response: Response) -> Response:
        snapshot = g.get("fault_snapshot")
        if snapshot is None:  # the request failed before the before-hooks: unauthenticated
            return response
        faults = snapshot.by_hook.get("after")
        if not faults or g.get("fault_answered"):
            return response
        scope = g.get("fault_scope") or RequestScope(self.engine)
        for fault in faults:
            if fault.effect.only_2xx and not 200 <= response.status_code < 300:
                continue
            if not fault.in_scope(scope):
                continue
            now = self.engine.take(fault, g.now_us, response)
            if now is None:
                continue
            _record_request(fault)
            response = fault.effect.appliers["after"](Hit(fault, self.engine, now),
                                                      response) or response
        return response

    # ------------------------------------------------------------ callbacks

    def build(self, delivery: Delivery, stage: str) -> None:
        self._delivery(f"build:{stage}", delivery)

    def send(self, delivery: Delivery) -> None:
        self._delivery("send", delivery)

    def _delivery(self, hook: str, delivery: Delivery) -> None:
        faults = self.engine.armed().by_hook.get(hook)
        if not faults:
            return
        scope = DeliveryScope(delivery)
        for fault in faults:
            if not fault.in_scope(scope):
                continue
            observer = fault.effect.observers.get(hook)
            if observer is not None:
                observer(self.engine, fault, delivery)
            applier = fault.effect.appliers.get(hook)
            if applier is None or hook not in fault.hooks:
                continue
            now = self.engine.take(fault, None, delivery, binding=delivery.notification_id)
            if now is None:
                continue
            delivery.fault = _noted(delivery.fault, fault.effect.name)
            delivery.scenario_id = delivery.scenario_id or fault.scenario_id
            applier(Hit(fault, self.engine, now), delivery)


class DeliveryScope:
    def __init__(self, delivery: Delivery):
        self.mchid = delivery.mchid
        self.operation = delivery.event_type
        self.out_order_no = delivery.out_order_no
        self.openid = delivery.openid


def _record_request(fault: Armed) -> None:
    g.fault = _noted(g.get("fault"), fault.effect.name)
    g.scenario_id = g.get("scenario_id") or fault.scenario_id
