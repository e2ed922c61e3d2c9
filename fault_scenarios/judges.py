"""Judges: pure functions from a scenario's evidence to a verdict, named in the catalogue.

A judge takes the evidence and keyword-only parameters (the catalogue's `judge.params`, checked
against the signature when the catalogue loads) and returns its checks; `decide` turns checks
into the verdict. The first line of each judge's docstring is printed as "how the verdict is
reached".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fault_scenarios import checks as c
from fault_scenarios.checks import ERROR, FAIL, INFO, PASS, Check
from fault_scenarios.evidence import DEFINITE, Evidence, ok

Judge = Callable[..., list[Check]]
JUDGES: dict[str, Judge] = {}
_RANK = {"PENDING_CONFIRM": 1, "IN_SERVICE": 2, "AWAITING_PAYMENT": 3}


def judge(fn: Judge) -> Judge:
    JUDGES[fn.__name__] = fn
    return fn


@dataclass
class Verdict:
    status: str  # pass | fail | error
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def failed_checks(self) -> list[Check]:
        return [x for x in self.checks if x.status in (FAIL, ERROR)]


def decide(found: list[Check]) -> Verdict:
    """fail if any check failed; else error if the evidence could not decide; else pass."""
    statuses = {x.status for x in found}
    if FAIL in statuses:
        return Verdict(FAIL, found)
    if ERROR in statuses or not found:
        return Verdict(ERROR, found)
    return Verdict(PASS, found)


def run_judge(name: str, ev: Evidence, params: dict[str, Any]) -> Verdict:
    try:
        return decide(JUDGES[name](ev, **params))
    except Exception as exc:  # noqa: BLE001 - a judge bug is an error verdict, never a pass
        return Verdict(ERROR, [Check("judge", ERROR, f"{name} raised {type(exc).__name__}: "
                                                    f"{exc}")])


# ---------------------------------------------------------------- extra checks


def no_regression(ev: Evidence) -> Check:
    """The merchant's state never went backwards (a final state is kept for good)."""
    seen: dict[str, tuple[int, str]] = {}
    for step in ev.steps:
        view = step.view or {}
        state, rental = view.get("merchant_state"), view.get("rental_id")
        if state not in DEFINITE and state not in ("DEPOSIT_FALLBACK", "FAILED") or not rental:
            continue
        rank = _RANK.get(state, 4)
        best = seen.get(rental)
        if best and (rank < best[0] or (best[0] == 4 and state != best[1])):
            return c.check("never went backwards", False,
                           f"{best[1]} then {state} at {step.label}")
        if not best or rank > best[0]:
            seen[rental] = (rank, state)
    return c.check("never went backwards", True, "states only moved forward")


def order_amounts(ev: Evidence, amount: int) -> Check:
    order = ev.order() or {}
    total, paid = order.get("total_amount"), order.get("paid_amount")
    return c.check("billed once, for the finish amount", total == amount and paid in (0, amount,
                                                                                       None),
                   f"provider total {total}, collected {paid}; the rental was finished "
                   f"for {amount}")


def attempts_in(ev: Evidence, kind: str, operation: str, limit: int) -> Check:
    steps = ev.steps_of(kind)
    most = max((len(ev.requests_of(operation, rows=s.requests)) for s in steps), default=0)
    return c.check(f"{operation} per {kind} ≤ {limit}", most <= limit,
                   f"at most {most} {operation} during one {kind}")


# ---------------------------------------------------------------- the judges


@judge
def one_order(ev: Evidence, *, expect: str = "PAID", max_attempts: int | None = None
              ) -> list[Check]:
    """One provider order under one number, and the merchant ends where the provider is."""
    found = [c.faults_taken(ev), c.driver_answers(ev), c.order_count(ev, 1), c.one_number(ev),
             c.merchant_number(ev), c.consistent(ev, expect)]
    if max_attempts is not None:
        found.append(c.bounded_attempts(ev, "create_service_order", max_attempts))
    return found


@judge
def unverified_reply(ev: Evidence, *, effect: str, expect: str = "PAID") -> list[Check]:
    """A bent 2xx is never believed: states and money only from verified answers."""
    return [c.faults_taken(ev), c.driver_answers(ev), c.belief(ev, effect),
            c.never_overcharged(ev), c.order_count(ev, 1), c.consistent(ev, expect)]


@judge
def backoff(ev: Evidence, *, operation: str, min_gap_ms: float = 250, max_attempts: int = 5,
            expect: str = "PAID") -> list[Check]:
    """429s are answered with growing pauses and a bounded number of attempts."""
    return [c.faults_taken(ev), c.driver_answers(ev),
            c.backoff(ev, operation, min_gap_ms, max_attempts), c.order_count(ev, 1),
            c.consistent(ev, expect)]


@judge
def business_error(ev: Evidence, *, operation: str, expect: str | None = None,
                   orders: int | None = None) -> list[Check]:
    """A definite 4xx is handled once, not repeated, and the merchant carries on."""
    found = [c.faults_taken(ev), c.driver_answers(ev), c.not_retried(ev, operation),
             c.consistent(ev, expect)]
    if orders is not None:
        found.append(c.order_count(ev, orders))
    return found


@judge
def tolerant(ev: Evidence, *, expect: str = "PAID") -> list[Check]:
    """Unknown fields and values neither crash the merchant nor move its state."""
    return [c.faults_taken(ev), c.driver_answers(ev), no_regression(ev),
            c.consistent(ev, expect)]


@judge
def callback_refused(ev: Evidence, *, effect: str, event: str | None = None,
                     expect: str = "PAID") -> list[Check]:
    """Every bent callback is answered non-2xx; the genuine one is accepted afterwards."""
    found = [c.faults_taken(ev), c.callbacks_refused(ev, effect)]
    if event:
        found.append(c.delivered(ev, event))
    return found + [no_regression(ev), c.consistent(ev, expect)]


@judge
def key_rollover(ev: Evidence, *, prefix: str | None = None, rotated: bool = False,
                 max_downloads: int = 3, expect: str = "PAID") -> list[Check]:
    """Callbacks under the new key are accepted, after at most a bounded key refresh."""
    serial = ev.fault_state("rotated_serial").get("serial") if rotated else None
    downloads = len(ev.requests_of("download_certificates"))
    return [c.faults_taken(ev), c.serial_accepted(ev, serial=serial, prefix=prefix),
            c.check("bounded key refresh", downloads <= max_downloads,
                    f"{downloads} certificate download(s)"),
            c.driver_answers(ev), c.consistent(ev, expect)]


@judge
def callbacks_once(ev: Evidence, *, effect: str, expect: str = "PAID") -> list[Check]:
    """Each copy is acknowledged with 2xx, and the event is applied exactly once."""
    return [c.faults_taken(ev), c.copies_acknowledged(ev, effect), c.applied_once(ev),
            c.consistent(ev, expect)]


@judge
def in_order(ev: Evidence, *, expect: str = "PAID") -> list[Check]:
    """A callback arriving after a later one never takes the merchant back."""
    return [c.faults_taken(ev), c.delivered(ev, "PAYSCORE.USER_CONFIRM"), no_regression(ev),
            c.consistent(ev, expect)]


@judge
def late_callbacks(ev: Evidence, *, snapshot: str | None = None,
                   expect_then: str | None = None, expect: str = "PAID") -> list[Check]:
    """Without callbacks the merchant still learns the truth in time, by query."""
    found = [c.faults_taken(ev), c.driver_answers(ev)]
    if snapshot:
        found.append(c.snapshot_consistent(ev, snapshot, expect_then))
    return found + [no_regression(ev), c.never_overcharged(ev), c.consistent(ev, expect)]


@judge
def mismatch(ev: Evidence, *, expect: str = "PAID") -> list[Check]:
    """A validly signed callback that contradicts the merchant's order is not applied."""
    return [c.faults_taken(ev), c.never_overcharged(ev), c.driver_answers(ev),
            c.consistent(ev, expect)]


@judge
def finish_waits(ev: Evidence, *, amount: int, limit: int = 2, expect: str = "PAID"
                 ) -> list[Check]:
    """A finish before confirmation waits for it: no complete loop, completed once later."""
    return [c.driver_answers(ev), attempts_in(ev, "finish", "complete_service_order", limit),
            order_amounts(ev, amount), c.consistent(ev, expect)]


@judge
def expiry(ev: Evidence) -> list[Check]:
    """An order that expires ends the rental and gives the device back."""
    return [c.driver_answers(ev), c.consistent(ev, "EXPIRED"), c.device(ev, True)]


@judge
def billed_once(ev: Evidence, *, amount: int, expect: str = "PAID") -> list[Check]:
    """A lost complete reply is resolved without a second, different complete."""
    refused = [r for r in ev.requests_of("complete_service_order")
               if r.get("status") and 400 <= r["status"] < 500]
    return [c.faults_taken(ev), c.driver_answers(ev),
            c.check("no second, different complete", not refused,
                    f"{len(refused)} complete(s) refused ({refused[0].get('code')}): a "
                    "re-send with another body" if refused else
                    "every complete was the same request"),
            order_amounts(ev, amount), c.consistent(ev, expect)]


@judge
def long_deduction(ev: Evidence, *, snapshot: str, amount: int) -> list[Check]:
    """A deduction pending for days keeps the order, is chased (pay/query), and is paid once."""
    step = ev.snapshot(snapshot)
    if step is None:
        return [Check("pending deduction", ERROR, f"no snapshot '{snapshot}' was taken")]
    since = max((s.index for s in ev.steps if s.kind == "advance" and s.index < step.index),
                default=step.index)
    chased = [r for s in ev.steps if s.index >= since for r in s.requests
              if r.get("operation") in ("pay_service_order", "query_service_order",
                                        "sync_service_order")]
    then = (step.view or {}).get("merchant_state")
    return [c.faults_taken(ev), c.driver_answers(ev),
            c.check("order kept while pending", then in ("AWAITING_PAYMENT", "PAID"),
                    f"after a day unpaid the merchant said {then}"),
            c.check("chased the pending deduction", bool(chased),
                    f"{len(chased)} pay/query/sync call(s) once it was pending for a day"),
            order_amounts(ev, amount), c.consistent(ev, "PAID")]


@judge
def deposit_fallback(ev: Evidence) -> list[Check]:
    """An ineligible user gets the deposit fallback at once: one create, no retries."""
    rental = ev.rental or {}
    creates = ev.requests_of("create_service_order")
    return [c.driver_answers(ev),
            c.check("deposit fallback", rental.get("merchant_state") == "DEPOSIT_FALLBACK"
                    and rental.get("out_order_no") is None,
                    f"merchant is {rental.get('merchant_state')}, order "
                    f"{rental.get('out_order_no')}"),
            c.check("asked once", len(creates) == 1, f"{len(creates)} create request(s)"),
            c.order_count(ev, 0), c.device(ev, True)]


@judge
def breaker(ev: Evidence, *, max_failures: int = 12) -> list[Check]:
    """During an outage the breaker opens after a few failures; it probes and closes after."""
    burst = ev.steps_of("rent_burst")
    recovery = ev.steps_of("await_recovery")
    if not burst or not recovery:
        return [Check("breaker", ERROR, "the outage steps did not run")]
    reached = len(burst[0].requests)
    answer = recovery[0].answer if isinstance(recovery[0].answer, dict) else {}
    rentals = burst[0].answer if isinstance(burst[0].answer, list) else []
    first_ok = next((r for s in recovery for r in s.requests if ok(r.get("status"))), None)
    return [c.faults_taken(ev), c.driver_answers(ev),
            c.check("opened within a bounded number of failures", reached <= max_failures,
                    f"{reached} request(s) reached the failing provider for {len(rentals)} "
                    f"rentals (limit {max_failures})"),
            c.check("probed and closed after recovery", bool(answer.get("recovered"))
                    and first_ok is not None,
                    f"first success {answer.get('waited_s')} s after the provider recovered, "
                    f"{answer.get('attempts')} rental attempt(s)" if answer.get("recovered")
                    else f"no rental went through within {answer.get('waited_s')} s"),
            c.consistent(ev, "PENDING_CONFIRM")]


__all__ = ["ERROR", "FAIL", "INFO", "JUDGES", "PASS", "Verdict", "decide", "run_judge"]
