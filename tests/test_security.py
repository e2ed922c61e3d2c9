"""Request verification and response signing over the raw bytes (reference §5)."""

from __future__ import annotations

import json

import pytest

from merchant_kit import protocol
from sandbox import db


def test_signed_create_is_accepted_and_answer_is_signed(app, client, sandbox):
    r = client.post("/v3/payscore/serviceorder", client.create_body("A1"))
    assert r.status_code == 200
    key = sandbox.signer.by_serial[r.headers["Wechatpay-Serial"].upper()]
    message = protocol.response_message(r.headers["Wechatpay-Timestamp"],
                                        r.headers["Wechatpay-Nonce"], r.get_data())
    assert protocol.verify(key.public_key, message, r.headers["Wechatpay-Signature"])
    assert r.headers["Wechatpay-Signature-Type"] == protocol.SCHEME
    assert r.headers["Request-ID"].endswith("-0")


@pytest.mark.parametrize("mutate, issue", [
    (lambda h: h.pop("Authorization"), "missing"),
    (lambda h: h.update(Authorization=h["Authorization"].replace("WECHATPAY2", "WECHATPAY3")),
     "scheme"),
    (lambda h: h.update(Authorization=h["Authorization"].replace('",', '";', 1)), "format"),
])
def test_malformed_authorization_is_401(client, mutate, issue):
    body = json.dumps(client.create_body("A2")).encode()
    m = client.merchant
    headers = {"Authorization": protocol.build_authorization(
        m.mchid, m.serial_no, m.private_key, "POST", "/v3/payscore/serviceorder", body,
        client._now(), "n1")}
    mutate(headers)
    r = client.post("/v3/payscore/serviceorder", raw_body=body, sign=False, headers=headers)
    assert r.status_code == 401
    assert r.json["code"] == "SIGN_ERROR"
    assert r.json["detail"]["detail"]["issue"] == issue
    assert "Wechatpay-Signature" not in r.headers


def test_fields_in_any_order_and_serial_case_insensitive(client):
    body = json.dumps(client.create_body("A3")).encode()
    m = client.merchant
    ts, nonce = client._now(), protocol.make_nonce()
    sig = protocol.sign(m.private_key, protocol.request_message(
        "POST", "/v3/payscore/serviceorder", ts, nonce, body))
    header = (f'{protocol.SCHEME} serial_no="{m.serial_no.lower()}",timestamp="{ts}",'
              f'signature="{sig}",nonce_str="{nonce}",mchid="{m.mchid}"')
    r = client.post("/v3/payscore/serviceorder", raw_body=body, sign=False,
                    headers={"Authorization": header})
    assert r.status_code == 200, r.json


def test_forged_body_is_rejected_and_changes_nothing(client, sandbox):
    body = json.dumps(client.create_body("A4")).encode()
    m = client.merchant
    auth = protocol.build_authorization(m.mchid, m.serial_no, m.private_key, "POST",
                                        "/v3/payscore/serviceorder", body, client._now(), "n")
    forged = body.replace(b"9900", b"9901")
    r = client.post("/v3/payscore/serviceorder", raw_body=forged, sign=False,
                    headers={"Authorization": auth})
    assert r.status_code == 401
    assert r.json["message"] == "错误的签名，验签失败"
    assert r.json["detail"]["sign_information"]["method"] == "POST"
    with sandbox.engine.connect() as conn:
        assert conn.execute(db.orders.select()).first() is None


def test_stale_timestamp_is_rejected(client):
    r = client.post("/v3/payscore/serviceorder", client.create_body("A5"),
                    timestamp=client._now() - 301)
    assert r.status_code == 401
    assert "5分钟" in r.json["message"]
    ok = client.post("/v3/payscore/serviceorder", client.create_body("A5"),
                     timestamp=client._now() - 299)
    assert ok.status_code == 200


def test_wrong_merchant_key_is_rejected(app, client):
    from sandbox.testing import SignedClient, add_merchant

    other = add_merchant(app)
    impostor = SignedClient(app, other)
    impostor.merchant = type(other)(client.merchant.mchid, other.appid, other.service_id,
                                    client.merchant.serial_no, other.private_key,
                                    other.apiv3_key)
    r = impostor.post("/v3/payscore/serviceorder", client.create_body("A6"))
    assert r.status_code == 401
    assert r.json["detail"]["detail"]["issue"] == "signature"


def test_query_string_is_signed_as_sent(client):
    client.post("/v3/payscore/serviceorder", client.create_body("A7"))
    r = client.get("/v3/payscore/serviceorder",
                   query={"service_id": client.merchant.service_id, "out_order_no": "A7",
                          "appid": client.merchant.appid})
    assert r.status_code == 200
    assert r.json["out_order_no"] == "A7"


def test_missing_accept_or_user_agent(client):
    r = client.post("/v3/payscore/serviceorder", client.create_body("A8"),
                    headers={"Accept": ""})
    assert r.status_code == 400
    assert r.json == {"code": "INVALID_REQUEST", "message": "Http头缺少Accept或User-Agent"}


def test_public_key_signing_selected_by_request_serial(client, sandbox):
    pub = sandbox.signer.public_key
    client.extra_headers["Wechatpay-Serial"] = pub.serial
    r = client.post("/v3/payscore/serviceorder", client.create_body("A9"))
    assert r.headers["Wechatpay-Serial"] == pub.serial
    message = protocol.response_message(r.headers["Wechatpay-Timestamp"],
                                        r.headers["Wechatpay-Nonce"], r.get_data())
    assert protocol.verify(pub.public_key, message, r.headers["Wechatpay-Signature"])
