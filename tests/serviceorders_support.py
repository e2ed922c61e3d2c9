"""Service-order test helpers (reference §2.2-§2.9): create, confirm as the user, complete,
query, and bring orders into any state of §3.3."""

from __future__ import annotations

from sqlalchemy import select

from merchant_kit.protocol import payscore_time
from sandbox import db
from sandbox.testing import SignedClient

ORDER = "/v3/payscore/serviceorder"
PAYS = "o_magic_always_confirms"  # confirms, and every deduction succeeds at once
CANNOT_PAY = "o_magic_insufficient_balance"
DAY_US = 86400 * 1_000_000
PAYMENTS = [{"name": "租金", "amount": 500}]


def create(client: SignedClient, no: str, **overrides):
    return client.post(ORDER, client.create_body(no, **overrides))


def confirm(client: SignedClient, no: str, openid: str = PAYS):
    r = client.post(f"/sandbox/merchants/{client.merchant.mchid}/orders/{no}/confirm",
                    {"openid": openid}, sign=False)
    assert r.status_code == 200, r.json
    return r


def now_text(client: SignedClient) -> str:
    return payscore_time(client.app.extensions["payscore"].clock.now())


def complete_body(client: SignedClient, total: int = 500, **overrides) -> dict:
    body = {**client.ids(), "post_payments": [{"name": "租金", "amount": total}],
            "total_amount": total, "time_range": {"end_time": now_text(client)}}
    body.update(overrides)
    return body


def complete(client: SignedClient, no: str, total: int = 500, **overrides):
    return client.post(f"{ORDER}/{no}/complete", complete_body(client, total, **overrides))


def query(client: SignedClient, no: str):
    return client.get(ORDER, query={**client.ids(), "out_order_no": no})


def order_row(sandbox, mchid: str, no: str):
    with sandbox.engine.connect() as conn:
        return conn.execute(select(db.orders).where(db.orders.c.mchid == mchid,
                                                    db.orders.c.out_order_no == no)).one()


def notifications(sandbox, event_type: str) -> list:
    with sandbox.engine.connect() as conn:
        return list(conn.execute(select(db.notifications)
                                 .where(db.notifications.c.event_type == event_type)))


def drive(client: SignedClient, sandbox, state: str, *numbers: str) -> None:
    """Bring new orders into one of the seven states of §3.3."""
    for no in numbers:
        assert create(client, no, post_payments=PAYMENTS).status_code == 200
    if state == "EXPIRED":
        sandbox.advance(30 * DAY_US + 1_000_000)
    for no in numbers:
        if state in ("CREATED", "EXPIRED"):
            continue
        if state == "REVOKED":
            assert client.post(f"{ORDER}/{no}/cancel", {**client.ids(), "reason": "r"}) \
                .status_code == 200
            continue
        confirm(client, no, PAYS)  # pays only when the clock moves (the deduction job)
        if state != "CONFIRMED":
            assert complete(client, no, 0 if state == "DONE_FREE" else 500).status_code == 200
    if state == "PAID":
        sandbox.advance(1_000_000)  # WeChat's first deduction runs at completion


def operation_body(client: SignedClient, op: str) -> dict:
    ids = client.ids()
    return {
        "cancel": {**ids, "reason": "another reason"},
        # a different amount than the one the order was completed with: not a re-entry
        "complete": complete_body(client, 400),
        "modify": {**ids, "post_payments": [{"name": "租金", "amount": 300}],
                   "total_amount": 300, "reason": "discount"},
        "pay": ids,
        "sync": {**ids, "type": "Order_Paid", "detail": {"paid_time": now_text(client)}},
    }[op]
