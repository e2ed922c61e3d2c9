"""PayScoreClient against a scripted transport: how each operation resolves an unknown outcome
(the table in merchant_kit.client) without ever re-issuing under new identifiers."""

from __future__ import annotations

import json

import pytest

from merchant_kit import (
    ApiError,
    CompleteServiceOrderRequest,
    CreateRefundRequest,
    Payment,
    RefundAmount,
    TransportError,
)

from .scripted import (
    ORDER_PATH,
    REJECTIONS,
    assert_signed_as_sent,
    create_request,
    order,
    read_timeout,
    reset_after_send,
)

# ---------------------------------------------------------------------- unknown outcomes


def test_create_after_timeout_finds_the_order_without_a_second_create(env):
    env.wire.on("POST", ORDER_PATH, read_timeout())
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(package="pkg")))
    got = env.client.create_service_order(create_request())
    assert got.out_order_no == "ORD-1" and got.package == "pkg"
    assert len(env.wire.bodies("POST")) == 1
    assert "out_order_no=ORD-1" in env.wire.sent[1].path_url


def test_create_after_timeout_replays_identically_when_not_created(env):
    env.wire.on("POST", ORDER_PATH, reset_after_send(), lambda _r: env.ok(order()))
    env.wire.on("GET", ORDER_PATH, env.error(404, "ORDER_NOT_EXIST", "订单不存在"))
    assert env.client.create_service_order(create_request()).state == "CREATED"
    first, second = [r for r in env.wire.sent if r.method == "POST"]
    assert first.body == second.body  # same out_order_no, same bytes
    assert first.headers["Authorization"] != second.headers["Authorization"]  # fresh nonce
    assert_signed_as_sent(env, second)


def test_create_after_untrusted_reply_is_resolved_by_query(env):
    env.wire.on("POST", ORDER_PATH, REJECTIONS["probe"](env))
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order()))
    assert env.client.create_service_order(create_request()).out_order_no == "ORD-1"
    assert len(env.wire.bodies("POST")) == 1


def test_create_stays_unknown_when_the_query_fails(env):
    env.wire.on("POST", ORDER_PATH, read_timeout())
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "系统繁忙"))
    with pytest.raises(TransportError) as exc:
        env.client.create_service_order(create_request())
    assert exc.value.outcome_unknown
    assert isinstance(exc.value.__cause__, ApiError) and exc.value.__cause__.status == 500
    assert len(env.wire.bodies("POST")) == 1


def test_create_found_but_different_is_a_conflict(env):
    env.wire.on("POST", ORDER_PATH, read_timeout())
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(service_introduction="别的服务")))
    with pytest.raises(ApiError) as exc:
        env.client.create_service_order(create_request())
    assert exc.value.code == "INVALID_REQUEST" and "service_introduction" in exc.value.message
    assert not exc.value.outcome_unknown


def test_complete_after_timeout_recognises_success(env):
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/complete", read_timeout())
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(
        state="DOING", state_description="MCH_COMPLETE", total_amount=300)))
    req = CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=300)],
                                      total_amount=300)
    assert env.client.complete_service_order("ORD-1", req).state_description == "MCH_COMPLETE"
    assert len(env.wire.bodies("POST")) == 1


def test_cancel_500_then_order_canceled_resolves_to_success(env):
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/cancel", env.error(500, "SYSTEM_ERROR", "x"),
                env.error(400, "ORDER_CANCELED", "单据已取消"))
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(state="REVOKED")))
    ack = env.client.cancel_service_order("ORD-1", "用户取消")
    assert ack.out_order_no == "ORD-1" and ack.order_id == "1000000000201912"
    bodies = env.wire.bodies("POST")
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_refund_retries_with_the_same_out_refund_no_then_queries(env):
    refund = {"refund_id": "50000", "out_refund_no": "R1", "status": "PROCESSING",
              "amount": {"refund": 100, "total": 300, "currency": "CNY"}}
    env.wire.on("POST", "/v3/refund/domestic/refunds", read_timeout())
    env.wire.on("GET", "/v3/refund/domestic/refunds/R1", lambda _r: env.ok(refund))
    req = CreateRefundRequest(transaction_id="4200000", out_refund_no="R1",
                              amount=RefundAmount(refund=100, total=300))
    got = env.client.create_refund(req)
    assert got.status == "PROCESSING" and got.amount.refund == 100
    bodies = env.wire.bodies("POST")
    assert len(bodies) == 3 and len(set(bodies)) == 1
    assert json.loads(bodies[0])["out_refund_no"] == "R1"
