"""Refunds of a collection's transaction (reference §2.11, §2.12, §6.4)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from merchant_kit.protocol import payscore_time
from sandbox import db
from sandbox.backend.refunds import refund_settle
from sandbox.testing import SignedClient, add_merchant
from sandbox.world.jobs_registry import JOB_HANDLERS

REFUNDS = "/v3/refund/domestic/refunds"
ORDER = "/v3/payscore/serviceorder"
MINUTE_US = 60 * 1_000_000


def paid_order(client: SignedClient, sandbox, no: str = "PAID1", amount: int = 1000) -> str:
    """A DONE order (collected by WeChat); returns its transaction_id."""
    client.post(ORDER, client.create_body(no))
    client.post(f"/sandbox/merchants/{client.merchant.mchid}/orders/{no}/confirm",
                {"openid": "o_magic_always_confirms"}, sign=False)
    r = client.post(f"{ORDER}/{no}/complete", {
        **client.ids(), "post_payments": [{"name": "租金", "amount": amount}],
        "total_amount": amount, "time_range": {"end_time": payscore_time(sandbox.clock.now())}})
    assert r.status_code == 200, r.json
    sandbox.advance(1_000_000)
    entity = client.get(ORDER, query={**client.ids(), "out_order_no": no}).json
    assert entity["state"] == "DONE"
    return entity["collection"]["details"][0]["transaction_id"]


def refund_body(transaction_id: str, out_refund_no: str, refund: int, total: int = 1000,
                **extra) -> dict:
    return {"transaction_id": transaction_id, "out_refund_no": out_refund_no,
            "amount": {"refund": refund, "total": total, "currency": "CNY"}, **extra}


def refund_notices(sandbox) -> list:
    with sandbox.engine.connect() as conn:
        return list(conn.execute(select(db.notifications).where(
            db.notifications.c.original_type == "refund").order_by(db.notifications.c.created_us)))


@pytest.fixture
def merchant(app):
    return add_merchant(app, notify_url="https://merchant.example/notify")


def test_refund_is_processing_then_succeeds_a_minute_later(client, sandbox):
    txn = paid_order(client, sandbox)
    r = client.post(REFUNDS, refund_body(txn, "RF1", 300, reason="押金退还"))
    assert r.status_code == 200, r.json
    assert (r.json["status"], r.json["transaction_id"], r.json["out_refund_no"]) == \
        ("PROCESSING", txn, "RF1")
    assert r.json["amount"]["refund"] == 300 and r.json["amount"]["total"] == 1000
    assert r.json["amount"]["currency"] == "CNY" and "success_time" not in r.json
    assert r.json["create_time"].endswith("+08:00")
    assert refund_notices(sandbox) == []
    sandbox.advance(59 * 1_000_000)
    assert client.get(f"{REFUNDS}/RF1").json["status"] == "PROCESSING"
    sandbox.advance(1_000_000)
    done = client.get(f"{REFUNDS}/RF1")
    assert done.status_code == 200 and done.json["status"] == "SUCCESS"
    assert done.json["refund_id"] == r.json["refund_id"] and "success_time" in done.json
    notice, = refund_notices(sandbox)
    assert notice.event_type == "REFUND.SUCCESS"
    assert notice.url == "https://merchant.example/notify"  # the merchant's refund URL
    assert notice.resource["refund_status"] == "SUCCESS"
    assert notice.resource["amount"] == {"total": 1000, "refund": 300, "payer_total": 1000,
                                         "payer_refund": 300}
    assert set(notice.resource) >= {"mchid", "out_trade_no", "transaction_id", "out_refund_no",
                                    "refund_id", "success_time", "user_received_account"}
    # the service order itself stays DONE (§3.2)
    assert client.get(ORDER, query={**client.ids(), "out_order_no": "PAID1"}).json[
        "state"] == "DONE"


def test_partial_refunds_never_exceed_what_was_paid(client, sandbox):
    txn = paid_order(client, sandbox)
    assert client.post(REFUNDS, refund_body(txn, "P1", 600)).status_code == 200
    sandbox.advance(MINUTE_US)
    too_much = client.post(REFUNDS, refund_body(txn, "P2", 401))
    assert too_much.status_code == 400
    assert too_much.json["message"] == "申请退款金额超过订单可退金额"
    assert client.post(REFUNDS, refund_body(txn, "P2", 400)).status_code == 200
    sandbox.advance(MINUTE_US)
    nothing_left = client.post(REFUNDS, refund_body(txn, "P3", 1))
    assert nothing_left.status_code == 400
    with sandbox.engine.connect() as conn:
        refunded = conn.execute(select(db.transactions.c.refunded).where(
            db.transactions.c.transaction_id == txn)).scalar_one()
        total = conn.execute(select(db.refunds.c.amount)).scalars().all()
    assert refunded == 1000 and sum(total) == 1000


def test_partial_refunds_must_be_a_minute_apart(client, sandbox):
    txn = paid_order(client, sandbox)
    client.post(REFUNDS, refund_body(txn, "G1", 100))
    sandbox.advance(30 * 1_000_000)
    soon = client.post(REFUNDS, refund_body(txn, "G2", 100))
    assert soon.status_code == 429 and soon.json["code"] == "FREQUENCY_LIMITED"
    sandbox.advance(30 * 1_000_000)
    assert client.post(REFUNDS, refund_body(txn, "G2", 100)).status_code == 200


def test_same_out_refund_no_is_the_same_refund(client, sandbox):
    txn = paid_order(client, sandbox)
    body = refund_body(txn, "ID1", 200)
    first = client.post(REFUNDS, body)
    again = client.post(REFUNDS, body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json
    different = client.post(REFUNDS, refund_body(txn, "ID1", 250))
    assert different.status_code == 400 and different.json["code"] == "INVALID_REQUEST"
    with sandbox.engine.connect() as conn:
        assert len(conn.execute(select(db.refunds)).all()) == 1
    sandbox.advance(MINUTE_US)
    assert client.post(REFUNDS, body).json["status"] == "SUCCESS"  # same refund, later


@pytest.mark.parametrize("mutate, status, code", [
    (lambda b: b["amount"].update(total=999), 400, "INVALID_REQUEST"),
    (lambda b: b["amount"].update(currency="USD"), 400, "PARAM_ERROR"),
    (lambda b: b["amount"].update(refund=0), 400, "PARAM_ERROR"),
    (lambda b: b.update(transaction_id="4200000000000000000000000000"), 404,
     "RESOURCE_NOT_EXISTS"),
    (lambda b: b.pop("transaction_id"), 400, "PARAM_ERROR"),
    (lambda b: b.update(out_refund_no="bad refund#"), 400, "PARAM_ERROR"),
])
def test_refund_request_rules(client, sandbox, mutate, status, code):
    body = refund_body(paid_order(client, sandbox), "RR1", 100)
    mutate(body)
    r = client.post(REFUNDS, body)
    assert (r.status_code, r.json["code"]) == (status, code), r.json


def test_out_trade_no_is_the_transaction_never_the_service_order(client, sandbox):
    txn = paid_order(client, sandbox)
    by_order_no = {"out_trade_no": "PAID1", "out_refund_no": "OT1",
                   "amount": {"refund": 100, "total": 1000, "currency": "CNY"}}
    r = client.post(REFUNDS, by_order_no)
    assert r.status_code == 404
    assert (r.json["code"], r.json["message"]) == ("RESOURCE_NOT_EXISTS", "订单不存在")
    ok = client.post(REFUNDS, {**by_order_no, "out_trade_no": txn})
    assert ok.status_code == 200 and ok.json["out_trade_no"] == txn


@pytest.mark.parametrize("outcome", ["SUCCESS", "ABNORMAL", "CLOSED"])
def test_control_api_forces_the_outcome(client, sandbox, outcome):
    txn = paid_order(client, sandbox)
    client.post(REFUNDS, refund_body(txn, "F1", 1000, notify_url="https://merchant.example/rf"))
    settle = f"/sandbox/merchants/{client.merchant.mchid}/refunds/F1/settle"
    r = client.post(settle, {"status": outcome}, sign=False)
    assert r.status_code == 200 and r.json["status"] == outcome
    notice, = refund_notices(sandbox)
    assert (notice.event_type, notice.url) == (f"REFUND.{outcome}",
                                               "https://merchant.example/rf")
    assert ("success_time" in notice.resource) is (outcome == "SUCCESS")
    sandbox.advance(2 * MINUTE_US)  # the timed settlement no longer applies
    assert client.get(f"{REFUNDS}/F1").json["status"] == outcome
    assert len(refund_notices(sandbox)) == 1
    again = client.post(REFUNDS, refund_body(txn, "F2", 1000))
    # a CLOSED refund gave the money back to refund; the others hold it
    assert (again.status_code == 200) is (outcome == "CLOSED"), again.json


def test_abnormal_can_still_end_but_final_states_cannot_move(client, sandbox):
    txn = paid_order(client, sandbox)
    client.post(REFUNDS, refund_body(txn, "AB1", 100))
    settle = f"/sandbox/merchants/{client.merchant.mchid}/refunds/AB1/settle"
    assert client.post(settle, {"status": "ABNORMAL"}, sign=False).status_code == 200
    assert client.post(settle, {"status": "SUCCESS"}, sign=False).json["status"] == "SUCCESS"
    assert client.post(settle, {"status": "SUCCESS"}, sign=False).status_code == 200
    moved = client.post(settle, {"status": "CLOSED"}, sign=False)
    assert moved.status_code == 400
    assert [n.event_type for n in refund_notices(sandbox)] == ["REFUND.ABNORMAL",
                                                               "REFUND.SUCCESS"]
    bad = client.post(settle, {"status": "DONE"}, sign=False)
    assert bad.status_code == 400 and bad.json["code"] == "PARAM_ERROR"


def test_settlement_job_is_registered_and_idempotent(client, sandbox):
    assert JOB_HANDLERS["refund_settle"] is refund_settle
    txn = paid_order(client, sandbox)
    client.post(REFUNDS, refund_body(txn, "J1", 100))
    with sandbox.engine.connect() as conn:
        job = conn.execute(select(db.jobs).where(db.jobs.c.kind == "refund_settle")).one()
    assert job.due_us - sandbox.clock.now_us() <= MINUTE_US
    with db.write_tx(sandbox.engine) as conn:
        refund_settle(conn, job, sandbox.clock.now_us())
        refund_settle(conn, job, sandbox.clock.now_us())  # a second run changes nothing
    assert client.get(f"{REFUNDS}/J1").json["status"] == "SUCCESS"
    assert len(refund_notices(sandbox)) == 1


def test_unknown_refund_and_another_merchants_refund(app, client, sandbox):
    missing = client.get(f"{REFUNDS}/NOPE")
    assert missing.status_code == 404
    assert (missing.json["code"], missing.json["message"]) == ("RESOURCE_NOT_EXISTS",
                                                               "退款单不存在")
    txn = paid_order(client, sandbox)
    client.post(REFUNDS, refund_body(txn, "ISO1", 100))
    other = SignedClient(app, add_merchant(app))
    assert other.get(f"{REFUNDS}/ISO1").status_code == 404
    steal = other.post(REFUNDS, refund_body(txn, "ISO2", 100))
    assert steal.status_code == 404 and steal.json["code"] == "RESOURCE_NOT_EXISTS"
    forced = other.post(f"/sandbox/merchants/{other.merchant.mchid}/refunds/ISO1/settle",
                        {"status": "CLOSED"}, sign=False)
    assert forced.status_code == 404
    assert client.get(f"{REFUNDS}/ISO1").json["status"] == "PROCESSING"


def test_refund_of_an_unpaid_order_is_impossible(client):
    client.post(ORDER, client.create_body("UN1"))
    r = client.post(REFUNDS, {"out_trade_no": "UN1", "out_refund_no": "UN-R",
                              "amount": {"refund": 1, "total": 1, "currency": "CNY"}})
    assert r.status_code == 404 and r.json["message"] == "订单不存在"
