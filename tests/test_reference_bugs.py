"""Each bug switch of the reference merchant really changes its behaviour (one quick test each).

Where the correct behaviour is not already asserted in test_reference_merchant.py, the same
steps run against a correct merchant too, so each test shows the difference. The fault
scenarios prove that their judges catch these bugs; this only proves the switches are real.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import g, request
from reference_support import DEAD_URL, Driver, failing_gateway
from sqlalchemy import select, update

from merchant_kit import protocol
from merchant_kit.reference import BUGS, LiveMerchant
from merchant_kit.reference.bugs import validate
from sandbox import db, errors

USER = "o_magic_never_confirms"


def callback(d: Driver, event_type: str, resource: dict, *, ts: int | None = None,
             signature: str | None = None, nid: str | None = None) -> tuple[dict, bytes]:
    """A callback as WeChat would send it, signed with the sandbox's platform certificate."""
    cfg = d.m.merchant.config
    nonce = protocol.make_aead_nonce()
    envelope = {"id": nid or str(uuid.uuid4()), "create_time": "2026-01-01T00:00:00+08:00",
                "event_type": event_type, "resource_type": "encrypt-resource", "summary": "x",
                "resource": protocol.encrypt_resource(
                    cfg.apiv3_key, json.dumps(resource).encode(), "payscore", nonce,
                    "payscore")}
    body = json.dumps(envelope).encode()
    key = d.live.sandbox.signer.certificate
    now = ts if ts is not None else int(d.control("GET", "/clock")["now_us"] // 1_000_000)
    headers = protocol.sign_response(key.private_key, key.serial, body, now,
                                     protocol.make_hex_nonce())
    if signature is not None:
        headers["Wechatpay-Signature"] = signature
    return {**headers, "Content-Type": "application/json"}, body


def confirmed(d: Driver, number: str, **extra: Any) -> dict:
    cfg = d.m.merchant.config
    return {"out_order_no": number, "appid": cfg.appid, "mchid": cfg.mchid,
            "service_id": cfg.service_id, "openid": USER, "state": "DOING",
            "state_description": "USER_CONFIRM", **extra}


def deliver(d: Driver, headers: dict, body: bytes) -> int:
    return requests.post(d.m.url + "/payscore/notify", data=body, headers=headers,
                         timeout=30).status_code


def both(make_driver, bug: str, **config: Any) -> tuple[Driver, Driver]:
    return make_driver(**config), make_driver((bug,), **config)


def count(d: Driver, operation: str, distinct_orders: bool = False) -> int:
    rl = db.request_log.c
    with d.live.sandbox.engine.connect() as conn:
        rows = conn.execute(select(rl.out_order_no).where(
            rl.mchid == d.mchid, rl.operation == operation)).scalars().all()
    return len(set(rows)) if distinct_orders else len(rows)


def failing_creates(armed: list[bool]):
    """A `before` hook: while armed, create answers 500 without doing anything."""
    def hook():
        if armed[0] and request.path == "/v3/payscore/serviceorder" and request.method == "POST":
            raise errors.SystemError_()
    return hook


def test_every_bug_is_documented_and_unknown_names_fail_at_start(make_driver):
    assert len(BUGS) == 21 and all(text.strip() for text in BUGS.values())
    with pytest.raises(ValueError, match="no_such_bug"):
        validate(["no_dedupe", "no_such_bug"])
    assert validate("no_dedupe, no_breaker") == {"no_dedupe", "no_breaker"}
    with pytest.raises(ValueError, match="unknown bug"):
        make_driver(("retry_everything",))


@pytest.mark.parametrize("bug, forge", [
    ("no_callback_signature_check", {"signature": protocol.make_probe_signature()}),
    ("no_callback_timestamp_check", {"ts": int(time.time()) - 3600}),
])
def test_callback_authenticity_bugs_accept_what_the_kit_refuses(make_driver, bug, forge):
    for d, wanted in zip(both(make_driver, bug), ((401, "PENDING_CONFIRM"), (204, "IN_SERVICE")),
                         strict=True):
        rental = d.rent(USER)
        if "ts" in forge:  # an hour older than the sandbox clock, whatever it says
            forge = {"ts": int(d.control("GET", "/clock")["now_us"] // 1_000_000) - 3600}
        status = deliver(d, *callback(d, "PAYSCORE.USER_CONFIRM",
                                      confirmed(d, rental["out_order_no"]), **forge))
        assert (status, d.get(rental["rental_id"])["merchant_state"]) == wanted


def test_no_dedupe_applies_a_duplicate_twice(make_driver):
    for d, applied in zip(both(make_driver, "no_dedupe"), (1, 2), strict=True):
        rental = d.rent(USER)
        delivery = callback(d, "PAYSCORE.USER_CONFIRM", confirmed(d, rental["out_order_no"]))
        assert deliver(d, *delivery) == deliver(d, *delivery) == 204
        assert d.get(rental["rental_id"])["callbacks"] == applied


def test_in_memory_dedupe_forgets_across_a_restart(make_driver, tmp_path, live):
    for bugs, applied in (((), 1), (("in_memory_dedupe",), 2)):
        d = make_driver(bugs)
        rental = d.rent(USER)
        delivery = callback(d, "PAYSCORE.USER_CONFIRM", confirmed(d, rental["out_order_no"]))
        assert deliver(d, *delivery) == 204
        keep = {k: d.m.app.config[k] for k in ("MERCHANT_JSON", "DATA_DIR", "ENABLE_DRIVER",
                                                "RECONCILE_INTERVAL", "CLOCK_URL", "BUGS")}
        d.m.stop()
        restarted = LiveMerchant(keep).start()
        try:
            d2 = Driver(restarted, live, d.mchid)
            assert deliver(d2, *delivery) == 204  # WeChat retried: our answer was lost
            assert d2.get(rental["rental_id"])["callbacks"] == applied
        finally:
            restarted.stop()


def test_trust_unsigned_replies_takes_an_unsigned_2xx_as_truth(make_driver, hooks):
    armed = [True]

    def unsigned(response):
        if armed[0] and request.path.startswith("/v3/"):
            g.skip_signing = True
        return response

    hooks.after.append(unsigned)
    correct, buggy = both(make_driver, "trust_unsigned_replies")
    assert correct.rent(USER)["merchant_state"] == "UNKNOWN"
    assert buggy.rent(USER)["merchant_state"] == "PENDING_CONFIRM"


def test_blind_retry_new_order_no_creates_under_new_numbers(make_driver, hooks):
    armed = [True]
    hooks.before.append(failing_creates(armed))
    correct, buggy = both(make_driver, "blind_retry_new_order_no", BREAKER_FAIL_MAX=1000)
    assert correct.rent(USER)["merchant_state"] == "UNKNOWN"
    buggy.rent(USER)
    assert count(correct, "create_service_order", distinct_orders=True) == 1
    assert count(buggy, "create_service_order", distinct_orders=True) == 4


def test_retry_business_errors_repeats_a_refusal(make_driver):
    d = make_driver(("retry_business_errors",))
    assert d.rent("o_magic_not_real_name")["merchant_state"] == "DEPOSIT_FALLBACK"
    assert count(d, "create_service_order") == 6  # the correct merchant sends one


def test_no_backoff_hammers_a_failing_provider(make_driver, hooks):
    hooks.before.append(failing_creates([True]))
    correct, buggy = both(make_driver, "no_backoff", BREAKER_FAIL_MAX=1000)
    correct.rent(USER)
    buggy.rent(USER)
    assert count(correct, "create_service_order") <= 6
    assert count(buggy, "create_service_order") >= 20


def test_no_breaker_keeps_calling_a_failing_provider(make_driver, hooks):
    hooks.before.append(failing_creates([True]))
    correct, buggy = both(make_driver, "no_breaker")
    for d in (correct, buggy):
        for _ in range(2):
            d.rent(USER)
    assert correct.call("GET", "/health")["provider"]["breaker"]["state"] == "open"
    assert buggy.call("GET", "/health")["provider"]["breaker"]["state"] == "closed"
    assert count(buggy, "create_service_order") > count(correct, "create_service_order")


def test_no_key_refresh_cannot_follow_a_new_platform_certificate(make_driver, tmp_path, live):
    # The merchant went live with a certificate WeChat has since replaced (its serial is gone).
    retired = protocol.make_certificate(protocol.generate_private_key(), "retired platform",
                                        12345, dt.datetime.now(dt.UTC))
    pem = tmp_path / "retired.pem"
    pem.write_bytes(protocol.certificate_pem(retired))
    results = []
    for bugs in ((), ("no_key_refresh",)):
        d = make_driver(bugs)
        source = Path(d.m.app.config["MERCHANT_JSON"])
        info = json.loads(source.read_text())
        info.update(private_key_path=str(source.parent / info["private_key_path"]),
                    platform_certificate_path=str(pem), platform_public_key_path=None,
                    platform_serial_no=protocol.certificate_serial(retired),
                    platform_public_key_id=None)
        stale_json = tmp_path / f"stale_{len(results)}.json"
        stale_json.write_text(json.dumps(info))
        d.m.stop()
        keep = {k: d.m.app.config[k] for k in ("DATA_DIR", "ENABLE_DRIVER",
                                                "RECONCILE_INTERVAL", "CLOCK_URL", "BUGS")}
        stale = LiveMerchant({**keep, "MERCHANT_JSON": str(stale_json)}).start()
        try:
            results.append(Driver(stale, live, d.mchid).rent(USER)["merchant_state"])
        finally:
            stale.stop()
    assert results == ["PENDING_CONFIRM", "UNKNOWN"]


def test_certificate_only_rejects_public_key_signed_replies(make_driver):
    correct, buggy = both(make_driver, "certificate_only")
    with correct.live.sandbox.engine.begin() as conn:
        conn.execute(update(db.merchants).where(db.merchants.c.mchid.in_(
            (correct.mchid, buggy.mchid))).values(signing_mode="public_key"))
    assert correct.rent(USER)["merchant_state"] == "PENDING_CONFIRM"
    assert buggy.rent(USER)["merchant_state"] == "UNKNOWN"


def test_ignore_amount_mismatch_applies_a_paid_notice_we_never_billed(make_driver):
    for d, wanted in zip(both(make_driver, "ignore_amount_mismatch"),
                         (("PENDING_CONFIRM", 0), ("PAID", 99999)), strict=True):
        rental = d.rent(USER)
        paid = confirmed(d, rental["out_order_no"], state="DONE", total_amount=99999,
                         collection={"state": "USER_PAID", "total_amount": 99999,
                                     "paid_amount": 99999, "paying_amount": 0})
        paid.pop("state_description")
        assert deliver(d, *callback(d, "PAYSCORE.USER_PAID", paid)) == 204
        view = d.get(rental["rental_id"])
        assert (view["merchant_state"], view["charged"]) == wanted


def test_strict_parsing_crashes_on_a_new_field(make_driver):
    for d, wanted in zip(both(make_driver, "strict_parsing"),
                         ((204, "IN_SERVICE"), (500, "PENDING_CONFIRM")), strict=True):
        rental = d.rent(USER)
        status = deliver(d, *callback(d, "PAYSCORE.USER_CONFIRM", confirmed(
            d, rental["out_order_no"], brand_new_field={"x": 1})))
        assert (status, d.get(rental["rental_id"])["merchant_state"]) == wanted


def test_complete_retry_loop_hammers_an_unconfirmed_order(make_driver):
    d = make_driver(("complete_retry_loop",))
    rental = d.rent(USER)
    d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 100})
    assert count(d, "complete_service_order") == 21  # the correct merchant sends one


def test_no_deposit_fallback_fails_the_ineligible_user(make_driver):
    d = make_driver(("no_deposit_fallback",))
    assert d.rent("o_magic_not_real_name")["merchant_state"] == "FAILED"


def test_recomplete_on_lost_reply_sends_a_different_bill(make_driver, hooks):
    bodies: list[int] = []

    def record():
        if request.path.endswith("/complete"):
            bodies.append(json.loads(request.get_data(cache=True))["total_amount"])

    armed = [False]
    hooks.before.append(record)
    hooks.after.append(failing_gateway(armed))
    for bugs, totals in (((), {240}), (("recomplete_on_lost_reply",), {240, 340})):
        bodies.clear()
        d = make_driver(bugs, BREAKER_FAIL_MAX=1000)
        rental = d.rent("o_magic_insufficient_balance")
        d.confirm(rental["out_order_no"], "o_magic_insufficient_balance")
        d.wait(rental["rental_id"], "IN_SERVICE")
        armed[0] = True
        d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 240})
        armed[0] = False
        assert set(bodies) == totals


def test_accept_out_of_order_regresses_a_paid_rental(make_driver, hooks):
    def drop_first_confirm(delivery):
        if delivery.event_type == "PAYSCORE.USER_CONFIRM" and delivery.attempt == 1:
            delivery.copies = 0

    hooks.send.append(drop_first_confirm)
    d = make_driver(("accept_out_of_order",))
    rental = d.rent(USER)
    d.confirm(rental["out_order_no"], USER)
    d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 180})
    d.wait(rental["rental_id"], "PAID")
    d.control("POST", "/clock/advance", {"by": "1m"})
    d.control("POST", "/notifications/drain", {})
    assert d.wait(rental["rental_id"], "IN_SERVICE")["charged"] == 180


@pytest.mark.parametrize("bug", ["no_pay_sync_path", "no_reconciliation"])
def test_reconciliation_bugs_leave_a_lost_payment_unseen(make_driver, bug):
    d = make_driver((bug,))
    rental = d.rent(USER, notify_url=DEAD_URL)
    d.confirm(rental["out_order_no"], USER)
    d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 420})
    d.wait_order(rental["out_order_no"], "DONE")
    d.call("POST", "/reconcile")
    assert d.get(rental["rental_id"])["merchant_state"] == "AWAITING_PAYMENT"
