"""Shared helpers for the world tests (tests/test_world_*.py): orders driven over signed /v3/
calls, the control API, and direct reads of the sandbox's state. No tests live here.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from merchant_kit.protocol import payscore_time
from sandbox import db
from sandbox.clock import to_datetime
from sandbox.world import rules

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 3600 * SECOND
DAY = 24 * HOUR
CST = rules.CST
# Loopback, nothing listening: a callback attempt (if a dispatcher runs) fails fast, locally.
NOTIFY_URL = "http://127.0.0.1:9/notify"


def cst_us(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=CST).timestamp()) * SECOND


# Wednesday 5 March 2025, 10:00 China Standard Time: far from a month end and from 03:00.
T0 = cst_us(2025, 3, 5, 10, 0)


def freeze(sandbox, at_us: int = T0) -> int:
    return sandbox.clock.freeze(at_us)


def create(client, out_order_no: str, openid: str | None = None, amount: int = 9900,
           **overrides: Any):
    body = client.create_body(out_order_no, notify_url=NOTIFY_URL,
                              risk_fund={"name": "ESTIMATE_ORDER_COST", "amount": amount},
                              **overrides)
    if openid:
        body["openid"] = openid
    return client.post("/v3/payscore/serviceorder", body)


def complete(client, sandbox, out_order_no: str, amount: int):
    now_text = payscore_time(to_datetime(sandbox.clock.now_us()))
    return client.post(f"/v3/payscore/serviceorder/{out_order_no}/complete", {
        **client.ids(), "post_payments": [{"name": "租借费", "amount": amount}],
        "total_amount": amount, "time_range": {"end_time": now_text}})


def confirmed_order(client, sandbox, out_order_no: str, openid: str, amount: int = 9900) -> None:
    """An order the user has confirmed (their own confirmation job has run)."""
    answer = create(client, out_order_no, openid, amount=max(amount, 100))
    assert answer.status_code == 200, answer.json
    act(client, openid, "confirm", out_order_no)


def completed_order(client, sandbox, out_order_no: str, openid: str, amount: int) -> None:
    """Confirmed and completed; the first deduction attempt is due now (not yet run)."""
    confirmed_order(client, sandbox, out_order_no, openid, amount)
    answer = complete(client, sandbox, out_order_no, amount)
    assert answer.status_code == 200, answer.json


def control(client):
    return client.app.test_client()


def act(client, openid: str, action: str, out_order_no: str | None = None, **extra: Any):
    body: dict[str, Any] = {"action": action, **extra}
    if out_order_no:
        body.update(mchid=client.merchant.mchid, out_order_no=out_order_no)
    answer = control(client).post(f"/sandbox/users/{openid}/act", json=body)
    assert answer.status_code == 200, answer.json
    return answer.json


def user(client, openid: str) -> dict:
    answer = control(client).get(f"/sandbox/users/{openid}")
    assert answer.status_code == 200, answer.json
    return answer.json


def timeline(client, out_order_no: str) -> dict:
    answer = control(client).get(
        f"/sandbox/orders/{client.merchant.mchid}/{out_order_no}/timeline")
    assert answer.status_code == 200, answer.json
    return answer.json


def kinds(client, out_order_no: str) -> list[str]:
    return [event["kind"] for event in timeline(client, out_order_no)["events"]]


def events_of(client, out_order_no: str, kind: str) -> list[dict]:
    return [e for e in timeline(client, out_order_no)["events"] if e["kind"] == kind]


def state(client, out_order_no: str) -> str:
    return timeline(client, out_order_no)["state"]


def notifications(sandbox, event_type: str) -> list:
    with sandbox.engine.connect() as conn:
        return list(conn.execute(select(db.notifications).where(
            db.notifications.c.event_type == event_type)))


def user_row(sandbox, openid: str):
    with sandbox.engine.connect() as conn:
        return conn.execute(select(db.users).where(db.users.c.openid == openid)).one()


def count(sandbox, table, *where) -> int:
    with sandbox.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def refused(answer, internal_code: str) -> bool:
    return (answer.status_code == 400 and answer.json["code"] == "INVALID_REQUEST"
            and answer.headers["Request-ID"].endswith("-" + internal_code))
