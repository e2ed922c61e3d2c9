"""The callback, state, business and go-live judges on handcrafted evidence (the builders are
in test_scenarios_judges)."""

from __future__ import annotations

import pytest
from test_scenarios_judges import (
    NUMBER,
    PAID,
    PAYING,
    Evidence,
    Story,
    failing,
    fault,
    notification,
    run_judge,
    verdict,
)

from fault_scenarios.judges import JUDGES

# ---------------------------------------------------------------- callbacks (12-23)


def bent_callback(answer: int) -> Evidence:
    s = Story([fault("callback_probe_signature")])
    s.step("confirm", state="IN_SERVICE")
    return s.end("PAID", PAID, charged=350, notifications=[
        notification("PAYSCORE.USER_CONFIRM", (answer, "callback_probe_signature"),
                     (204, None))])


def test_callback_refused():
    params = {"effect": "callback_probe_signature", "event": "PAYSCORE.USER_CONFIRM"}
    assert verdict("callback_refused", bent_callback(401), **params) == "pass"
    assert failing("callback_refused", bent_callback(204), **params) == [
        "callback_probe_signature refused"]


def test_a_replay_is_judged_on_the_replayed_notification_only():
    s = Story([fault("callback_replay", state={"captured": {"notification_id": "old"}})])
    s.step("finish", state="PAID")
    carrier = notification("PAYSCORE.USER_PAID", (204, "callback_replay"), nid="new")
    replayed = notification("PAYSCORE.USER_CONFIRM", (204, None), (401, "callback_replay"),
                            nid="old")
    ev = s.end("PAID", PAID, charged=350, notifications=[replayed, carrier])
    assert verdict("callback_refused", ev, effect="callback_replay") == "pass"
    replayed["attempt_log"][1]["status_code"] = 204
    assert failing("callback_refused", ev, effect="callback_replay") == [
        "callback_replay refused"]


def test_a_late_callback_must_not_take_the_rental_back():
    s = Story([fault("callback_reorder")])
    s.step("settle", state="PAID", charged=350, order=PAID)
    s.step("settle", state="IN_SERVICE", charged=350, order=PAID)
    ev = s.end("IN_SERVICE", PAID, charged=350, notifications=[
        notification("PAYSCORE.USER_CONFIRM", (204, "callback_reorder"))])
    assert set(failing("in_order", ev)) == {"never went backwards", "final state consistent"}


def test_key_rollover_needs_every_callback_under_the_new_key_accepted():
    def story(answer: int, downloads: int = 1) -> Evidence:
        s = Story([fault("rotated_serial", state={"serial": "NEWSERIAL"})])
        s.step("rent", *[s.req("download_certificates", number=None)
                         for _ in range(downloads)], state="PENDING_CONFIRM")
        return s.end("PAID", PAID, charged=350, notifications=[
            notification("PAYSCORE.USER_PAID", (answer, None), serial="newserial")])

    assert verdict("key_rollover", story(204), rotated=True) == "pass"
    assert failing("key_rollover", story(401), rotated=True) == [
        "callbacks under NEWSERIAL accepted"]
    assert failing("key_rollover", story(204, downloads=9), rotated=True) == [
        "bounded key refresh"]
    assert verdict("key_rollover", story(204), prefix="PUB_KEY_ID_") == "error"


def test_callbacks_once_reads_the_applied_counter():
    def story(applied: int | None) -> Evidence:
        s = Story([fault("callback_duplicate")])
        s.step("settle", state="PAID", charged=350, order=PAID)
        extra = {} if applied is None else {"callbacks": applied}
        return s.end("PAID", PAID, charged=350, notifications=[notification(
            "PAYSCORE.USER_PAID", (204, "callback_duplicate"), (204, "callback_duplicate"))],
            **extra)

    assert verdict("callbacks_once", story(1), effect="callback_duplicate") == "pass"
    assert failing("callbacks_once", story(2), effect="callback_duplicate") == [
        "each callback applied once"]
    result = run_judge("callbacks_once", story(None), {"effect": "callback_duplicate"})
    assert result.status == "pass" and any(c.status == "info" for c in result.checks)


def test_late_callbacks_snapshot_and_final_state():
    def story(then: str, final: str) -> Evidence:
        s = Story([fault("callback_delay")])
        s.step("reconcile", s.req("query_service_order"), state=then,
               charged=350 if then == "PAID" else 0, order=PAID)
        s.step("snapshot", state=then, charged=350 if then == "PAID" else 0, order=PAID,
               label="before")
        return s.end(final, PAID, charged=350 if final == "PAID" else 0)

    assert verdict("late_callbacks", story("PAID", "PAID"), snapshot="before",
                   expect_then="PAID") == "pass"
    assert failing("late_callbacks", story("AWAITING_PAYMENT", "AWAITING_PAYMENT"),
                   snapshot="before", expect_then="PAID") == [
        "at 'before'", "final state consistent"]


def test_mismatched_amount_applied_fails():
    s = Story([fault("callback_mismatched_content")])
    s.step("settle", state="PAID", charged=351, order=PAID)
    assert "never counted money not collected" in failing(
        "mismatch", s.end("PAID", PAID, charged=351))


# ---------------------------------------------------------------- state and business (24-28)


def test_finish_waits_fails_a_complete_loop():
    def story(loops: int) -> Evidence:
        s = Story()
        rows = [s.req("complete_service_order", 400, code="INVALID_REQUEST")
                for _ in range(loops)]
        s.step("finish", *rows, state="PENDING_CONFIRM")
        return s.end("PAID", {**PAID, "total_amount": 300, "paid_amount": 300}, charged=300)

    assert verdict("finish_waits", story(1), amount=300) == "pass"
    assert failing("finish_waits", story(20), amount=300) == [
        "complete_service_order per finish ≤ 2"]


def test_expiry_needs_the_device_back():
    expired = {"out_order_no": NUMBER, "state": "EXPIRED", "paid_amount": 0}
    ev = Story().end("EXPIRED", expired)
    assert verdict("expiry", ev) == "pass"
    ev.rentals[0]["device_released"] = False
    assert failing("expiry", ev) == ["device released"]


def test_billed_once_fails_a_refused_second_complete():
    s = Story([fault("reset_after_commit")])
    s.step("finish", s.req("complete_service_order", 444, "reset_after_commit"),
           s.req("complete_service_order", 400, code="INVALID_REQUEST"), state="UNKNOWN")
    assert failing("billed_once", s.end("PAID", PAID, charged=350), amount=350) == [
        "no second, different complete"]


def test_long_deduction_must_be_chased_once_pending():
    def story(chased: bool, then: str = "AWAITING_PAYMENT") -> Evidence:
        s = Story([fault("callback_drop")])
        s.step("finish", s.req("complete_service_order"), state="AWAITING_PAYMENT",
               order=PAYING)
        s.step("advance", state="AWAITING_PAYMENT", order=PAYING, by="25h")
        s.step("snapshot", state=then, order=PAYING, label="pending")
        rows = [s.req("pay_service_order"), s.req("query_service_order")] if chased else []
        s.step("reconcile", *rows, state="PAID" if chased else "AWAITING_PAYMENT",
               charged=350 if chased else 0, order=PAID)
        return s.end("PAID" if chased else "AWAITING_PAYMENT", PAID,
                     charged=350 if chased else 0)

    assert verdict("long_deduction", story(True), snapshot="pending", amount=350) == "pass"
    assert set(failing("long_deduction", story(False), snapshot="pending", amount=350)) == {
        "chased the pending deduction", "final state consistent"}
    assert failing("long_deduction", story(True, then="CANCELLED"), snapshot="pending",
                   amount=350) == ["order kept while pending"]


def test_deposit_fallback_once():
    def story(state: str, creates: int) -> Evidence:
        s = Story()
        s.step("rent", *[s.req("create_service_order", 400, code="INVALID_REQUEST",
                               number="X") for _ in range(creates)], state=state)
        return s.end(state, None)

    assert verdict("deposit_fallback", story("DEPOSIT_FALLBACK", 1)) == "pass"
    assert failing("deposit_fallback", story("FAILED", 1)) == ["deposit fallback"]
    assert failing("deposit_fallback", story("DEPOSIT_FALLBACK", 6)) == ["asked once"]


def test_breaker_counts_requests_reaching_the_failing_provider():
    def story(reached: int, recovered: bool = True) -> Evidence:
        s = Story([fault("outage", taken=reached)])
        s.step("rent_burst", *[s.req("create_service_order", 503, "outage")
                               for _ in range(reached)], state="FAILED", status=201,
               answer=[{}] * 6)
        s.step("disarm")
        s.step("await_recovery", *([s.req("create_service_order")] if recovered else []),
               state="PENDING_CONFIRM" if recovered else "FAILED",
               answer={"recovered": recovered, "waited_s": 1.5, "attempts": 3})
        s.step("rent", s.req("create_service_order"), state="PENDING_CONFIRM", status=201)
        return s.end("PENDING_CONFIRM", {"out_order_no": NUMBER, "state": "CREATED"})

    assert verdict("breaker", story(5)) == "pass"
    assert failing("breaker", story(36)) == ["opened within a bounded number of failures"]
    assert failing("breaker", story(5, recovered=False)) == ["probed and closed after recovery"]


def test_every_judge_is_exercised_here():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__]) + inspect.getsource(
        sys.modules["test_scenarios_judges"])
    assert all(f'"{name}"' in source for name in JUDGES), sorted(
        n for n in JUDGES if f'"{n}"' not in source)


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_judges_document_how_they_decide(name):
    assert (JUDGES[name].__doc__ or "").strip(), name
