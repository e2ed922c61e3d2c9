"""The checks judges are made of: each a pure function of the evidence returning one `Check`.

A check fails when the merchant did something wrong, and errs when the evidence cannot say
(the fault was never taken, the sandbox clock is frozen): an error is never a pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from fault_scenarios.evidence import DEFINITE, Evidence, StepRecord, mirror, ok

PASS, FAIL, ERROR, INFO = "pass", "fail", "error", "info"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def check(name: str, passed: bool, detail: str) -> Check:
    return Check(name, PASS if passed else FAIL, detail)


def _list(items: list[Any], limit: int = 6) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------- the scenario happened


def faults_taken(ev: Evidence) -> Check:
    missing = [f"{f['effect']}" + (f" on {f['operation']}" if f.get("operation") else "")
               for f in ev.faults if f.get("required", True) and not f.get("taken")]
    if missing:
        return Check("faults taken", ERROR, f"never taken: {_list(missing)}; the merchant never "
                     "made the call the scenario bends, so it proves nothing")
    taken = [f"{f['effect']}" + (f" on {f['operation']}" if f.get("operation") else "")
             + f" ×{f.get('taken', 0)}" for f in ev.faults]
    return Check("faults taken", PASS, ", ".join(taken) or "no fault needed")


def driver_answers(ev: Evidence) -> Check:
    """Every driver call answered 2xx: a handled provider failure is a state, not an error."""
    bad = [f"{s.label} -> {s.status or s.error}" for s in ev.steps
           if s.calls_driver and not ok(s.status)]
    return check("driver answers", not bad, f"non-2xx driver answers: {_list(bad)}" if bad
                 else "every driver call answered 2xx")


# ---------------------------------------------------------------- orders and numbers


def order_count(ev: Evidence, expected: int = 1) -> Check:
    numbers = [o["order"].get("out_order_no") for o in ev.orders]
    return check("provider orders", len(numbers) == expected,
                 f"{len(numbers)} provider order(s) for the user ({_list(numbers)}); "
                 f"expected {expected}")


def one_number(ev: Evidence) -> Check:
    """Every create the merchant sent for its rental(s) carried the same out_order_no."""
    numbers = sorted({r.get("out_order_no") or "?" for r in
                      ev.requests_of("create_service_order")})
    allowed = max(1, sum(1 for r in ev.rentals if r.get("out_order_no")))
    return check("one order number per rental", len(numbers) <= allowed,
                 f"create requests carried {len(numbers)} number(s): {_list(numbers)}")


def merchant_number(ev: Evidence) -> Check:
    number = (ev.rental or {}).get("out_order_no")
    found = ev.order(number) if number else None
    return check("merchant's order number is the provider's", found is not None,
                 f"merchant holds {number!r}; provider orders: "
                 f"{_list([o['order'].get('out_order_no') for o in ev.orders])}")


# ---------------------------------------------------------------- states


def consistent(ev: Evidence, expect: str | None = None) -> Check:
    """The merchant's final view mirrors the provider's order (and is `expect`)."""
    rental = ev.rental or {}
    state = rental.get("merchant_state")
    order = ev.order(rental.get("out_order_no")) if rental.get("out_order_no") else None
    truth = mirror(order)
    problems = []
    if expect and state != expect:
        problems.append(f"merchant is {state}, expected {expect}")
    if order is not None and truth != state:
        problems.append(f"merchant is {state} but the provider order is "
                        f"{order.get('state')}/{order.get('state_description')} ({truth})")
    if order is not None and "charged" in rental and rental["charged"] != \
            (order.get("paid_amount") or 0):
        problems.append(f"merchant charged {rental['charged']} fen, the provider collected "
                        f"{order.get('paid_amount') or 0}")
    return check("final state consistent", not problems, "; ".join(problems) or
                 f"merchant {state}, provider {truth or 'no order'}, charged "
                 f"{rental.get('charged')}")


def snapshot_consistent(ev: Evidence, label: str, expect: str | None = None) -> Check:
    step = ev.snapshot(label)
    if step is None or step.view is None:
        return Check(f"at '{label}'", ERROR, f"no snapshot '{label}' was taken")
    state, truth = step.view.get("merchant_state"), mirror(step.order)
    problems = []
    if expect and state != expect:
        problems.append(f"merchant was {state}, expected {expect}")
    if step.order is not None and state != truth:
        problems.append(f"merchant was {state} while the provider order was {truth}")
    return check(f"at '{label}'", not problems, "; ".join(problems) or
                 f"merchant {state} = provider {truth}")


def never_overcharged(ev: Evidence) -> Check:
    """At no step did the merchant count more money than the provider had collected."""
    bad = [f"{s.label}: charged {s.view.get('charged')} > collected "
           f"{(s.order or {}).get('paid_amount') or 0}" for s in ev.steps
           if s.view and isinstance(s.view.get("charged"), int)
           and s.view["charged"] > ((s.order or {}).get("paid_amount") or 0)]
    return check("never counted money not collected", not bad, _list(bad) if bad else
                 "charged never exceeded what the provider collected")


def belief(ev: Evidence, effect: str) -> Check:
    """After a bent 2xx the merchant only states what a verified answer told it."""
    bent = ev.faulted(effect)
    if not bent:
        return Check("no belief without proof", ERROR, f"no reply was bent by {effect}")
    first = bent[0]
    step = next((s for s in ev.steps if any(r["id"] == first["id"] for r in s.requests)),
                None)
    if step is None or step.view is None:
        return Check("no belief without proof", ERROR, "the bent reply is in no step")
    before = _previous_view(ev, step)
    state = step.view.get("merchant_state")
    verified = [r for r in step.requests if r["id"] > first["id"] and ok(r.get("status"))
                and not r.get("fault") and r.get("out_order_no") == first.get("out_order_no")]
    changed = state in DEFINITE and state != (before or {}).get("merchant_state")
    passed = not changed or bool(verified)
    return check("no belief without proof", passed,
                 f"after the {effect} reply ({first.get('operation')}) the merchant said "
                 f"{state}" + ("" if passed else " without any verified answer behind it")
                 + (f"; verified by {verified[0].get('operation')}" if verified else ""))


def _previous_view(ev: Evidence, step: StepRecord) -> dict[str, Any] | None:
    earlier = [s.view for s in ev.steps if s.index < step.index and s.view]
    return earlier[-1] if earlier else None


def device(ev: Evidence, released: bool = True) -> Check:
    value = (ev.rental or {}).get("device_released")
    return check("device released" if released else "device kept", value is released,
                 f"device_released={value}")


# ---------------------------------------------------------------- attempts and timing


def bounded_attempts(ev: Evidence, operation: str, limit: int) -> Check:
    worst = max(([len(ev.requests_of(operation, rows=s.requests)), s.label]
                 for s in ev.steps), default=[0, "-"])
    return check(f"at most {limit} {operation} per call", worst[0] <= limit,
                 f"most in one step: {worst[0]} ({worst[1]})")


def not_retried(ev: Evidence, operation: str) -> Check:
    """A definite 4xx answer to `operation` was not repeated within the same driver call."""
    for step in ev.steps:
        rows = ev.requests_of(operation, rows=step.requests)
        refused = [r for r in rows if r.get("status") and 400 <= r["status"] < 500
                   and r["status"] != 429]
        if refused:
            after = [r for r in rows if r["id"] > refused[0]["id"]]
            return check(f"{operation} not retried after {refused[0].get('code')}", not after,
                         f"{len(after)} more {operation} in {step.label} after the "
                         f"{refused[0]['status']} {refused[0].get('code')}" if after else
                         f"one {operation}, answered {refused[0]['status']} "
                         f"{refused[0].get('code')}, not repeated")
    return Check(f"{operation} not retried", ERROR, f"no 4xx answer to {operation} seen")


def backoff(ev: Evidence, operation: str, min_gap_ms: float, limit: int) -> Check:
    rows = ev.requests_of(operation)
    gaps = [(b["at_us"] - a["at_us"]) / 1000 for a, b in itertools.pairwise(rows)
            if a.get("status") == 429]
    if len(rows) > 1 and len({r["at_us"] for r in rows}) == 1:
        return Check("back-off", ERROR, "every request has the same sandbox time: the sandbox "
                     "clock is frozen, so the gaps cannot be measured")
    if not gaps:
        return Check("back-off", ERROR, f"no {operation} followed a 429")
    passed = min(gaps) >= min_gap_ms and len(rows) <= limit
    return check("back-off", passed, f"{len(rows)} {operation}; gaps after 429: "
                 + ", ".join(f"{g:.0f} ms" for g in gaps) + f" (need ≥ {min_gap_ms:.0f} ms, "
                 f"≤ {limit} attempts)")


# ---------------------------------------------------------------- callbacks


def callbacks_refused(ev: Evidence, effect: str) -> Check:
    bent = ev.attempts(effect=effect)
    if effect == "callback_replay":  # the later delivery that carried the replay is genuine
        captured = ev.fault_state(effect).get("captured") or {}
        bent = [a for a in bent if a["notification_id"] == captured.get("notification_id")]
    if not bent:
        return Check(f"{effect} refused", ERROR, f"no callback was bent by {effect}")
    accepted = [a for a in bent if ok(a.get("status_code"))]
    return check(f"{effect} refused", not accepted,
                 f"{len(accepted)} of {len(bent)} bent callback(s) answered 2xx "
                 f"({_list([a['event_type'] for a in accepted])}): applied or acknowledged"
                 if accepted else f"all {len(bent)} answered "
                 + _list(sorted({str(a.get('status_code')) for a in bent})))


def delivered(ev: Evidence, event_type: str) -> Check:
    """The genuine delivery of `event_type` was accepted in the end (2xx)."""
    found = ev.notifications(event_type)
    if not found:
        return Check(f"{event_type} delivered", ERROR, f"no {event_type} was sent")
    missing = [n["id"] for n in found if not any(ok(a.get("status_code"))
                                                 for a in n.get("attempt_log") or [])]
    return check(f"{event_type} accepted later", not missing,
                 f"never accepted: {_list(missing)}" if missing else
                 f"{len(found)} accepted after the bent attempt(s)")


def serial_accepted(ev: Evidence, serial: str | None = None, prefix: str | None = None) -> Check:
    def match(value: str | None) -> bool:
        value = (value or "").upper()
        return bool(value) and ((serial and value == serial.upper())
                                or bool(prefix and value.startswith(prefix.upper())))

    signed = [a for a in ev.attempts() if match(a.get("signature_serial"))]
    name = f"callbacks under {serial or prefix + '…'} accepted"
    if not signed:
        return Check(name, ERROR, "no callback was signed with that key")
    refused = [a for a in signed if not ok(a.get("status_code"))]
    return check(name, not refused, f"{len(refused)} of {len(signed)} refused "
                 f"({_list(sorted({str(a.get('status_code')) for a in refused}))})" if refused
                 else f"{len(signed)} accepted at the first attempt")


def copies_acknowledged(ev: Evidence, effect: str) -> Check:
    copies = ev.attempts(effect=effect)
    if not copies:
        return Check("every copy acknowledged", ERROR, f"no copy was sent by {effect}")
    refused = [a for a in copies if not ok(a.get("status_code"))]
    return check("every copy acknowledged", not refused,
                 f"{len(refused)} of {len(copies)} copies answered non-2xx (WeChat would "
                 "keep re-sending)" if refused else f"{len(copies)} copies answered 2xx")


def applied_once(ev: Evidence) -> Check:
    """The merchant's `callbacks` counter equals the distinct callbacks delivered."""
    rental = ev.rental or {}
    if "callbacks" not in rental:
        return Check("each callback applied once", INFO, "the merchant does not report "
                     "`callbacks`; double application is not observable")
    number = rental.get("out_order_no")
    delivered_ids = {n["id"] for item in ev.orders if item["order"].get("out_order_no") == number
                     for n in item.get("notifications", [])
                     if any(ok(a.get("status_code")) for a in n.get("attempt_log") or [])}
    return check("each callback applied once", rental["callbacks"] <= len(delivered_ids),
                 f"merchant applied {rental['callbacks']} callback(s); "
                 f"{len(delivered_ids)} distinct were delivered")
