"""Driving the reference merchant in tests: the `Driver` the reference-merchant tests share,
and a gateway hook. The fixtures that start sandboxes and merchants are in conftest.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests
from flask import Response, g, request
from sqlalchemy import func, select

from merchant_kit.reference import LiveMerchant
from sandbox import db
from sandbox.live import LiveSandbox

DEAD_URL = "http://127.0.0.1:9/payscore/notify"  # nothing listens: every callback is lost


class Driver:
    """What the scenario runner does: driver API calls, control API calls, sandbox evidence."""

    def __init__(self, merchant: LiveMerchant, live: LiveSandbox, mchid: str):
        self.m, self.live, self.mchid = merchant, live, mchid
        self.http = requests.Session()

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = self.http.request(method, self.m.driver_url + path, json=body, timeout=60)
        assert r.status_code == status, (method, path, r.status_code, r.text)
        return r.json()

    def rent(self, openid: str, mode: str = "need_confirm", **extra: Any) -> dict:
        return self.call("POST", "/rentals", {"openid": openid, "mode": mode, "deposit": 9900,
                                               **extra}, status=201)

    def get(self, rental_id: str) -> dict:
        return self.call("GET", f"/rentals/{rental_id}")

    def wait(self, rental_id: str, *states: str, until: Any = None) -> dict:
        deadline = time.monotonic() + 15
        view = self.get(rental_id)
        while time.monotonic() < deadline:
            if view["merchant_state"] in states and (until is None or until(view)):
                return view
            time.sleep(0.05)
            view = self.get(rental_id)
        raise AssertionError(f"still {view['merchant_state']}, wanted {states}: {view}")

    def control(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, f"{self.live.base_url}/sandbox{path}", json=body,
                              timeout=60)
        assert r.status_code < 400, (path, r.status_code, r.text)
        return r.json() if r.content else None

    def confirm(self, out_order_no: str, openid: str) -> None:
        self.control("POST", f"/merchants/{self.mchid}/orders/{out_order_no}/confirm",
                     {"openid": openid})

    def order(self, out_order_no: str) -> Any:
        with self.live.sandbox.engine.connect() as conn:
            return conn.execute(select(db.orders).where(
                db.orders.c.mchid == self.mchid,
                db.orders.c.out_order_no == out_order_no)).first()

    def requests_for(self, operation: str) -> int:
        rl = db.request_log.c
        with self.live.sandbox.engine.connect() as conn:
            return conn.execute(select(func.count()).where(
                rl.mchid == self.mchid, rl.operation == operation)).scalar_one()

    def wait_order(self, out_order_no: str, state: str) -> Any:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            row = self.order(out_order_no)
            if row is not None and row.state == state:
                return row
            time.sleep(0.05)
        raise AssertionError(f"sandbox order {out_order_no} never reached {state}")


def failing_gateway(armed: list[bool]) -> Callable[[Response], Response]:
    """An `after` hook: while armed, every /v3/ answer becomes a 502 page (already applied)."""
    def hook(response: Response) -> Response:
        if armed and armed[0] and request.path.startswith("/v3/"):
            g.skip_signing = True
            return Response(b"<html>502 Bad Gateway</html>", 502, content_type="text/html")
        return response
    return hook
