"""PayScoreClient against a scripted transport: error replies, retries, the retry budget, the
total deadline and the circuit breaker. No network, no sleeping."""

from __future__ import annotations

import json
import random
import threading

import pytest

from merchant_kit import (
    ApiError,
    CircuitOpen,
    DeadlineExceeded,
    RetryBudget,
    RetryBudgetExhausted,
    RetryPolicy,
    TransportError,
    UntrustedResponse,
    make_breaker,
)

from .scripted import (
    APPID,
    MCHID,
    ORDER_PATH,
    SERVICE,
    order,
    read_timeout,
    refused,
    reset_after_send,
)

# ---------------------------------------------------------------------- error replies


def test_error_replies_are_parsed_never_trusted(env):
    env.wire.on("GET", ORDER_PATH, env.error(404, "ORDER_NOT_EXIST", "订单不存在",
                                             {"field": "out_order_no"}))
    with pytest.raises(ApiError) as exc:
        env.client.query_service_order("NOPE")
    err = exc.value
    assert (err.status, err.code, err.message, err.detail) == (
        404, "ORDER_NOT_EXIST", "订单不存在", {"field": "out_order_no"})
    assert err.request_id == "08F5B8C2B5061-404" and not err.retryable
    assert not err.outcome_unknown and len(env.wire.sent) == 1
    assert "Request-ID 08F5B8C2B5061-404" in str(err)


@pytest.mark.parametrize("status,body", [(502, b"<html><h1>502 Bad Gateway</h1></html>"),
                                         (400, b"\xff\xfe garbage"), (503, b"")])
def test_non_json_error_is_a_gateway_error(env, status, body):
    env.wire.on("GET", ORDER_PATH, (status, {"Request-ID": "GW-1"}, body))
    with pytest.raises(ApiError) as exc:
        env.client.query_service_order("ORD-1")
    assert exc.value.code == "GATEWAY_ERROR" and exc.value.status == status
    assert exc.value.retryable == (status >= 500) and exc.value.request_id == "GW-1"
    assert len(env.wire.sent) == (3 if status >= 500 else 1)


# ---------------------------------------------------------------------- retry policy


def err(status, message="x"):
    return ApiError(message, status=status, code="C")


@pytest.mark.parametrize("exc,replay_safe,expected", [
    (err(500), False, True), (err(502), False, True), (err(429), False, True),
    (err(400), True, False), (err(401), True, False), (err(403), True, False),
    (err(404), True, False),
    (TransportError("refused", phase="connect"), False, True),
    (TransportError("timeout", phase="read"), False, False),
    (TransportError("timeout", phase="read"), True, True),
    (UntrustedResponse(reason="probe"), True, False),
    (CircuitOpen(), True, False),
])
def test_which_errors_are_retried(exc, replay_safe, expected):
    assert RetryPolicy().should_retry(exc, replay_safe) is expected


def test_debit_in_progress_is_retryable_later_but_not_in_call():
    from merchant_kit.errors import error_from_reply
    exc = error_from_reply(400, {}, json.dumps(
        {"code": "INVALID_REQUEST", "message": "单据正在扣款中，请稍后再试"}).encode())
    assert exc.retryable and exc.retry_after == 180 and not exc.outcome_unknown
    assert RetryPolicy().should_retry(exc, True) is False


def test_full_jitter_bounds_and_longer_429_backoff():
    policy = RetryPolicy(rng=random.Random(1))
    for failures in range(1, 8):
        ceiling = min(5.0, 0.2 * 2 ** (failures - 1))
        waits = [policy.backoff(failures, err(500)) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8 and min(waits) < ceiling * 0.2  # really jittered
        slow = [policy.backoff(failures, err(429)) for _ in range(300)]
        ceiling = min(5.0, 1.0 * 2 ** (failures - 1))
        assert all(ceiling / 2 <= w <= ceiling for w in slow)
    hinted = ApiError("slow down", status=429, retry_after=4)
    assert policy.backoff(1, hinted) >= 4


def test_retry_budget_window_and_floor(clock):
    budget = RetryBudget(ratio=0.2, min_per_second=0, window=10, clock=clock)
    for _ in range(10):
        budget.record_call()
    assert [budget.try_acquire() for _ in range(3)] == [True, True, False]
    clock.now += 10.5  # everything slid out of the window
    for _ in range(5):
        budget.record_call()
    assert budget.try_acquire() is True and budget.try_acquire() is False
    floor = RetryBudget(min_per_second=3, window=10, clock=clock)
    assert sum(floor.try_acquire() for _ in range(40)) == 30


def test_5xx_retried_with_backoff_then_succeeds(env):
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "系统繁忙"),
                env.error(503, "SERVICE_UNAVAILABLE", "x"), lambda _r: env.ok(order()))
    assert env.client.query_service_order("ORD-1").state == "CREATED"
    assert len(env.wire.sent) == 3 and len(env.clock.sleeps) == 2
    assert env.wire.sent[0].headers["Authorization"] != env.wire.sent[1].headers["Authorization"]


def test_429_waits_longer(env):
    env.wire.on("GET", ORDER_PATH, env.error(429, "FREQUENCY_LIMITED", "频率超限"),
                lambda _r: env.ok(order()))
    env.client.query_service_order("ORD-1")
    assert env.clock.sleeps[0] >= 0.5


def test_read_timeout_retried_only_when_replay_safe(env):
    env.wire.on("GET", ORDER_PATH, read_timeout(), lambda _r: env.ok(order()))
    env.client.query_service_order("ORD-1")
    assert len(env.wire.sent) == 2
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/pay", reset_after_send())
    with pytest.raises(TransportError) as exc:
        env.client.pay_service_order("ORD-1")
    assert exc.value.outcome_unknown and exc.value.phase == "read"
    assert len(env.wire.bodies("POST")) == 1


def test_connect_failure_is_retried_even_for_unsafe_calls(env):
    ack = {"appid": APPID, "mchid": MCHID, "out_order_no": "ORD-1", "service_id": SERVICE}
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/pay", refused(), lambda _r: env.ok(ack))
    assert env.client.pay_service_order("ORD-1").out_order_no == "ORD-1"
    assert len(env.wire.sent) == 2


def test_budget_exhaustion_stops_retries(clock, make_env):
    policy = RetryPolicy(sleep=clock.sleep, clock=clock,
                         budget=RetryBudget(min_per_second=0, clock=clock))
    env = make_env(policy=policy)
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "系统繁忙"))
    with pytest.raises(RetryBudgetExhausted) as exc:
        env.client.query_service_order("ORD-1")
    assert exc.value.last_error.status == 500 and exc.value.request_id
    assert len(env.wire.sent) == 1 and clock.sleeps == []


def test_total_deadline_bounds_attempts_and_timeouts(make_env):
    env = make_env(total_deadline=4.0)

    def slow(_request):
        env.clock.now += 4.0  # the provider answers only when the budget is spent
        return env.error(500, "SYSTEM_ERROR", "系统繁忙")

    env.wire.on("GET", ORDER_PATH, slow)
    with pytest.raises(DeadlineExceeded) as exc:
        env.client.query_service_order("ORD-1")
    assert exc.value.last_error.status == 500 and len(env.wire.sent) == 1
    assert env.wire.timeouts[0] == (3.05, 4.0)  # read timeout capped by the deadline


# ---------------------------------------------------------------------- circuit breaker


def test_breaker_opens_on_provider_failures_only(clock, make_env):
    breaker = make_breaker(fail_max=5, reset_timeout=30, clock=clock)
    env = make_env(breaker=breaker,
                   policy=RetryPolicy(max_attempts=1, sleep=clock.sleep, clock=clock))
    env.wire.on("GET", ORDER_PATH, env.error(404, "ORDER_NOT_EXIST", "订单不存在"))
    for _ in range(8):
        with pytest.raises(ApiError):
            env.client.query_service_order("ORD-1")
    assert breaker.state == "closed"
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "x"), read_timeout(),
                (200, {}, b"{}"), env.error(429, "FREQUENCY_LIMITED", "x"),
                env.error(502, "GATEWAY_ERROR", "x"))
    for _ in range(5):
        with pytest.raises((ApiError, TransportError, UntrustedResponse)):
            env.client.query_service_order("ORD-1")
    assert breaker.state == "open"
    assert env.client.health()["breaker"]["state"] == "open"
    sent = len(env.wire.sent)
    with pytest.raises(CircuitOpen) as exc:
        env.client.query_service_order("ORD-1")
    assert not exc.value.outcome_unknown and len(env.wire.sent) == sent  # no network


def test_half_open_probe_closes_or_reopens(clock, make_env):
    breaker = make_breaker(fail_max=2, reset_timeout=30, clock=clock)
    env = make_env(breaker=breaker,
                   policy=RetryPolicy(max_attempts=1, sleep=clock.sleep, clock=clock))
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "x"))
    for _ in range(2):
        with pytest.raises(ApiError):
            env.client.query_service_order("ORD-1")
    assert breaker.state == "open"
    clock.now += 31
    with pytest.raises(ApiError):  # the probe fails: open again, for another 30 s
        env.client.query_service_order("ORD-1")
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        env.client.query_service_order("ORD-1")
    clock.now += 31
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order()))
    assert env.client.query_service_order("ORD-1").state == "CREATED"
    assert breaker.state == "closed" and breaker.snapshot()["fail_counter"] == 0


def test_breaker_does_not_serialise_concurrent_calls(env):
    inside = threading.Barrier(4, timeout=10)  # trips only if 4 calls are on the wire at once

    def together(_request):
        inside.wait()
        return env.ok(order())

    env.wire.on("GET", ORDER_PATH, together)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        env.client.query_service_order("ORD-1").state)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["CREATED"] * 4
    assert env.client.health()["breaker"]["state"] == "closed"
