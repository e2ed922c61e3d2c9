"""The reference merchant through its driver API, against a live sandbox over real HTTP.

Callbacks are delivered by the sandbox's dispatcher to the merchant's real /payscore/notify;
users are played by the sandbox's control API; time moves only by advancing the sandbox clock
(waits below are bounded wall-time polls for asynchronous deliveries, never business time).
"""

from __future__ import annotations

import time
from pathlib import Path

import requests
import yaml
from reference_support import DEAD_URL, failing_gateway
from sqlalchemy import func, select

from merchant_kit.reference import MERCHANT_STATES
from sandbox import db

SPEC = Path(__file__).parents[1] / "merchant_kit" / "reference" / "driver-openapi.yaml"


# ---------------------------------------------------------------------- life cycles


def test_need_confirm_life_cycle_with_callbacks_and_refund(make_driver):
    d = make_driver()
    rental = d.rent("o_magic_never_confirms")
    rid, number = rental["rental_id"], rental["out_order_no"]
    assert rental["merchant_state"] == "PENDING_CONFIRM" and number
    assert rental["device_released"] is False and d.order(number).state == "CREATED"
    d.confirm(number, "o_magic_never_confirms")  # the dispatcher posts USER_CONFIRM to us
    assert d.wait(rid, "IN_SERVICE")["device_released"] is False
    finished = d.call("POST", f"/rentals/{rid}/finish", {"amount": 350})
    assert finished["merchant_state"] in ("AWAITING_PAYMENT", "PAID")
    assert finished["device_released"] is True
    paid = d.wait(rid, "PAID")  # the world deducts, USER_PAID reaches us
    assert paid["charged"] == 350 == d.order(number).paid_amount
    # The same finish again is the same answer; another amount is refused.
    assert d.call("POST", f"/rentals/{rid}/finish", {"amount": 350})["merchant_state"] == "PAID"
    assert d.call("POST", f"/rentals/{rid}/finish", {"amount": 1},
                  status=409)["error"] == "ALREADY_FINISHED"
    refund = d.call("POST", f"/rentals/{rid}/refund", {"amount": 100})
    assert refund["refunded"] == 100 and refund["refunds"][0]["status"] == "PROCESSING"
    number_r = refund["refunds"][0]["out_refund_no"]
    d.control("POST", f"/merchants/{d.mchid}/refunds/{number_r}/settle", {"status": "SUCCESS"})
    done = d.wait(rid, "PAID", until=lambda v: v["refunds"][0]["status"] == "SUCCESS")
    assert done["callbacks"] == 3  # USER_CONFIRM, USER_PAID, REFUND.SUCCESS: once each
    assert d.call("POST", f"/rentals/{rid}/refund", {"amount": 251},
                  status=400)["error"] == "AMOUNT_EXCEEDS_CHARGED"
    assert d.call("POST", f"/rentals/{rid}/cancel", {}, status=409)["error"] == "CANNOT_CANCEL"


def test_pre_authorised_rental_and_unauthorised_user(make_driver):
    d = make_driver()
    user = "o_ref_preauth_user"
    d.control("POST", f"/merchants/{d.mchid}/permissions/authorize", {"openid": user})
    rental = d.rent(user, mode="pre_authorised")
    assert rental["merchant_state"] == "IN_SERVICE"  # no confirmation step
    assert d.order(rental["out_order_no"]).state == "DOING"
    d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 200})
    assert d.wait(rental["rental_id"], "PAID")["charged"] == 200
    # A user who never authorised the service falls back like an ineligible one.
    other = d.rent("o_ref_never_authorised", mode="pre_authorised")
    assert other["merchant_state"] == "DEPOSIT_FALLBACK" and other["out_order_no"] is None
    assert other["device_released"] is True
    assert d.requests_for("create_service_order") == 1


def test_ineligible_user_gets_deposit_fallback_without_retries(make_driver):
    d = make_driver()
    rental = d.rent("o_magic_not_real_name")
    assert rental["merchant_state"] == "DEPOSIT_FALLBACK"
    assert rental["out_order_no"] is None and rental["device_released"] is True
    assert rental["last_error"]["message"] == "综合评估未通过"
    assert d.requests_for("create_service_order") == 1
    assert d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 1},
                  status=409)["error"] == "NOT_IN_SERVICE"


def test_expired_order_releases_the_device(make_driver):
    d, careless = make_driver(), make_driver(("no_expiry_release",))
    rental, kept = d.rent("o_magic_never_confirms"), careless.rent("o_magic_never_confirms")
    d.control("POST", "/clock/advance", {"by": "31d"})
    assert d.order(rental["out_order_no"]).state == "EXPIRED"
    assert d.call("POST", "/reconcile")["changed"] == 1
    view = d.get(rental["rental_id"])
    assert view["merchant_state"] == "EXPIRED" and view["device_released"] is True
    assert d.call("POST", "/reconcile") == {"checked": 0, "changed": 0}  # nothing open left
    # The bug switch no_expiry_release: the same expiry, the device stays out.
    careless.call("POST", "/reconcile")
    view = careless.get(kept["rental_id"])
    assert view["merchant_state"] == "EXPIRED" and view["device_released"] is False


def test_reconciliation_finds_a_paid_order_whose_callbacks_were_lost(make_driver):
    d = make_driver()
    rental = d.rent("o_magic_never_confirms", notify_url=DEAD_URL)
    rid, number = rental["rental_id"], rental["out_order_no"]
    d.confirm(number, "o_magic_never_confirms")  # USER_CONFIRM is lost
    assert d.get(rid)["merchant_state"] == "PENDING_CONFIRM"
    d.call("POST", f"/rentals/{rid}/finish", {"amount": 420})  # provider is DOING: completes
    d.wait_order(number, "DONE")  # paid at WeChat; USER_PAID is lost too
    assert d.get(rid)["merchant_state"] == "AWAITING_PAYMENT"
    assert d.call("POST", "/reconcile") == {"checked": 1, "changed": 1}
    view = d.get(rid)
    assert view["merchant_state"] == "PAID" and view["charged"] == 420
    assert view["callbacks"] == 0


def test_finish_before_confirmation_is_kept_pending_then_completed(make_driver):
    d = make_driver()
    rental = d.rent("o_magic_never_confirms")
    rid, number = rental["rental_id"], rental["out_order_no"]
    pending = d.call("POST", f"/rentals/{rid}/finish", {"amount": 300})
    assert pending["merchant_state"] == "PENDING_CONFIRM" and pending["finish_pending"] is True
    assert d.requests_for("complete_service_order") == 1  # tried once, no loop
    d.confirm(number, "o_magic_never_confirms")  # USER_CONFIRM -> complete right after
    assert d.wait(rid, "AWAITING_PAYMENT", "PAID")["finish_pending"] is False
    assert d.order(number).total_amount == 300
    # The same through reconciliation, when the confirmation's callback is lost.
    late = d.rent("o_magic_never_confirms", notify_url=DEAD_URL)
    d.call("POST", f"/rentals/{late['rental_id']}/finish", {"amount": 310})
    d.confirm(late["out_order_no"], "o_magic_never_confirms")
    d.call("POST", "/reconcile")
    assert d.get(late["rental_id"])["merchant_state"] in ("AWAITING_PAYMENT", "PAID")
    assert d.order(late["out_order_no"]).total_amount == 310


def test_unknown_outcomes_are_resolved_by_query_never_a_new_number(make_driver, hooks):
    d = make_driver(BREAKER_FAIL_MAX=50)  # the default breaker would open on these 502s
    user = "o_magic_insufficient_balance"  # never pays: no USER_PAID settles it for us
    armed = [True]
    hooks.after.append(failing_gateway(armed))
    rental = d.rent(user)  # applied at WeChat, every answer (and the kit's query) lost
    rid, number = rental["rental_id"], rental["out_order_no"]
    assert rental["merchant_state"] == "UNKNOWN" and number
    armed[0] = False
    d.call("POST", "/reconcile")
    assert d.get(rid)["merchant_state"] == "PENDING_CONFIRM"
    d.confirm(number, user)
    d.wait(rid, "IN_SERVICE")
    armed[0] = True
    view = d.call("POST", f"/rentals/{rid}/finish", {"amount": 250})
    assert view["merchant_state"] == "UNKNOWN" and view["unknown_op"] == "complete"
    armed[0] = False
    assert d.call("POST", "/reconcile")["changed"] == 1
    view = d.get(rid)
    assert view["merchant_state"] == "AWAITING_PAYMENT" and view["out_order_no"] == number
    with d.live.sandbox.engine.connect() as conn:
        mine = conn.execute(select(func.count()).where(db.orders.c.mchid == d.mchid))
        assert mine.scalar_one() == 1  # one rental, one order number, ever
    assert d.order(number).total_amount == 250


def test_user_paid_before_user_confirm_ends_paid(make_driver, hooks):
    dropped: list[str] = []

    def drop_first_confirm(delivery):
        if delivery.event_type == "PAYSCORE.USER_CONFIRM" and delivery.attempt == 1:
            delivery.copies = 0
            dropped.append(delivery.notification_id)

    hooks.send.append(drop_first_confirm)
    d = make_driver()
    rental = d.rent("o_magic_never_confirms")
    rid = rental["rental_id"]
    d.confirm(rental["out_order_no"], "o_magic_never_confirms")
    d.call("POST", f"/rentals/{rid}/finish", {"amount": 180})
    assert d.wait(rid, "PAID")["callbacks"] == 1  # USER_PAID came first
    assert dropped
    d.control("POST", "/clock/advance", {"by": "1m"})  # the USER_CONFIRM retry falls due
    d.control("POST", "/notifications/drain", {})
    view = d.wait(rid, "PAID", until=lambda v: v["callbacks"] == 2)
    assert view["merchant_state"] == "PAID" and view["charged"] == 180


def test_validly_signed_callback_with_another_amount_is_not_applied(make_driver, hooks):
    def tamper(delivery, stage):
        if stage == "plaintext" and delivery.event_type == "PAYSCORE.USER_PAID":
            delivery.plaintext["total_amount"] = 99999
            delivery.plaintext["collection"]["paid_amount"] = 99999

    hooks.build.append(tamper)
    d = make_driver()
    user = "o_ref_mismatch_user"
    d.control("POST", f"/merchants/{d.mchid}/permissions/authorize", {"openid": user})
    rental = d.rent(user, mode="pre_authorised")
    d.call("POST", f"/rentals/{rental['rental_id']}/finish", {"amount": 500})
    d.wait_order(rental["out_order_no"], "DONE")
    events = d.call("GET", f"/rentals/{rental['rental_id']}/timeline")["events"]
    deadline = time.monotonic() + 15
    while not any(e["kind"] == "callback_ignored" for e in events):
        assert time.monotonic() < deadline, events
        time.sleep(0.05)
        events = d.call("GET", f"/rentals/{rental['rental_id']}/timeline")["events"]
    assert d.get(rental["rental_id"])["merchant_state"] == "AWAITING_PAYMENT"
    d.call("POST", "/reconcile")  # the truth comes from a query
    view = d.get(rental["rental_id"])
    assert view["merchant_state"] == "PAID" and view["charged"] == 500


# ---------------------------------------------------------------------- the driver contract


def test_driver_openapi_routes_exist_and_documented_fields_are_returned(make_driver):
    spec = yaml.safe_load(SPEC.read_text())
    d = make_driver()
    rules = {(r.rule, m) for r in d.m.app.url_map.iter_rules() for m in r.methods or ()}
    for path, ops in spec["paths"].items():
        for method in ops:
            assert (path.replace("{", "<").replace("}", ">"), method.upper()) in rules, path
    schemas = spec["components"]["schemas"]
    rental = d.rent("o_magic_never_confirms")
    answers = {
        "Health": d.call("GET", "/health"),
        "Rental": d.get(rental["rental_id"]),
        "Timeline": d.call("GET", f"/rentals/{rental['rental_id']}/timeline"),
        "ReconcileResult": d.call("POST", "/reconcile"),
        "Error": d.call("GET", "/rentals/424242", status=404),
    }
    for name, answer in answers.items():
        documented = set(schemas[name]["properties"])
        assert documented <= set(answer), (name, documented - set(answer))
        assert set(schemas[name].get("required", ())) <= set(answer)
    assert set(schemas["Rental"]["properties"]["merchant_state"]["enum"]) == \
        set(MERCHANT_STATES)
    bad = d.call("POST", "/rentals", {"openid": "x", "deposit": "9900"}, status=400)
    assert set(bad) == {"error", "message"}


def test_periodic_reconciliation_runs_without_being_asked(make_driver):
    d = make_driver(RECONCILE_INTERVAL=0.2)  # the background thread, every 0.2 s
    rental = d.rent("o_magic_never_confirms", notify_url=DEAD_URL)
    d.confirm(rental["out_order_no"], "o_magic_never_confirms")  # the callback is lost
    assert d.wait(rental["rental_id"], "IN_SERVICE")["callbacks"] == 0
    assert d.call("GET", "/health")["reconciler"]["running"] is True


def test_driver_routes_exist_only_behind_the_flag(make_driver):
    d = make_driver(ENABLE_DRIVER=False)
    assert d.call("GET", "/health", status=404)["error"] == "NOT_FOUND"
    assert requests.get(d.m.url + "/healthz", timeout=10).json()["status"] == "ok"
    assert requests.post(d.m.url + "/payscore/notify", data=b"{}", timeout=10).status_code == 401

