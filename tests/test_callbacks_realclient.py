"""A real, unmodified client parses the sandbox's callbacks: wechatpayv3 (PyPI).

Certificate mode downloads /v3/certificates from the sandbox (its gateway pointed at a
LiveSandbox); public-key mode verifies with the WeChat Pay public key; a client holding both
(§5.3 "combined") parses a migrating merchant's mixed callbacks.
"""

from __future__ import annotations

import json

import pytest
import requests
from callbacks_support import Receiver
from sqlalchemy import select, update

from merchant_kit import protocol
from sandbox import db
from sandbox.live import LiveSandbox
from sandbox.testing import add_merchant, pooled_keygen

wechatpayv3 = pytest.importorskip("wechatpayv3")


@pytest.fixture
def live(tmp_path):
    with LiveSandbox(tmp_path / "sandbox", KEYGEN=pooled_keygen, CALLBACK_POLL_S=0.05) as live:
        yield live


def merchant_in(live, signing_mode: str, ratio: float = 0.0):
    m = add_merchant(live.app, base_url=live.base_url)
    with db.write_tx(live.sandbox.engine) as conn:
        conn.execute(update(db.merchants).where(db.merchants.c.mchid == m.mchid)
                     .values(signing_mode=signing_mode, migration_ratio=ratio))
        cert_pem = conn.execute(select(db.merchants.c.certificate_pem)
                                .where(db.merchants.c.mchid == m.mchid)).scalar_one()
    return m, cert_pem


def client_for(live, m, cert_dir=None, public_key: bool = False):
    kwargs = {}
    if public_key:
        pub = live.sandbox.signer.public_key
        kwargs = {"public_key": protocol.public_key_pem(pub.public_key).decode(),
                  "public_key_id": pub.serial}
    wxpay = wechatpayv3.WeChatPay(
        wechatpay_type=wechatpayv3.WeChatPayType.NATIVE, mchid=m.mchid,
        private_key=protocol.private_key_pem(m.private_key).decode(),
        cert_serial_no=m.serial_no, appid=m.appid, apiv3_key=m.apiv3_key,
        cert_dir=str(cert_dir) if cert_dir else None, timeout=(5, 10), **kwargs)
    # the one change: its gateway is the sandbox (the client's code stays as published)
    wxpay._core._gate_way = live.base_url
    return wxpay


def send_test(live, m, rx, event_type: str = "PAYSCORE.USER_PAID") -> dict:
    r = requests.post(f"{live.base_url}/sandbox/notifications/test",
                      json={"url": rx.url, "mchid": m.mchid, "event_type": event_type},
                      timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "DELIVERED", answer
    return answer


def resource_of(live, notification_id: str) -> dict:
    return requests.get(f"{live.base_url}/sandbox/notifications/{notification_id}",
                        timeout=10).json()["resource"]


def test_certificate_mode_downloads_the_sandbox_certificate_and_parses(live, tmp_path):
    m, merchant_cert = merchant_in(live, "certificate")
    cert_dir = tmp_path / "wechatpay-certs"
    cert_dir.mkdir()
    # WeChatPay() fetches platform certificates at init unless cert_dir holds a valid one: a
    # placeholder (the merchant's own certificate) keeps it off the real gateway; the first
    # callback's unknown serial then makes it download from the sandbox.
    (cert_dir / "placeholder.pem").write_text(merchant_cert)
    wxpay = client_for(live, m, cert_dir=cert_dir)
    with Receiver() as rx:
        answer = send_test(live, m, rx)
        send_test(live, m, rx, "PAYSCORE.USER_CONFIRM")
    serial = live.sandbox.signer.certificate.serial
    for request in rx.requests:
        assert request["headers"]["Wechatpay-Serial"] == serial
        parsed = wxpay.callback(request["headers"], request["body"])
        sent = json.loads(request["body"])
        assert parsed is not None and parsed["id"] == sent["id"]
        assert parsed["resource"] == resource_of(live, sent["id"])
    first = wxpay.callback(rx.requests[0]["headers"], rx.requests[0]["body"])
    assert first["event_type"] == "PAYSCORE.USER_PAID" and first["id"] == answer["id"]
    assert first["resource"]["state"] == "DONE" and first["resource"]["mchid"] == m.mchid
    assert (cert_dir / f"{serial}.pem").exists()  # downloaded from the sandbox's endpoint
    tampered = rx.requests[0]["body"].replace(b'"summary"', b'"Summary"')
    assert wxpay.callback(rx.requests[0]["headers"], tampered) is None


def test_public_key_mode_parses_without_any_certificate(live):
    m, _ = merchant_in(live, "public_key")
    wxpay = client_for(live, m, public_key=True)
    with Receiver() as rx:
        answer = send_test(live, m, rx, "REFUND.SUCCESS")
    (request,) = rx.requests
    assert request["headers"]["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    parsed = wxpay.callback(request["headers"], request["body"])
    assert parsed["id"] == answer["id"] and parsed["event_type"] == "REFUND.SUCCESS"
    assert parsed["resource"] == resource_of(live, answer["id"])
    assert parsed["resource"]["refund_status"] == "SUCCESS"


def test_combined_client_parses_a_migrating_merchants_mixed_callbacks(live, tmp_path):
    m, _ = merchant_in(live, "migrating", ratio=0.5)
    wxpay = client_for(live, m, public_key=True)  # certificates fetched lazily, as needed
    with Receiver() as rx:
        for _ in range(20):
            send_test(live, m, rx)
    serials = {r["headers"]["Wechatpay-Serial"] for r in rx.requests}
    assert serials == {live.sandbox.signer.certificate.serial,
                       live.sandbox.signer.public_key.serial}
    for request in rx.requests:
        parsed = wxpay.callback(request["headers"], request["body"])
        assert parsed is not None and parsed["resource"]["mchid"] == m.mchid
