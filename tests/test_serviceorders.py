"""Service orders (reference §2.2-§2.9, §3): every operation in every state, the documented
transitions, re-entry, expiry, and isolation between merchants. The rules of each request are
in test_serviceorders_create.py and test_serviceorders_payment.py."""

from __future__ import annotations

import pytest
from serviceorders_support import (
    CANNOT_PAY,
    DAY_US,
    ORDER,
    PAYMENTS,
    complete,
    complete_body,
    confirm,
    create,
    drive,
    notifications,
    operation_body,
    order_row,
    query,
)

from sandbox.testing import SignedClient, add_merchant

STATES = {
    "CREATED": ("CREATED", None, None),
    "CONFIRMED": ("DOING", "USER_CONFIRM", None),
    "COMPLETED": ("DOING", "MCH_COMPLETE", "USER_PAYING"),
    "PAID": ("DONE", None, "USER_PAID"),
    "DONE_FREE": ("DONE", None, None),
    "REVOKED": ("REVOKED", None, None),
    "EXPIRED": ("EXPIRED", None, None),
}

WRONG_STATE = ("INVALID_REQUEST", "当前订单状态不合法")
NOT_PAYING = ("INVALID_REQUEST", "仅服务订单支付状态为待支付时，才可使用此能力")
CANCELED = ("ORDER_CANCELED", "单据已取消")
DONE = ("ORDER_DONE", "订单已完成")

# (operation, state) -> None for success, else (code, message) of a 400 (reference §3.3).
MATRIX = {
    ("cancel", "CREATED"): None,
    ("cancel", "CONFIRMED"): None,
    ("cancel", "COMPLETED"): ("PARAM_ERROR", "当前订单状态不满足撤销条件"),
    ("cancel", "PAID"): DONE,
    ("cancel", "DONE_FREE"): DONE,
    ("cancel", "REVOKED"): CANCELED,
    ("cancel", "EXPIRED"): WRONG_STATE,
    ("complete", "CREATED"): ("INVALID_REQUEST", "当前订单状态不合法（确认状态）"),
    ("complete", "CONFIRMED"): None,
    ("complete", "COMPLETED"): ("INVALID_REQUEST", "订单重入参数校验失败"),
    ("complete", "PAID"): DONE,
    ("complete", "DONE_FREE"): DONE,
    ("complete", "REVOKED"): CANCELED,
    ("complete", "EXPIRED"): WRONG_STATE,
    **{(op, state): NOT_PAYING for op in ("modify", "pay", "sync")
       for state in ("CREATED", "CONFIRMED", "PAID", "DONE_FREE", "EXPIRED")},
    **{(op, "COMPLETED"): None for op in ("modify", "pay", "sync")},
    **{(op, "REVOKED"): CANCELED for op in ("modify", "pay", "sync")},
}


@pytest.mark.parametrize("state", list(STATES))
def test_every_operation_in_every_state(client, sandbox, state):
    """One order per (state, operation): the matrix of §3.3, then query always works."""
    operations = ("cancel", "complete", "modify", "pay", "sync")
    drive(client, sandbox, state, *(f"M{op}" for op in operations))
    for op in operations:
        no = f"M{op}"
        row = order_row(sandbox, client.merchant.mchid, no)
        assert (row.state, row.state_description, row.collection_state) == STATES[state]
        r = client.post(f"{ORDER}/{no}/{op}", operation_body(client, op))
        expected = MATRIX[(op, state)]
        if expected is None:
            assert r.status_code == 200, (op, state, r.json)
            assert r.json["out_order_no"] == no
        else:
            assert r.status_code == 400, (op, state, r.json)
            assert (r.json["code"], r.json["message"]) == expected, (op, state)
            assert "Wechatpay-Signature" not in r.headers  # errors are not signed
            after = order_row(sandbox, client.merchant.mchid, no)
            assert after.version == row.version, "a refused operation changed the order"
        seen = query(client, no)
        assert seen.status_code == 200 and seen.json["out_order_no"] == no


def test_successful_transitions_land_in_the_documented_state(client, sandbox):
    for no in ("T1", "T2", "T3"):
        assert create(client, no, post_payments=PAYMENTS).json["state"] == "CREATED"
    assert client.post(f"{ORDER}/T1/cancel", {**client.ids(), "reason": "r"}).json[
        "order_id"] == query(client, "T1").json["order_id"]
    assert query(client, "T1").json["state"] == "REVOKED"
    confirm(client, "T2", CANNOT_PAY)
    answer = complete(client, "T2").json
    assert (answer["state"], answer["state_description"], answer["total_amount"],
            answer["need_collection"]) == ("DOING", "MCH_COMPLETE", 500, True)
    entity = query(client, "T2").json
    assert entity["collection"] == {"state": "USER_PAYING", "total_amount": 500,
                                    "paying_amount": 500, "paid_amount": 0, "details": []}
    confirm(client, "T3")
    free = complete(client, "T3", 0).json
    assert (free["state"], free["need_collection"]) == ("DONE", False)
    assert "collection" not in query(client, "T3").json


def test_cancel_retry_with_the_same_reason_answers_again(client):
    create(client, "C1")
    body = {**client.ids(), "reason": "用户取消"}
    first = client.post(f"{ORDER}/C1/cancel", body)
    again = client.post(f"{ORDER}/C1/cancel", body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json


def test_complete_identical_reentry_answers_the_same(client):
    create(client, "R1")
    confirm(client, "R1", CANNOT_PAY)
    body = complete_body(client)
    first = client.post(f"{ORDER}/R1/complete", body)
    again = client.post(f"{ORDER}/R1/complete", body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json


def test_paid_order_has_a_newton_collection_and_user_paid_callback(client, sandbox):
    drive(client, sandbox, "PAID", "P1")
    entity = query(client, "P1").json
    detail = entity["collection"]["details"][0]
    assert (entity["state"], entity["collection"]["state"]) == ("DONE", "USER_PAID")
    assert (detail["seq"], detail["amount"], detail["paid_type"]) == (1, 500, "NEWTON")
    assert len(detail["transaction_id"]) <= 32
    assert len(notifications(sandbox, "PAYSCORE.USER_CONFIRM")) == 1
    paid = notifications(sandbox, "PAYSCORE.USER_PAID")
    assert len(paid) == 1 and paid[0].resource["state"] == "DONE"
    assert paid[0].url == "https://merchant.example/notify"


def test_expiry_after_thirty_idle_days(client, sandbox):
    create(client, "X1")
    create(client, "X2")
    confirm(client, "X2", CANNOT_PAY)
    sandbox.advance(29 * DAY_US)
    assert query(client, "X1").json["state"] == "CREATED"
    sandbox.advance(DAY_US + 1_000_000)
    assert query(client, "X1").json["state"] == "EXPIRED"
    assert query(client, "X2").json["state"] == "DOING"  # confirmed orders never expire


# ---------------------------------------------------------------- isolation


def test_another_merchant_cannot_see_or_touch_an_order(app, client, sandbox):
    create(client, "ISO1")
    confirm(client, "ISO1", CANNOT_PAY)
    other = SignedClient(app, add_merchant(app))
    for ids in (other.ids(), client.ids()):  # its own ids, or the victim's
        r = other.get(ORDER, query={**ids, "out_order_no": "ISO1"})
        assert r.status_code == 404 and r.json["code"] == "ORDER_NOT_EXIST"
        for op in ("cancel", "complete", "modify", "pay", "sync"):
            body = {**operation_body(other, op), **ids}
            r = other.post(f"{ORDER}/ISO1/{op}", body)
            assert r.status_code == 404 and r.json["code"] == "ORDER_NOT_EXIST", (op, r.json)
    row = order_row(sandbox, client.merchant.mchid, "ISO1")
    assert row.state == "DOING" and row.version == 2
    # the same out_order_no is free for the other merchant: numbers are per merchant
    assert create(other, "ISO1").status_code == 200
