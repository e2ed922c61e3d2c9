"""The scenario judges as pure functions, on handcrafted evidence: each passes the good story
and fails the story of the bug it exists to catch (and errs when the evidence cannot say)."""

from __future__ import annotations

from typing import Any

from fault_scenarios.evidence import Evidence, StepRecord, mirror
from fault_scenarios.judges import decide, run_judge

NUMBER = "PB00000001ABCDEF"
PAID = {"out_order_no": NUMBER, "state": "DONE", "state_description": None,
        "collection_state": "USER_PAID", "total_amount": 350, "paid_amount": 350}
PAYING = {"out_order_no": NUMBER, "state": "DOING", "state_description": "MCH_COMPLETE",
          "collection_state": "USER_PAYING", "total_amount": 350, "paid_amount": 0}
IN_SERVICE = {"out_order_no": NUMBER, "state": "DOING", "state_description": "USER_CONFIRM",
              "total_amount": None, "paid_amount": 0}


class Story:
    """Builds evidence step by step, as the runner records it."""

    def __init__(self, faults: list[dict[str, Any]] | None = None):
        self.ev = Evidence(1, "S01-test", "1900000001", "o_user")
        self.ev.faults = faults or []
        self.next_id = 1
        self.at = 1_000_000

    def req(self, operation: str, status: int = 200, fault: str | None = None,
            code: str | None = None, number: str | None = NUMBER, gap_ms: int = 10) -> dict:
        self.at += gap_ms * 1000
        row = {"id": self.next_id, "operation": operation, "status": status, "fault": fault,
               "code": code, "out_order_no": number, "at_us": self.at}
        self.next_id += 1
        return row

    def step(self, kind: str, *rows: dict, state: str | None = None, charged: int = 0,
             order: dict | None = None, status: int = 200, answer: Any = None,
             **args: Any) -> Story:
        view = None if state is None else {"rental_id": "1", "out_order_no": NUMBER,
                                           "merchant_state": state, "charged": charged,
                                           "device_released": state in ("PAID", "EXPIRED")}
        self.ev.steps.append(StepRecord(len(self.ev.steps), kind, args, status, answer, None,
                                        list(rows), view, order))
        self.ev.requests += rows
        return self

    def end(self, state: str, order: dict | None, charged: int = 0,
            notifications: list[dict] | None = None, **rental: Any) -> Evidence:
        self.ev.rentals = [{"rental_id": "1", "out_order_no": NUMBER if order else None,
                            "merchant_state": state, "charged": charged,
                            "device_released": state in ("PAID", "EXPIRED", "FAILED",
                                                         "DEPOSIT_FALLBACK"), **rental}]
        if order:
            self.ev.orders = [{"order": order, "notifications": notifications or []}]
        return self.ev


def fault(effect: str, taken: int = 1, required: bool = True, **extra: Any) -> dict:
    return {"id": 1, "effect": effect, "taken": taken, "required": required, **extra}


def notification(event: str, *answers: tuple[int | None, str | None], nid: str = "n1",
                 serial: str = "SERIAL") -> dict:
    return {"id": nid, "event_type": event, "status": "DELIVERED", "attempt_log": [
        {"status_code": code, "fault": bent, "signature_serial": serial} for code, bent in answers]}


def verdict(name: str, ev: Evidence, **params: Any) -> str:
    return run_judge(name, ev, params).status


def failing(name: str, ev: Evidence, **params: Any) -> list[str]:
    return [c.name for c in run_judge(name, ev, params).checks if c.status == "fail"]


# ---------------------------------------------------------------- building blocks


def test_mirror_maps_every_provider_state():
    assert mirror(PAID) == "PAID" and mirror(PAYING) == "AWAITING_PAYMENT"
    assert mirror(IN_SERVICE) == "IN_SERVICE" and mirror({"state": "CREATED"}) == \
        "PENDING_CONFIRM"
    assert mirror({"state": "EXPIRED", "state_description": "USER_CONFIRM"}) == "EXPIRED"
    assert mirror(None) is None


def test_decide_prefers_fail_over_error_and_never_passes_nothing():
    from fault_scenarios.checks import Check

    assert decide([]).status == "error"
    assert decide([Check("a", "pass", ""), Check("b", "error", "")]).status == "error"
    assert decide([Check("a", "fail", ""), Check("b", "error", "")]).status == "fail"
    assert decide([Check("a", "pass", ""), Check("b", "info", "")]).status == "pass"


def test_a_judge_that_raises_is_an_error_verdict_not_a_pass():
    ev = Story().end("PAID", PAID)
    result = run_judge("key_rollover", ev, {"no_such_param": 1})
    assert result.status == "error" and "raised TypeError" in result.checks[0].detail


# ---------------------------------------------------------------- one order (1-3, 5, 6)


def lost_create(second: str | None = None) -> Evidence:
    s = Story([fault("delay"), fault("http_error", taken=3, required=False)])
    rows = [s.req("create_service_order", 444, "delay")]
    rows += [s.req("query_service_order", 500, "http_error", "SYSTEM_ERROR") for _ in range(3)]
    if second:
        rows.append(s.req("create_service_order", number=second))
    s.step("rent", *rows, state="UNKNOWN" if not second else "PENDING_CONFIRM")
    s.step("reconcile", s.req("query_service_order"), state="PENDING_CONFIRM")
    ev = s.end("PAID", PAID, charged=350)
    if second:
        ev.orders.append({"order": {**PAID, "out_order_no": second, "state": "CREATED"},
                          "notifications": []})
    return ev


def test_one_order_passes_a_query_resolution_and_fails_a_second_number():
    assert verdict("one_order", lost_create()) == "pass"
    ev = lost_create(second="PB00000001NEW")
    assert set(failing("one_order", ev)) >= {"provider orders", "one order number per rental"}


def test_one_order_counts_attempts_per_call():
    s = Story([fault("html_gateway", taken=4)])
    s.step("rent", *[s.req("create_service_order", 502, "html_gateway") for _ in range(5)],
           s.req("create_service_order"), state="PENDING_CONFIRM")
    ev = s.end("PAID", PAID, charged=350)
    assert failing("one_order", ev, max_attempts=4) == ["at most 4 create_service_order per call"]
    assert verdict("one_order", ev) == "pass"


def test_an_untaken_fault_makes_the_verdict_an_error():
    s = Story([fault("delay", taken=0)])
    s.step("rent", s.req("create_service_order"), state="PENDING_CONFIRM")
    result = run_judge("one_order", s.end("PAID", PAID, charged=350), {})
    assert result.status == "error"
    assert any("never taken" in c.detail for c in result.checks)


def test_a_driver_5xx_or_a_lost_driver_answer_fails():
    s = Story([fault("delay")])
    s.step("rent", s.req("create_service_order", 444, "delay"), status=500, state="UNKNOWN")
    s.ev.steps.append(StepRecord(1, "reconcile", {}, None, None, "ConnectionError"))
    assert "driver answers" in failing("one_order", s.end("PAID", PAID, charged=350))


# ---------------------------------------------------------------- unverified replies (4, 10, 11)


def test_a_bent_reply_believed_without_proof_fails():
    s = Story([fault("probe_signature")])
    s.step("rent", s.req("create_service_order", fault="probe_signature"),
           state="PENDING_CONFIRM")
    assert failing("unverified_reply", s.end("PAID", PAID, charged=350),
                   effect="probe_signature") == ["no belief without proof"]


def test_a_bent_reply_followed_by_a_verified_query_passes():
    s = Story([fault("probe_signature")])
    s.step("rent", s.req("create_service_order", fault="probe_signature"),
           s.req("query_service_order"), state="PENDING_CONFIRM")
    assert verdict("unverified_reply", s.end("PAID", PAID, charged=350),
                   effect="probe_signature") == "pass"
    s = Story([fault("truncated_body")])  # or it says UNKNOWN and finds out later
    s.step("rent", s.req("create_service_order", fault="truncated_body"), state="UNKNOWN")
    assert verdict("unverified_reply", s.end("PAID", PAID, charged=350),
                   effect="truncated_body") == "pass"


def test_a_forged_paid_reply_counted_as_money_fails():
    s = Story([fault("bad_signature")])
    s.step("finish", s.req("complete_service_order"), state="AWAITING_PAYMENT", order=PAYING)
    s.step("reconcile", s.req("query_service_order", fault="bad_signature"), state="PAID",
           charged=350, order=PAYING)
    ev = s.end("PAID", PAYING, charged=350)
    assert set(failing("unverified_reply", ev, effect="bad_signature",
                       expect="AWAITING_PAYMENT")) == {
        "no belief without proof", "never counted money not collected",
        "final state consistent"}


# ---------------------------------------------------------------- back-off and 4xx (7, 8, 29)


def throttled(gap_ms: int) -> Evidence:
    s = Story([fault("http_error", taken=2)])
    rows = [s.req("create_service_order", 429, "http_error", "FREQUENCY_LIMITED"),
            s.req("create_service_order", 429, "http_error", "FREQUENCY_LIMITED", gap_ms=gap_ms),
            s.req("create_service_order", gap_ms=gap_ms)]
    s.step("rent", *rows, state="IN_SERVICE")
    return s.end("PAID", PAID, charged=350)


def test_backoff_needs_pauses_after_429():
    assert verdict("backoff", throttled(600), operation="create_service_order") == "pass"
    assert failing("backoff", throttled(2), operation="create_service_order") == ["back-off"]


def test_backoff_errs_when_the_sandbox_clock_is_frozen():
    ev = throttled(0)
    assert verdict("backoff", ev, operation="create_service_order") == "error"


def test_a_business_error_repeated_fails():
    def story(repeats: int) -> Evidence:
        s = Story([fault("http_error")])
        rows = [s.req("complete_service_order", 400, "http_error", "INVALID_REQUEST")]
        rows += [s.req("complete_service_order") for _ in range(repeats)]
        s.step("finish", *rows, s.req("query_service_order"), state="IN_SERVICE")
        return s.end("PAID", PAID, charged=350)

    assert verdict("business_error", story(0), operation="complete_service_order") == "pass"
    assert failing("business_error", story(1), operation="complete_service_order") == [
        "complete_service_order not retried after INVALID_REQUEST"]


def test_a_misconfiguration_must_surface_as_failed():
    s = Story([fault("http_error")])
    s.step("rent", s.req("create_service_order", 400, "http_error", "PARAM_ERROR"),
           state="DEPOSIT_FALLBACK")
    ev = s.end("DEPOSIT_FALLBACK", None)
    assert failing("business_error", ev, operation="create_service_order", expect="FAILED",
                   orders=0) == ["final state consistent"]


def test_tolerant_fails_a_crash_on_an_unknown_value():
    def story(status: int) -> Evidence:
        s = Story([fault("garbage_body")])
        s.step("rent", s.req("create_service_order"), state="IN_SERVICE", order=IN_SERVICE)
        s.step("reconcile", s.req("query_service_order", fault="garbage_body"),
               state="IN_SERVICE", order=IN_SERVICE, status=status)
        return s.end("PAID", PAID, charged=350)

    assert verdict("tolerant", story(200)) == "pass"
    assert failing("tolerant", story(500)) == ["driver answers"]
