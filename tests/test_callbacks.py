"""Callbacks as WeChat sends them (reference §6): envelope, AEAD, signature, the signing modes,
and the build and send hooks faults use to bend a delivery.

Deliveries go over real loopback HTTP to `Receiver`; business time is the frozen sandbox clock,
moved with `shift` and followed by a synchronous `drain` (no sleeping for business time).
Retries are in test_callbacks_retries.py, the control API in test_callbacks_control.py.
"""

from __future__ import annotations

import json
import re

import pytest
from callbacks_support import T0, Receiver, S, attempts_of, enqueue, row_of, set_merchant

from merchant_kit import protocol
from sandbox.callbacks import envelope
from sandbox.clock import to_datetime


def test_envelope_headers_and_aead_exactly_per_reference(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver() as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        assert d.drain()["delivered"] == 1
    (req,) = rx.requests
    h, body = req["headers"], req["body"]
    assert set(h) >= {"Request-ID", "Wechatpay-Nonce", "Wechatpay-Serial", "Wechatpay-Signature",
                      "Wechatpay-Signature-Type", "Wechatpay-Timestamp", "Content-Type"}
    assert re.fullmatch(r"[0-9A-F]{44}-0", h["Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", h["Wechatpay-Nonce"])
    assert h["Content-Type"] == "application/json"
    assert h["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert h["Wechatpay-Timestamp"] == str(T0 // S)
    assert h["Wechatpay-Serial"] == sb.signer.certificate.serial
    # the signature covers the exact body bytes, with the platform certificate's key
    keys = {sb.signer.certificate.serial.upper(): sb.signer.certificate.public_key}
    assert protocol.check_signed_message(h, body, keys, T0 // S) == sb.signer.certificate.serial
    with pytest.raises(protocol.SignatureRejected):
        protocol.check_signed_message(h, body.replace(b"encrypt-resource", b"encrypt-resourcf"), keys, T0 // S)
    data = json.loads(body)
    assert list(data) == ["id", "create_time", "resource_type", "event_type", "summary",
                          "resource"]
    assert data["id"] == nid and len(nid) == 36
    assert data["create_time"] == protocol.rfc3339(to_datetime(T0))
    assert data["create_time"].endswith("+08:00")
    assert data["resource_type"] == "encrypt-resource"
    assert data["event_type"] == "PAYSCORE.USER_PAID"
    assert data["summary"] == "支付成功" and "支付成功".encode() in body  # raw UTF-8, not \u
    res = data["resource"]
    assert list(res) == ["original_type", "algorithm", "ciphertext", "associated_data", "nonce"]
    assert res["original_type"] == "payscore" and res["associated_data"] == "payscore"
    assert res["algorithm"] == "AEAD_AES_256_GCM"
    assert re.fullmatch(r"[0-9A-Za-z]{12}", res["nonce"])
    plain = protocol.decrypt_resource(m.apiv3_key.encode(), res)
    assert json.loads(plain) == {"out_order_no": "O1", "state": "DONE",
                                 "service_introduction": "充电宝"}
    with pytest.raises(protocol.DecryptionError):  # the AAD is bound into the tag
        protocol.decrypt_resource(m.apiv3_key.encode(), {**res, "associated_data": ""})
    row = row_of(sb, nid)
    assert (row.status, row.attempts, row.delivered_us, row.lease_owner) == \
        ("DELIVERED", 1, T0, None)
    (attempt,) = attempts_of(sb, nid)
    assert (attempt.at_us, attempt.status_code, attempt.error) == (T0, 200, None)
    assert attempt.signature_serial == sb.signer.certificate.serial
    assert json.loads(attempt.answer)["code"] == "SUCCESS" and attempt.latency_ms > 0


def test_refund_notice_uses_refund_type_and_aad(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver() as rx:
        enqueue(sb, m.mchid, rx.url, "REFUND.SUCCESS", {"refund_status": "SUCCESS"})
        d.drain()
    data = json.loads(rx.requests[0]["body"])
    assert data["summary"] == "退款成功"
    assert data["resource"]["original_type"] == "refund"
    assert data["resource"]["associated_data"] == "refund"
    assert json.loads(protocol.decrypt_resource(m.apiv3_key.encode(), data["resource"])) == \
        {"refund_status": "SUCCESS"}


def test_public_key_mode_signs_with_the_wechatpay_public_key(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    set_merchant(sb, m.mchid, signing_mode="public_key")
    with Receiver() as rx:
        enqueue(sb, m.mchid, rx.url)
        d.drain()
    h, body = rx.requests[0]["headers"], rx.requests[0]["body"]
    pub = sb.signer.public_key
    assert h["Wechatpay-Serial"] == pub.serial and pub.serial.startswith("PUB_KEY_ID_")
    assert protocol.check_signed_message(h, body, {pub.serial.upper(): pub.public_key},
                                         T0 // S) == pub.serial
    cert_only = {sb.signer.certificate.serial.upper(): sb.signer.certificate.public_key}
    with pytest.raises(protocol.SignatureRejected):
        protocol.check_signed_message(h, body, cert_only, T0 // S)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 1.0])
def test_migrating_mode_signs_a_deterministic_share_with_the_public_key(cb, ratio):
    sb, m, d = cb.sb, cb.m, cb.d
    set_merchant(sb, m.mchid, signing_mode="migrating", migration_ratio=ratio)
    both = {k.serial.upper(): k.public_key for k in (sb.signer.certificate, sb.signer.public_key)}
    with Receiver() as rx:
        ids = [enqueue(sb, m.mchid, rx.url) for _ in range(120)]
        d.drain()
        for nid in ids[:10]:
            d.redeliver(nid)
    serial_by_id: dict[str, set] = {}
    for r in rx.requests:
        protocol.check_signed_message(r["headers"], r["body"], both, T0 // S)
        nid = json.loads(r["body"])["id"]
        serial_by_id.setdefault(nid, set()).add(r["headers"]["Wechatpay-Serial"])
    assert all(len(s) == 1 for s in serial_by_id.values())  # a re-delivery keeps its key
    public = {nid for nid, s in serial_by_id.items() if sb.signer.public_key.serial in s}
    assert public == {nid for nid in ids if envelope.public_key_share(nid) < ratio}
    if ratio == 0.3:
        assert 0.15 < len(public) / len(ids) < 0.45


def test_build_hooks_see_both_stages_and_may_force_a_serial(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    seen = []

    def hook(delivery, stage):
        seen.append((stage, bool(delivery.body), delivery.attempt))
        if stage == "plaintext":
            delivery.sign_serial = sb.signer.public_key.serial
            delivery.plaintext["attach"] = "bent"

    sb.hooks.build.append(hook)
    with Receiver() as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        d.drain()
        sb.hooks.build.remove(hook)
        sb.hooks.build.append(lambda dl, stage: stage == "plaintext" and setattr(
            dl, "sign_serial", "0123456789ABCDEF"))
        d.redeliver(nid)
    assert seen == [("plaintext", False, 1), ("signed", True, 1)]
    forced, unknown = (r["headers"] for r in rx.requests)
    assert forced["Wechatpay-Serial"] == sb.signer.public_key.serial
    plain = json.loads(protocol.decrypt_resource(
        m.apiv3_key.encode(), json.loads(rx.requests[0]["body"])["resource"]))
    assert plain["attach"] == "bent"
    assert unknown["Wechatpay-Serial"] == "0123456789ABCDEF"  # a serial the merchant can't map
    with pytest.raises(protocol.SignatureRejected, match="unknown-serial"):
        protocol.check_signed_message(
            unknown, rx.requests[1]["body"],
            {k.serial.upper(): k.public_key for k in sb.signer.keys}, T0 // S)


def test_send_hooks_drop_duplicate_and_hold(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    plan = {}

    def send_hook(delivery):
        effect = plan.get(delivery.notification_id)
        if effect == "drop":
            delivery.copies, delivery.fault = 0, "drop_callback"
        elif effect in ("dup", "dup_concurrent"):
            delivery.copies, delivery.concurrent = 3, effect == "dup_concurrent"
            delivery.fault, delivery.scenario_id = "duplicate_callback", "S1"
        elif effect == "hold":
            delivery.hold_us, delivery.fault = 600 * S, "delay_callback"
        plan.pop(delivery.notification_id, None)  # each fault bends one attempt

    sb.hooks.send.append(send_hook)
    with Receiver() as rx:
        ids = {effect: enqueue(sb, m.mchid, rx.url)
               for effect in ("drop", "dup", "dup_concurrent", "hold")}
        plan.update({nid: effect for effect, nid in ids.items()})
        counts = d.drain()
        assert counts["held"] == 1 and counts["delivered"] == 2 and counts["pending"] == 1
        by_id = {}
        for nid in rx.ids():
            by_id[nid] = by_id.get(nid, 0) + 1
        assert by_id == {ids["dup"]: 3, ids["dup_concurrent"]: 3}
        dropped = attempts_of(sb, ids["drop"])
        assert [(a.status_code, a.error, a.fault) for a in dropped] == \
            [(None, "dropped", "drop_callback")]
        assert row_of(sb, ids["drop"]).next_attempt_us == T0 + 15 * S
        assert [a.fault for a in attempts_of(sb, ids["dup"])] == ["duplicate_callback"] * 3
        held = row_of(sb, ids["hold"])
        assert (held.status, held.attempts, held.next_attempt_us) == \
            ("PENDING", 0, T0 + 600 * S)
        assert attempts_of(sb, ids["hold"])[0].error.startswith("held")
        sb.clock.shift(600 * S)
        d.drain()
    assert row_of(sb, ids["hold"]).status == "DELIVERED"
    assert row_of(sb, ids["drop"]).status == "DELIVERED"
    copies = [r for r in rx.requests if json.loads(r["body"])["id"] == ids["dup"]]
    assert len({r["body"] for r in copies}) == 1  # true duplicates: the same bytes
