"""Service-order requests and their rules (reference §2.2-§2.5): create (replay, risk fund,
no-confirm, time ranges in China time, field rules), complete's end time and total formula,
and query."""

from __future__ import annotations

import datetime as dt

import pytest
from serviceorders_support import (
    CANNOT_PAY,
    ORDER,
    PAYMENTS,
    PAYS,
    complete,
    complete_body,
    confirm,
    create,
    now_text,
    order_row,
    query,
)
from sqlalchemy import select

from merchant_kit.protocol import CST, payscore_time
from sandbox import db
from sandbox.clock import from_datetime, to_datetime
from sandbox.testing import SignedClient, add_merchant

# ---------------------------------------------------------------- create


def test_create_identical_replay_is_the_same_order(client, sandbox):
    body = client.create_body("I1", post_payments=PAYMENTS)
    first = client.post(ORDER, body)
    again = client.post(ORDER, body)
    assert first.status_code == again.status_code == 200
    assert again.json == first.json  # same order_id and package
    with sandbox.engine.connect() as conn:
        assert len(list(conn.execute(select(db.orders)))) == 1


def test_create_replay_with_other_parameters_is_refused(client):
    assert create(client, "I2").status_code == 200
    r = create(client, "I2", service_introduction="另一个服务")
    assert r.status_code == 400
    assert r.json == {"code": "INVALID_REQUEST", "message": "订单重入参数校验失败"}
    assert r.headers["Request-ID"].endswith("-271316598")


def test_risk_fund_ceiling(app, sandbox):
    merchant = add_merchant(app, risk_fund_ceiling=5000)
    client = SignedClient(app, merchant)
    over = create(client, "K1", risk_fund={"name": "ESTIMATE_ORDER_COST", "amount": 5001})
    assert over.status_code == 400
    assert over.json["message"] == "创建订单的订单风险金额超过此服务的服务风险金额"
    assert create(client, "K2", risk_fund={"name": "ESTIMATE_ORDER_COST",
                                           "amount": 5000}).status_code == 200
    confirm(client, "K2", CANNOT_PAY)
    r = complete(client, "K2", 5001)
    assert r.status_code == 400 and r.json["message"] == "总金额超过此服务的服务风险金额"
    assert r.headers["Request-ID"].endswith("-271316656")
    # 先免 (deposit) mode: the order's own risk fund caps the total
    create(client, "K3", risk_fund={"name": "DEPOSIT", "amount": 800})
    confirm(client, "K3", CANNOT_PAY)
    assert complete(client, "K3", 801).json["message"] == "总金额超过订单风险金额"
    assert complete(client, "K3", 800).status_code == 200


def test_no_confirm_create_needs_an_authorised_user(client):
    body = client.create_body("N1", need_user_confirm=False, openid=PAYS)
    refused = client.post(ORDER, body)
    assert refused.status_code == 403 and refused.json["code"] == "NO_AUTH"
    client.post(f"/sandbox/merchants/{client.merchant.mchid}/permissions/authorize",
                {"openid": PAYS}, sign=False)
    created = client.post(ORDER, body)
    assert created.status_code == 200
    assert (created.json["state"], created.json["state_description"]) == \
        ("DOING", "USER_CONFIRM")


@pytest.fixture
def frozen_evening(sandbox):
    """17:00 UTC on 1 Jan 2024 is already 2 Jan, 01:00 in China (UTC+8)."""
    at = dt.datetime(2024, 1, 1, 17, 0, 0, tzinfo=dt.UTC)
    sandbox.clock.freeze(from_datetime(at))
    return at.astimezone(CST)


@pytest.mark.parametrize("time_range, ok", [
    ({"start_time": "20240102010000"}, False),  # exactly now: must be after the call
    ({"start_time": "20240102010001"}, True),
    ({"start_time": "20240101"}, False),  # today in UTC, yesterday in China
    ({"start_time": "20240102"}, True),
    ({"start_time": "OnAccept", "end_time": "20240102010100"}, False),  # not > now + 1 min
    ({"start_time": "OnAccept", "end_time": "20240102010101"}, True),
    ({"start_time": "20240102020000", "end_time": "20240102015959"}, False),  # before start
    ({"start_time": "20240103", "end_time": "20240102"}, False),
    ({"start_time": "20240102", "end_time": "20240102"}, True),
    ({"start_time": "20240231"}, False),  # not a real date
])
def test_create_time_range_rules_in_china_time(client, frozen_evening, time_range, ok):
    r = create(client, "TR1", time_range=time_range)
    assert (r.status_code == 200) is ok, r.json
    if not ok:
        assert r.json["code"] == "PARAM_ERROR"


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(service_introduction="充电宝😀"),  # 4-byte UTF-8
    lambda b: b.update(out_order_no="A1\n"),  # Python's `$` would let this pass
    lambda b: b.update(service_introduction="x" * 21),
    lambda b: b["risk_fund"].update(name="CASH"),
    lambda b: b["risk_fund"].update(amount="100"),
    lambda b: b.update(unknown_field=1),
    lambda b: b.update(post_payments=[{"name": "a", "amount": 1}, {"name": "a", "amount": 2}]),
    lambda b: b.update(need_user_confirm=False),  # needs an openid
    lambda b: b.update(notify_url="https://merchant.example/notify?x=1"),
])
def test_create_field_rules(client, mutate):
    body = client.create_body("V1")
    mutate(body)
    r = client.post(ORDER, body)
    assert r.status_code == 400 and r.json["code"] == "PARAM_ERROR", r.json


# ---------------------------------------------------------------- complete


def test_complete_end_time_rules(client, sandbox):
    create(client, "E1", time_range={"start_time": "OnAccept"})
    confirm(client, "E1", CANNOT_PAY)
    later = payscore_time(to_datetime(sandbox.clock.now_us() + 120_000_000))
    r = complete(client, "E1", time_range={"end_time": later})
    assert r.status_code == 400 and r.json["message"] == "实际结束时间不能晚于使用完结接口的时间"
    before_confirm = payscore_time(to_datetime(sandbox.clock.now_us() - 3_600_000_000))
    r = complete(client, "E1", time_range={"end_time": before_confirm})
    assert r.status_code == 400 and r.json["message"] == "真实结束时间小于预计开始时间"
    missing = complete_body(client)
    del missing["time_range"]
    r = client.post(f"{ORDER}/E1/complete", missing)
    assert r.status_code == 400 and r.json["detail"]["field"] == "/time_range/end_time"
    assert complete(client, "E1").status_code == 200


def test_total_formula(client):
    create(client, "F1")
    confirm(client, "F1", CANNOT_PAY)
    body = {**client.ids(), "post_payments": [{"name": "租金", "amount": 1000},
                                              {"name": "赔偿", "amount": 200}],
            "post_discounts": [{"name": "新人券", "amount": 300}],
            "time_range": {"end_time": now_text(client)}}
    wrong = client.post(f"{ORDER}/F1/complete", {**body, "total_amount": 1200})
    assert wrong.status_code == 400
    assert (wrong.json["code"], wrong.json["message"]) == ("PARAM_ERROR", "最终总金额计算非法")
    right = client.post(f"{ORDER}/F1/complete", {**body, "total_amount": 900})
    assert right.status_code == 200 and right.json["total_amount"] == 900
    assert right.json["post_discounts"] == body["post_discounts"]


# ---------------------------------------------------------------- query and the path


def test_query_by_query_id(client, sandbox):
    create(client, "Q1")
    query_id = order_row(sandbox, client.merchant.mchid, "Q1").query_id
    r = client.get(ORDER, query={**client.ids(), "query_id": query_id})
    assert r.status_code == 200 and r.json["out_order_no"] == "Q1"
    missing = client.get(ORDER, query={**client.ids(), "query_id": "nope"})
    assert missing.status_code == 404 and missing.json["code"] == "ORDER_NOT_EXIST"
    assert missing.headers["Request-ID"].endswith("-271317510")


@pytest.mark.parametrize("keys", [{}, {"out_order_no": "Q2", "query_id": "x"}])
def test_query_needs_exactly_one_key(client, keys):
    create(client, "Q2")
    r = client.get(ORDER, query={**client.ids(), **keys})
    assert r.status_code == 400 and r.json["code"] == "PARAM_ERROR"


def test_path_parameter_in_body_is_refused(client):
    create(client, "B1")
    r = client.post(f"{ORDER}/B1/cancel", {**client.ids(), "reason": "x", "out_order_no": "B1"})
    assert r.status_code == 400 and r.json["code"] == "PARAM_ERROR"
    assert "/uri_template/out_order_no" in r.json["message"]
    assert query(client, "B1").json["state"] == "CREATED"
