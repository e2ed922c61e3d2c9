"""The steps a scenario is made of (catalogue `steps:`), one function per step kind.

Each takes the running scenario (runner.Run) and the step's validated arguments and returns an
`Answer`: the driver's answer for merchant steps, the control API's for sandbox steps. Waits
are bounded polls for asynchronous deliveries (a callback in flight, a timed job the sandbox's
ticker runs); business time only moves through `advance`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fault_scenarios.clients import Answer, ControlError
from fault_scenarios.evidence import DEFINITE

if TYPE_CHECKING:
    from fault_scenarios.runner import Run

POLL_S = 0.05
WAIT_ORDER_S = 5.0
WAIT_RENTAL_S = 4.0
DEFAULT_RECOVERY_S = 60.0

StepFn = Callable[["Run", dict[str, Any]], Answer]
STEP_FUNCS: dict[str, StepFn] = {}


def step(fn: StepFn) -> StepFn:
    STEP_FUNCS[fn.__name__.removeprefix("do_")] = fn
    return fn


def _control(body: Any) -> Answer:
    return Answer(200, body)


def _rental(run: Run) -> str:
    if run.current is None:
        raise ControlError("this step needs a rental: start one with `rent` first")
    return run.current


# ---------------------------------------------------------------- the merchant (driver API)


@step
def do_rent(run: Run, args: dict[str, Any]) -> Answer:
    answer = run.driver.start_rental(run.openid, args.get("mode", "need_confirm"),
                                     args.get("deposit", 9900))
    if answer.ok and isinstance(answer.body, dict) and answer.body.get("rental_id"):
        run.current = str(answer.body["rental_id"])
        run.rentals.append(run.current)
    return answer


@step
def do_rent_burst(run: Run, args: dict[str, Any]) -> Answer:
    views: list[Any] = []
    worst = None
    for _ in range(args["count"]):
        answer = do_rent(run, {})
        views.append(answer.body if answer.ok else {"status": answer.status,
                                                    "error": answer.error})
        if not answer.ok:
            worst = answer
    if worst is not None:  # the list stays the answer; the status says a call went wrong
        return Answer(worst.status, views, worst.error)
    return Answer(201, views)


@step
def do_finish(run: Run, args: dict[str, Any]) -> Answer:
    return run.driver.finish_rental(_rental(run), args["amount"])


@step
def do_cancel(run: Run, args: dict[str, Any]) -> Answer:
    return run.driver.cancel_rental(_rental(run), args.get("reason"))


@step
def do_refund(run: Run, args: dict[str, Any]) -> Answer:
    return run.driver.refund_rental(_rental(run), args["amount"])


@step
def do_reconcile(run: Run, args: dict[str, Any]) -> Answer:
    return run.driver.reconcile()


@step
def do_await_recovery(run: Run, args: dict[str, Any]) -> Answer:
    """Start rentals until one goes through (the breaker probed and closed), bounded."""
    limit = args.get("max_wait_s") or run.hints.get("recovery_wait_s") or DEFAULT_RECOVERY_S
    started = time.monotonic()
    attempts, worst = 0, None
    while True:
        attempts += 1
        answer = do_rent(run, {})
        if not answer.ok:
            worst = answer
        state = answer.body.get("merchant_state") if isinstance(answer.body, dict) else None
        waited = round(time.monotonic() - started, 2)
        if state in DEFINITE or waited >= limit:
            result = {"recovered": state in DEFINITE, "waited_s": waited,
                      "attempts": attempts, "last_state": state}
            if worst is not None:
                return Answer(worst.status, result, worst.error)
            return Answer(200, result)
        time.sleep(args.get("interval_s", 0.5))  # the merchant's breaker runs on wall time


# ---------------------------------------------------------------- the user and the world


@step
def do_authorize(run: Run, args: dict[str, Any]) -> Answer:
    return _control(run.sandbox.user_authorize_permission(run.mchid, run.openid))


@step
def do_user(run: Run, args: dict[str, Any]) -> Answer:
    body = {k: v for k, v in args.items() if v is not None}
    if args["action"] in ("pay", "decline"):
        body.update(mchid=run.mchid, out_order_no=run.order_number())
    answer = _control(run.sandbox.act_as_user(run.openid, body))
    run.deliver()
    return answer


@step
def do_confirm(run: Run, args: dict[str, Any]) -> Answer:
    number = run.order_number()
    answer = _control(run.sandbox.act_as_user(run.openid, {
        "action": "confirm", "mchid": run.mchid, "out_order_no": number}))
    run.deliver()
    return answer


# ---------------------------------------------------------------- the sandbox


@step
def do_advance(run: Run, args: dict[str, Any]) -> Answer:
    answer = _control(run.sandbox.advance_clock(args["by"]))
    run.deliver()
    return answer


@step
def do_drain(run: Run, args: dict[str, Any]) -> Answer:
    return _control(run.deliver())


@step
def do_settle(run: Run, args: dict[str, Any]) -> Answer:
    """Wait for the provider order (bounded), deliver what is due, let the merchant settle."""
    reached = None
    if args.get("order"):
        deadline = time.monotonic() + WAIT_ORDER_S
        while True:
            run.sandbox.advance_clock("0s")  # run the jobs due now (a deduction) at once
            order = run.provider_order()
            reached = (order or {}).get("state")
            if reached == args["order"] or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
            run.drain()
    run.drain()
    run.settle_merchant()
    if args.get("order") and reached != args["order"]:
        return Answer(200, {"waited_for": args["order"], "order_state": reached,
                            "note": "the provider order did not get there in time"})
    return Answer(200, {"order_state": reached})


@step
def do_wait_rental(run: Run, args: dict[str, Any]) -> Answer:
    deadline = time.monotonic() + WAIT_RENTAL_S
    view = None
    while time.monotonic() <= deadline:
        answer = run.driver.get_rental(_rental(run))
        view = answer.body if answer.ok else None
        if isinstance(view, dict) and view.get("merchant_state") in args["states"]:
            return Answer(200, view)
        run.drain()
        time.sleep(POLL_S)
    return Answer(200, {"waited_for": args["states"], "view": view,
                        "note": "the merchant did not get there in time"})


@step
def do_snapshot(run: Run, args: dict[str, Any]) -> Answer:
    run.settle_merchant()
    return Answer(200, {"label": args["label"]})


@step
def do_arm(run: Run, args: dict[str, Any]) -> Answer:
    return _control(run.arm(args))


@step
def do_disarm(run: Run, args: dict[str, Any]) -> Answer:
    return _control(run.sandbox.disarm_faults(run.tag))
