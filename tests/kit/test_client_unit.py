"""PayScoreClient against a scripted transport: signing bytes, verification, errors, retries,
retry budget, circuit breaker and unknown-outcome resolution. No network, no sleeping."""

from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import random

import pytest
import requests
import urllib3
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from merchant_kit import (
    ApiError,
    CircuitOpen,
    CompleteServiceOrderRequest,
    CreateRefundRequest,
    CreateServiceOrderRequest,
    DeadlineExceeded,
    MerchantConfig,
    Payment,
    PayScoreClient,
    RefundAmount,
    RetryBudget,
    RetryBudgetExhausted,
    RetryPolicy,
    RiskFund,
    TimeRange,
    TransportError,
    UntrustedResponse,
    encode_body,
    make_breaker,
    protocol,
)
from merchant_kit.keys import PlatformKeys

NOW = 1_700_000_000
APIV3 = b"0123456789abcdef0123456789abcdef"
MCHID, APPID, SERVICE = "1230000109", "wxd678efh567hg6787", "2002000000000558128851361561536"
ORDER_PATH = "/v3/payscore/serviceorder"


class Clock:
    """Wall clock and monotonic clock in one; `sleep` only advances it."""

    def __init__(self):
        self.now, self.sleeps = float(NOW), []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def pki():
    merchant = protocol.generate_private_key()
    platform = protocol.generate_private_key()
    start = dt.datetime.fromtimestamp(NOW, tz=dt.UTC) - dt.timedelta(days=1)
    cert = protocol.make_certificate(platform, "platform", 0x5DEA10EF, start)
    return {"merchant": merchant, "platform": platform, "cert": cert,
            "serial": protocol.certificate_serial(cert)}


class Wire(BaseAdapter):
    """A requests transport: records every PreparedRequest, answers from per-route scripts."""

    def __init__(self):
        super().__init__()
        self.routes: dict[tuple[str, str], list] = {}
        self.sent: list[requests.PreparedRequest] = []
        self.timeouts: list = []

    def on(self, method: str, path: str, *outcomes) -> None:
        self.routes[(method, path)] = list(outcomes)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        self.sent.append(request)
        self.timeouts.append(timeout)
        script = self.routes[(request.method, request.path_url.split("?")[0])]
        outcome = script.pop(0) if len(script) > 1 else script[0]
        if callable(outcome):
            outcome = outcome(request)
        if isinstance(outcome, BaseException):
            raise outcome
        status, headers, body = outcome
        resp = requests.Response()
        resp.status_code, resp._content, resp.url, resp.request = status, body, request.url, request
        resp.headers = CaseInsensitiveDict(headers)
        return resp

    def close(self):
        pass

    def bodies(self, method: str) -> list[bytes]:
        return [r.body for r in self.sent if r.method == method]


class Env:
    def __init__(self, pki, clock=None, total_deadline=30.0, breaker=None, policy=None,
                 keys=None, **cfg):
        self.pki, self.clock, self.wire = pki, clock or Clock(), Wire()
        self.config = MerchantConfig(
            base_url="https://api.test", mchid=MCHID, appid=APPID, service_id=SERVICE,
            merchant_serial_no="1DDE55AD98ED71D6", private_key=pki["merchant"], apiv3_key=APIV3,
            platform_certificate_pem=protocol.certificate_pem(pki["cert"]),
            total_deadline=total_deadline, **cfg)
        session = requests.Session()
        session.mount("https://", self.wire)
        self.policy = policy or RetryPolicy(sleep=self.clock.sleep, clock=self.clock,
                                            rng=random.Random(7))
        self.client = PayScoreClient(
            self.config, keys=keys, session=session, retry_policy=self.policy,
            breaker=breaker or make_breaker(clock=self.clock), time_fn=self.clock)

    def ok(self, data=None, status=200, key=None, serial=None, ts=None, raw=None):
        body = raw if raw is not None else (json.dumps(data, ensure_ascii=False).encode()
                                            if data is not None else b"")
        headers = protocol.sign_response(key or self.pki["platform"], serial or self.pki["serial"],
                                         body, int(ts or self.clock()), protocol.make_hex_nonce())
        return status, {**headers, "Request-ID": "08F5B8C2B5061-0"}, body

    @staticmethod
    def error(status, code, message, detail=None):
        body = {"code": code, "message": message, **({"detail": detail} if detail else {})}
        return status, {"Request-ID": f"08F5B8C2B5061-{status}"}, json.dumps(body).encode()


def order(**over):
    return {"appid": APPID, "mchid": MCHID, "out_order_no": "ORD-1", "service_id": SERVICE,
            "service_introduction": "充电宝租借", "state": "CREATED",
            "risk_fund": {"name": "DEPOSIT", "amount": 9900}, "order_id": "1000000000201912",
            **over}


def create_request(**over):
    fields = {"out_order_no": "ORD-1", "service_introduction": "充电宝租借",
              "time_range": TimeRange(start_time="OnAccept"),
              "risk_fund": RiskFund(name="DEPOSIT", amount=9900),
              "notify_url": "https://merchant.test/notify", "need_user_confirm": True}
    return CreateServiceOrderRequest(**{**fields, **over})


def read_timeout():
    return requests.exceptions.ReadTimeout("read timed out")


def refused():
    reason = urllib3.exceptions.NewConnectionError(None, "Connection refused")
    return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", reason))


def reset_after_send():
    return requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "x")))


# ---------------------------------------------------------------------- signing


def assert_signed_as_sent(env, prepared):
    auth = protocol.parse_authorization(prepared.headers["Authorization"])
    assert auth.mchid == MCHID and auth.serial_no == "1DDE55AD98ED71D6"
    message = protocol.request_message(prepared.method, prepared.path_url, auth.timestamp,
                                       auth.nonce_str, prepared.body or b"")
    assert protocol.verify(env.pki["merchant"].public_key(), message, auth.signature)
    return auth


def test_signature_covers_the_exact_bytes_on_the_wire(pki):
    env = Env(pki)
    env.wire.on("POST", ORDER_PATH, env.ok(order()))
    result = env.client.create_service_order(create_request())
    assert result.state == "CREATED" and result.out_order_no == "ORD-1"
    sent = env.wire.sent[0]
    auth = assert_signed_as_sent(env, sent)
    assert auth.timestamp == str(NOW)
    assert "充电宝租借".encode() in sent.body and b"\\u" not in sent.body  # UTF-8, not escaped
    assert sent.body == encode_body(json.loads(sent.body))  # compact, serialised once
    assert json.loads(sent.body)["appid"] == APPID  # defaults from config
    for name, value in {"Accept": "application/json", "Content-Type": "application/json",
                        "User-Agent": "payscore-merchant-kit/0.1 (python)",
                        "Wechatpay-Serial": pki["serial"]}.items():
        assert sent.headers[name] == value


def test_query_string_is_signed_exactly_as_sent(pki):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, env.ok(order()))
    env.client.query_service_order("A|b*c-1 x")
    sent = env.wire.sent[0]
    assert sent.path_url == (f"{ORDER_PATH}?out_order_no=A%7Cb%2Ac-1+x&service_id={SERVICE}"
                             f"&appid={APPID}")
    assert sent.body is None and "Content-Type" not in sent.headers
    assert_signed_as_sent(env, sent)


def test_path_params_are_quoted_and_never_in_the_body(pki):
    env = Env(pki)
    path = f"{ORDER_PATH}/A%7CB/complete"
    env.wire.on("POST", path, env.ok(order(state="DOING", state_description="MCH_COMPLETE")))
    req = CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=300)],
                                      total_amount=300)
    env.client.complete_service_order("A|B", req)
    body = json.loads(env.wire.sent[0].body)
    assert "out_order_no" not in body and body["total_amount"] == 300
    assert_signed_as_sent(env, env.wire.sent[0])


def test_body_bytes_match_reference_vector_f1():
    folders = [pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference",
               pathlib.Path(os.environ.get("PAYSCORE_REFERENCE_DIR", "/nonexistent"))]
    files = [f / "payscore-test-vectors.json" for f in folders
             if (f / "payscore-test-vectors.json").is_file()]
    if not files:
        pytest.skip("payscore-test-vectors.json not found (shared/reference or "
                    "$PAYSCORE_REFERENCE_DIR)")
    f1 = json.loads(files[0].read_text("utf-8"))["computed_vectors"][
        "F1_request_create_serviceorder"]
    sent = json.loads(f1["body"])
    req = CreateServiceOrderRequest(
        out_order_no=sent["out_order_no"], appid=sent["appid"], service_id=sent["service_id"],
        service_introduction=sent["service_introduction"],
        time_range=TimeRange(**sent["time_range"]), risk_fund=RiskFund(**sent["risk_fund"]),
        notify_url=sent["notify_url"], need_user_confirm=sent["need_user_confirm"])
    assert encode_body(req.to_dict()) == f1["body"].encode("utf-8")


def test_local_validation():
    with pytest.raises(ValueError, match="4-byte"):
        encode_body({"attach": "ok 😀"})
    with pytest.raises(TypeError, match="int fen"):
        RiskFund(name="DEPOSIT", amount=99.5).to_dict()
    with pytest.raises(ValueError, match="exactly one"):
        CreateRefundRequest(out_refund_no="R1", amount=RefundAmount(refund=1, total=1))


def test_204_is_verified_too(pki):
    env = Env(pki)
    path = "/v3/payscore/permissions/openid/oUpF8u/terminate"
    env.wire.on("POST", path, env.ok(status=204), (204, {}, b""))
    assert env.client.terminate_permission_by_openid("oUpF8u", "用户注销") is None
    with pytest.raises(UntrustedResponse) as exc:
        env.client.terminate_permission_by_openid("oUpF8u", "用户注销")
    assert exc.value.reason == "unsigned" and exc.value.outcome_unknown


# ---------------------------------------------------------------------- rejection paths


def _stranger():
    return protocol.generate_private_key()


REJECTIONS = {
    "unsigned": lambda env: (200, {"Request-ID": "R-1"}, b'{"state":"CREATED"}'),
    "probe": lambda env: _with(env.ok(order()), {"Wechatpay-Signature":
                                                 protocol.make_probe_signature()}),
    "bad-signature": lambda env: env.ok(order(), key=_stranger()),
    "stale": lambda env: env.ok(order(), ts=NOW - 301),
    "unparseable": lambda env: env.ok(raw=b"<html>ok</html>"),
    "truncated": lambda env: env.ok(raw=b'{"state":"CRE'),
}


def _with(reply, extra):
    status, headers, body = reply
    return status, {**headers, **extra}, body


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_untrusted_2xx_is_rejected_before_parsing(pki, case):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, REJECTIONS[case](env))
    with pytest.raises(UntrustedResponse) as exc:
        env.client.query_service_order("ORD-1")
    err = exc.value
    assert err.reason == ("unparseable" if case == "truncated" else case)
    assert err.outcome_unknown and not err.retryable and err.request_id
    assert len(env.wire.sent) == 1  # never retried blindly


def test_unknown_serial_refreshes_certificates_once_then_rejects(pki):
    env = Env(pki)
    other = _stranger()
    env.wire.on("GET", ORDER_PATH, env.ok(order(), key=other, serial="ABCDEF0123"))
    cert_body = json.dumps({"data": [{"serial_no": pki["serial"], "encrypt_certificate":
                                      protocol.encrypt_certificate(
                                          APIV3, protocol.certificate_pem(pki["cert"]),
                                          protocol.make_aead_nonce())}]}).encode()
    env.wire.on("GET", "/v3/certificates", lambda _r: env.ok(raw=cert_body))
    for _ in range(2):
        with pytest.raises(UntrustedResponse) as exc:
            env.client.query_service_order("ORD-1")
        assert exc.value.reason == "unknown-serial"
    downloads = [r for r in env.wire.sent if r.path_url == "/v3/certificates"]
    assert len(downloads) == 1  # the second miss is inside the refresh interval
    assert_signed_as_sent(env, downloads[0])


def test_certificate_bootstrap_through_the_client(pki):
    clock = Clock()
    keys = PlatformKeys(apiv3_key=APIV3, time_fn=clock)  # nothing configured yet
    env = Env(pki, clock=clock, keys=keys)
    cert_body = json.dumps({"data": [{"serial_no": pki["serial"], "encrypt_certificate":
                                      protocol.encrypt_certificate(
                                          APIV3, protocol.certificate_pem(pki["cert"]),
                                          protocol.make_aead_nonce())}]}).encode()
    env.wire.on("GET", "/v3/certificates", lambda _r: env.ok(raw=cert_body))
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order()))
    assert env.client.query_service_order("ORD-1").state == "CREATED"
    assert "Wechatpay-Serial" not in env.wire.sent[0].headers
    env.client.query_service_order("ORD-1")
    assert env.wire.sent[-1].headers["Wechatpay-Serial"] == pki["serial"]


def test_public_key_mode_asks_for_public_key_signed_replies(pki):
    pub_id = "PUB_KEY_ID_0000000000000024101100397200000006"
    clock = Clock()
    keys = PlatformKeys(public_key=pki["platform"].public_key(), public_key_id=pub_id,
                        time_fn=clock)
    env = Env(pki, clock=clock, keys=keys)
    env.wire.on("GET", ORDER_PATH, env.ok(order(), serial=pub_id))
    env.client.query_service_order("ORD-1")
    assert env.wire.sent[0].headers["Wechatpay-Serial"] == pub_id


def test_error_replies_are_parsed_never_trusted(pki):
    env = Env(pki)
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
def test_non_json_error_is_a_gateway_error(pki, status, body):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, (status, {"Request-ID": "GW-1"}, body))
    with pytest.raises(ApiError) as exc:
        env.client.query_service_order("ORD-1")
    assert exc.value.code == "GATEWAY_ERROR" and exc.value.status == status
    assert exc.value.retryable == (status >= 500) and exc.value.request_id == "GW-1"
    assert len(env.wire.sent) == (3 if status >= 500 else 1)


def test_unknown_enum_values_and_keys_do_not_crash(pki):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, env.ok(order(state="SUSPENDED", brand_new={"x": 1},
                                                collection={"state": "WAIT_PAY"})))
    got = env.client.query_service_order("ORD-1")
    assert got.has_unknown_state and got.extra == {"brand_new": {"x": 1}}
    assert got.unknown_values() == {"state": "SUSPENDED", "collection.state": "WAIT_PAY"}


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


def test_retry_budget_window_and_floor():
    clock = Clock()
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


def test_5xx_retried_with_backoff_then_succeeds(pki):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "系统繁忙"),
                env.error(503, "SERVICE_UNAVAILABLE", "x"), lambda _r: env.ok(order()))
    assert env.client.query_service_order("ORD-1").state == "CREATED"
    assert len(env.wire.sent) == 3 and len(env.clock.sleeps) == 2
    assert env.wire.sent[0].headers["Authorization"] != env.wire.sent[1].headers["Authorization"]


def test_429_waits_longer(pki):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, env.error(429, "FREQUENCY_LIMITED", "频率超限"),
                lambda _r: env.ok(order()))
    env.client.query_service_order("ORD-1")
    assert env.clock.sleeps[0] >= 0.5


def test_read_timeout_retried_only_when_replay_safe(pki):
    env = Env(pki)
    env.wire.on("GET", ORDER_PATH, read_timeout(), lambda _r: env.ok(order()))
    env.client.query_service_order("ORD-1")
    assert len(env.wire.sent) == 2
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/pay", reset_after_send())
    with pytest.raises(TransportError) as exc:
        env.client.pay_service_order("ORD-1")
    assert exc.value.outcome_unknown and exc.value.phase == "read"
    assert len(env.wire.bodies("POST")) == 1


def test_connect_failure_is_retried_even_for_unsafe_calls(pki):
    env = Env(pki)
    ack = {"appid": APPID, "mchid": MCHID, "out_order_no": "ORD-1", "service_id": SERVICE}
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/pay", refused(), lambda _r: env.ok(ack))
    assert env.client.pay_service_order("ORD-1").out_order_no == "ORD-1"
    assert len(env.wire.sent) == 2


def test_budget_exhaustion_stops_retries(pki):
    clock = Clock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock,
                         budget=RetryBudget(min_per_second=0, clock=clock))
    env = Env(pki, clock=clock, policy=policy)
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "系统繁忙"))
    with pytest.raises(RetryBudgetExhausted) as exc:
        env.client.query_service_order("ORD-1")
    assert exc.value.last_error.status == 500 and exc.value.request_id
    assert len(env.wire.sent) == 1 and clock.sleeps == []


def test_total_deadline_bounds_attempts_and_timeouts(pki):
    env = Env(pki, total_deadline=4.0)

    def slow(_request):
        env.clock.now += 4.0  # the provider answers only when the budget is spent
        return env.error(500, "SYSTEM_ERROR", "系统繁忙")

    env.wire.on("GET", ORDER_PATH, slow)
    with pytest.raises(DeadlineExceeded) as exc:
        env.client.query_service_order("ORD-1")
    assert exc.value.last_error.status == 500 and len(env.wire.sent) == 1
    assert env.wire.timeouts[0] == (3.05, 4.0)  # read timeout capped by the deadline


# ---------------------------------------------------------------------- circuit breaker


def test_breaker_opens_on_provider_failures_only(pki):
    clock = Clock()
    breaker = make_breaker(fail_max=5, reset_timeout=30, clock=clock)
    env = Env(pki, clock=clock, breaker=breaker,
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


def test_half_open_probe_closes_or_reopens(pki):
    clock = Clock()
    breaker = make_breaker(fail_max=2, reset_timeout=30, clock=clock)
    env = Env(pki, clock=clock, breaker=breaker,
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


# ---------------------------------------------------------------------- unknown outcomes


def test_create_after_timeout_finds_the_order_without_a_second_create(pki):
    env = Env(pki)
    env.wire.on("POST", ORDER_PATH, read_timeout())
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(package="pkg")))
    got = env.client.create_service_order(create_request())
    assert got.out_order_no == "ORD-1" and got.package == "pkg"
    assert len(env.wire.bodies("POST")) == 1
    assert "out_order_no=ORD-1" in env.wire.sent[1].path_url


def test_create_after_timeout_replays_identically_when_not_created(pki):
    env = Env(pki)
    env.wire.on("POST", ORDER_PATH, reset_after_send(), lambda _r: env.ok(order()))
    env.wire.on("GET", ORDER_PATH, env.error(404, "ORDER_NOT_EXIST", "订单不存在"))
    assert env.client.create_service_order(create_request()).state == "CREATED"
    first, second = [r for r in env.wire.sent if r.method == "POST"]
    assert first.body == second.body  # same out_order_no, same bytes
    assert first.headers["Authorization"] != second.headers["Authorization"]  # fresh nonce
    assert_signed_as_sent(env, second)


def test_create_after_untrusted_reply_is_resolved_by_query(pki):
    env = Env(pki)
    env.wire.on("POST", ORDER_PATH, REJECTIONS["probe"](env))
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order()))
    assert env.client.create_service_order(create_request()).out_order_no == "ORD-1"
    assert len(env.wire.bodies("POST")) == 1


def test_create_stays_unknown_when_the_query_fails(pki):
    env = Env(pki)
    env.wire.on("POST", ORDER_PATH, read_timeout())
    env.wire.on("GET", ORDER_PATH, env.error(500, "SYSTEM_ERROR", "系统繁忙"))
    with pytest.raises(TransportError) as exc:
        env.client.create_service_order(create_request())
    assert exc.value.outcome_unknown
    assert isinstance(exc.value.__cause__, ApiError) and exc.value.__cause__.status == 500
    assert len(env.wire.bodies("POST")) == 1


def test_create_found_but_different_is_a_conflict(pki):
    env = Env(pki)
    env.wire.on("POST", ORDER_PATH, read_timeout())
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(service_introduction="别的服务")))
    with pytest.raises(ApiError) as exc:
        env.client.create_service_order(create_request())
    assert exc.value.code == "INVALID_REQUEST" and "service_introduction" in exc.value.message
    assert not exc.value.outcome_unknown


def test_complete_after_timeout_recognises_success(pki):
    env = Env(pki)
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/complete", read_timeout())
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(
        state="DOING", state_description="MCH_COMPLETE", total_amount=300)))
    req = CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=300)],
                                      total_amount=300)
    assert env.client.complete_service_order("ORD-1", req).state_description == "MCH_COMPLETE"
    assert len(env.wire.bodies("POST")) == 1


def test_cancel_500_then_order_canceled_resolves_to_success(pki):
    env = Env(pki)
    env.wire.on("POST", f"{ORDER_PATH}/ORD-1/cancel", env.error(500, "SYSTEM_ERROR", "x"),
                env.error(400, "ORDER_CANCELED", "单据已取消"))
    env.wire.on("GET", ORDER_PATH, lambda _r: env.ok(order(state="REVOKED")))
    ack = env.client.cancel_service_order("ORD-1", "用户取消")
    assert ack.out_order_no == "ORD-1" and ack.order_id == "1000000000201912"
    bodies = env.wire.bodies("POST")
    assert len(bodies) == 2 and bodies[0] == bodies[1]


def test_refund_retries_with_the_same_out_refund_no_then_queries(pki):
    env = Env(pki)
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


def test_path_param_smuggled_into_the_body_is_refused_locally(pki):
    env = Env(pki)
    req = CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=300)],
                                      total_amount=300, extra={"out_order_no": "ORD-1"})
    with pytest.raises(ValueError, match="path parameters"):
        env.client.complete_service_order("ORD-1", req)
    assert env.wire.sent == []


def test_breaker_does_not_serialise_concurrent_calls(pki):
    import threading

    env = Env(pki)
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
