"""PayScoreClient against a scripted transport: the signature covers the exact bytes and URL
on the wire, local refusals, and which 2xx replies are verified, trusted or rejected."""

from __future__ import annotations

import json
import pathlib

import pytest

from merchant_kit import (
    CompleteServiceOrderRequest,
    CreateRefundRequest,
    CreateServiceOrderRequest,
    Payment,
    RefundAmount,
    RiskFund,
    TimeRange,
    UntrustedResponse,
    encode_body,
    protocol,
)
from merchant_kit.keys import PlatformKeys
from merchant_kit.transport import session_for

from .scripted import (
    APIV3,
    APPID,
    NOW,
    ORDER_PATH,
    REJECTIONS,
    SERVICE,
    assert_signed_as_sent,
    create_request,
    order,
    stranger,
)

# ---------------------------------------------------------------------- signing


def test_signature_covers_the_exact_bytes_on_the_wire(pki, env):
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


def test_query_string_is_signed_exactly_as_sent(env):
    env.wire.on("GET", ORDER_PATH, env.ok(order()))
    env.client.query_service_order("A|b*c-1 x")
    sent = env.wire.sent[0]
    assert sent.path_url == (f"{ORDER_PATH}?out_order_no=A%7Cb%2Ac-1+x&service_id={SERVICE}"
                             f"&appid={APPID}")
    assert sent.body is None and "Content-Type" not in sent.headers
    assert_signed_as_sent(env, sent)


def test_path_params_are_quoted_and_never_in_the_body(env):
    path = f"{ORDER_PATH}/A%7CB/complete"
    env.wire.on("POST", path, env.ok(order(state="DOING", state_description="MCH_COMPLETE")))
    req = CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=300)],
                                      total_amount=300)
    env.client.complete_service_order("A|B", req)
    body = json.loads(env.wire.sent[0].body)
    assert "out_order_no" not in body and body["total_amount"] == 300
    assert_signed_as_sent(env, env.wire.sent[0])


def test_path_param_smuggled_into_the_body_is_refused_locally(env):
    req = CompleteServiceOrderRequest(post_payments=[Payment(name="租借费", amount=300)],
                                      total_amount=300, extra={"out_order_no": "ORD-1"})
    with pytest.raises(ValueError, match="path parameters"):
        env.client.complete_service_order("ORD-1", req)
    assert env.wire.sent == []


def test_body_bytes_match_reference_vector_f1():
    vectors = pathlib.Path(__file__).resolve().parent / "data" / "payscore-test-vectors.json"
    f1 = json.loads(vectors.read_text("utf-8"))["computed_vectors"][
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


def test_204_is_verified_too(env):
    path = "/v3/payscore/permissions/openid/oUpF8u/terminate"
    env.wire.on("POST", path, env.ok(status=204), (204, {}, b""))
    assert env.client.terminate_permission_by_openid("oUpF8u", "用户注销") is None
    with pytest.raises(UntrustedResponse) as exc:
        env.client.terminate_permission_by_openid("oUpF8u", "用户注销")
    assert exc.value.reason == "unsigned" and exc.value.outcome_unknown


# ---------------------------------------------------------------------- rejection paths


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_untrusted_2xx_is_rejected_before_parsing(env, case):
    env.wire.on("GET", ORDER_PATH, REJECTIONS[case](env))
    with pytest.raises(UntrustedResponse) as exc:
        env.client.query_service_order("ORD-1")
    err = exc.value
    assert err.reason == ("unparseable" if case == "truncated" else case)
    assert err.outcome_unknown and not err.retryable and err.request_id
    assert len(env.wire.sent) == 1  # never retried blindly


def test_unknown_serial_refreshes_certificates_once_then_rejects(pki, env):
    other = stranger()
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


def test_certificate_bootstrap_through_the_client(pki, clock, make_env):
    keys = PlatformKeys(apiv3_key=APIV3, time_fn=clock)  # nothing configured yet
    env = make_env(keys=keys)
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


def test_public_key_mode_asks_for_public_key_signed_replies(pki, clock, make_env):
    pub_id = "PUB_KEY_ID_0000000000000024101100397200000006"
    keys = PlatformKeys(public_key=pki["platform"].public_key(), public_key_id=pub_id,
                        time_fn=clock)
    env = make_env(keys=keys)
    env.wire.on("GET", ORDER_PATH, env.ok(order(), serial=pub_id))
    env.client.query_service_order("ORD-1")
    assert env.wire.sent[0].headers["Wechatpay-Serial"] == pub_id


def test_unknown_enum_values_and_keys_do_not_crash(env):
    env.wire.on("GET", ORDER_PATH, env.ok(order(state="SUSPENDED", brand_new={"x": 1},
                                                collection={"state": "WAIT_PAY"})))
    got = env.client.query_service_order("ORD-1")
    assert got.has_unknown_state and got.extra == {"brand_new": {"x": 1}}
    assert got.unknown_values() == {"state": "SUSPENDED", "collection.state": "WAIT_PAY"}


# ---------------------------------------------------------------------- sessions


@pytest.mark.parametrize("base_url, proxied", [
    ("http://127.0.0.1:8080", False), ("http://localhost:8080", False),
    ("http://[::1]:8080", False), ("https://api.mch.weixin.qq.com", True)])
def test_environment_proxy_applies_only_off_loopback(monkeypatch, base_url, proxied):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = session_for(base_url)
    settings = session.merge_environment_settings(base_url + "/v3/certificates", {}, None,
                                                  None, None)
    assert bool(settings["proxies"]) is proxied
