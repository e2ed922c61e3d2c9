"""The scenario runner: for each scenario, setup, arm, act, settle, judge, and always disarm.

- setup: a fresh user per scenario run, chosen through the sandbox's user profiles so that they
  act only when a step says so (they ignore confirm requests and can pay); every fault carries
  the run's scenario id and is scoped to the merchant and that user (or the order);
- act: the steps (steps.py) through the merchant's driver API and the sandbox's control API;
  after each step the request-log rows it caused, the merchant's view and the provider order
  are recorded;
- settle: deliver due callbacks, let the merchant's view stop moving;
- judge: a pure function of the collected evidence (judges.py).

Scenarios run one after another: several move the sandbox clock (global), and the judges read
the request log of the merchant for the time of the scenario.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fault_scenarios import steps
from fault_scenarios.catalogue import Scenario, Step
from fault_scenarios.checks import ERROR, Check
from fault_scenarios.clients import ControlError, Driver, Sandbox
from fault_scenarios.evidence import Evidence, StepRecord, summarise
from fault_scenarios.judges import Verdict, decide, run_judge
from fault_scenarios.target import RunnerError, Target, discover

__all__ = [
    "Run",
    "RunnerError",
    "ScenarioResult",
    "Target",
    "discover",
    "run_all",
    "run_scenario",
]

log = logging.getLogger(__name__)
CREATING_STEPS = frozenset({"rent", "rent_burst", "await_recovery"})
USER_PROBES = 400  # a user who ignores confirm requests and pays: about 1 in 9 ad-hoc users
PROBES_PER_ROUND = 8
PROBE_WORKERS = 16
STABLE_GAP_S = 0.05
STABLE_MAX_S = 5.0
MAX_DELAY_S = 30.0  # the sandbox's delay effect is capped here


def odd_reply(order: dict[str, Any]) -> dict[str, Any]:
    """The order as a future WeChat might answer: new fields, a state_description not known yet."""
    keep = ("appid", "mchid", "out_order_no", "service_id", "service_introduction", "openid",
            "order_id", "time_range", "post_payments", "notify_url")
    body = {k: order[k] for k in keep if order.get(k) is not None}
    body.update(state="DOING", state_description="MCH_RISK_REVIEWING",
                risk_fund={"name": "ESTIMATE_ORDER_COST", "amount": order.get("risk_amount")
                           or 9900},
                service_channel="MINI_PROGRAM", risk_control_info={"level": 2, "version": 3},
                promotion_tags=["NEW_USER"])
    return body


def user_prefix(scenario: Scenario, tag: str) -> str:
    return f"o_scn{scenario.id:02d}_{tag.rsplit('-', 1)[-1]}_"


def controllable(user: dict[str, Any], idle: bool = True) -> bool:
    """Pays at once and may use Pay Score; `idle`: also ignores confirm requests, so the order
    stays CREATED until a step confirms it."""
    return bool(user.get("eligible")) and user.get("balance_behaviour") == "pays" \
        and not user.get("fail_next_deductions") \
        and (not idle or user.get("confirm_behaviour") == "ignores")


def pick_users(sandbox_url: str, wanted: list[tuple[str, bool]]) -> list[str]:
    """One fresh user per (prefix, idle) (`prefix` + 000, 001, ...), probed in parallel
    through the sandbox's user profiles (an unseeded openid becomes its deterministic user)."""
    local = threading.local()
    idle = dict(wanted)

    def probe(item: tuple[str, int]) -> tuple[str, int, bool]:
        client = getattr(local, "client", None) or Sandbox(sandbox_url)
        local.client = client
        user = client.get_user(f"{item[0]}{item[1]:03d}")
        return item[0], item[1], controllable(user, idle[item[0]])

    chosen: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=PROBE_WORKERS) as pool:
        for start in range(0, USER_PROBES, PROBES_PER_ROUND):
            todo = [(p, k) for p in idle if p not in chosen
                    for k in range(start, start + (PROBES_PER_ROUND if idle[p] else 2))]
            if not todo:
                break
            for prefix, k, good in sorted(pool.map(probe, todo)):
                if good and prefix not in chosen:
                    chosen[prefix] = f"{prefix}{k:03d}"
    missing = [p for p in idle if p not in chosen]
    if missing:
        raise ControlError(f"no controllable user among {USER_PROBES} fresh openids "
                           f"{missing[0]}000...")
    return [chosen[p] for p, _ in wanted]


class Run:
    """One scenario while it runs: its user, faults, rentals and the evidence so far."""

    def __init__(self, scenario: Scenario, target: Target, run_id: str,
                 seen: set[str] | None = None):
        self.scenario, self.target = scenario, target
        self.tag = f"S{scenario.id:02d}-{run_id}"
        self.mchid = target.mchid
        self.hints = target.hints
        self.driver = Driver(target.driver_url)
        self.sandbox = Sandbox(target.sandbox_url)
        self.openid = ""
        self.current: str | None = None
        self.rentals: list[str] = []
        self.armed: list[dict[str, Any]] = []
        self.cursor = 0
        self.numbers: set[str] = set()  # the order numbers this scenario's rentals used
        # Numbers of earlier scenarios: a late request of theirs (a reply held past the
        # merchant's timeout is logged when the hold ends) is not this scenario's.
        self.seen = seen if seen is not None else set()
        self.pks: dict[str, int] = {}
        self.ev = Evidence(scenario.id, self.tag, self.mchid, "", hints=dict(target.hints))

    # ------------------------------------------------------------ setup

    def start(self, openid: str | None = None) -> None:
        self.cursor = self.sandbox.last_request_id()
        self.openid = self.ev.openid = openid or pick_users(
            self.target.sandbox_url,
            [(user_prefix(self.scenario, self.tag), self.scenario.needs_idle_user)])[0]
        for spec in self.scenario.faults:
            self.arm(spec)

    def arm(self, spec: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"effect": spec["effect"], "params": self.render(spec["params"]),
                                "scenario_id": self.tag, "mchid": self.mchid}
        if spec.get("scope") == "user":
            body["openid"] = self.openid
        elif spec.get("scope") == "order":
            body["out_order_no"] = self.order_number()
        for key in ("operation", "remaining", "probability", "window_s"):
            if spec.get(key) is not None:
                body[key] = spec[key]
        armed = self.sandbox.arm_fault(body)
        self.armed.append({"id": armed.get("id"), "required": spec.get("required", True),
                           "operation": spec.get("operation")})
        return armed

    def render(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in params.items():
            if value == "$past_read_timeout":
                value = min(MAX_DELAY_S, float(self.hints.get("read_timeout_s", 10)) + 1.0)
            elif value == "$order_reply":
                order = self.provider_order()
                if order is None:
                    raise ControlError("$order_reply needs the rental's provider order")
                value = json.dumps(odd_reply(order), ensure_ascii=False)
            out[name] = value
        return out

    # ------------------------------------------------------------ helpers for steps

    def view(self) -> dict[str, Any] | None:
        if self.current is None:
            return None
        answer = self.driver.get_rental(self.current)
        return answer.body if answer.ok and isinstance(answer.body, dict) else None

    def order_number(self) -> str:
        number = (self.view() or {}).get("out_order_no")
        if number:
            return number
        orders = self.sandbox.inspect_orders(self.mchid, self.openid)
        if not orders:
            raise ControlError("the merchant has not created an order for this user")
        return orders[0]["out_order_no"]

    def provider_order(self, number: str | None = None) -> dict[str, Any] | None:
        number = number or (self.view() or {}).get("out_order_no")
        if number not in self.pks:
            orders = self.sandbox.inspect_orders(self.mchid, self.openid) if self.openid else []
            self.pks.update({o["out_order_no"]: o["pk"] for o in orders})
            if not number and orders:
                number = orders[0]["out_order_no"]
        pk = self.pks.get(number) if number else None
        return self.sandbox.inspect_order(pk)["order"] if pk is not None else None

    def drain(self) -> dict[str, Any]:
        return self.sandbox.drain_notifications()

    def deliver(self) -> dict[str, Any]:
        """Deliver what is due and, if anything went out, let the merchant settle."""
        counts = self.drain()
        if counts.get("attempts"):
            self.settle_merchant()
        return counts

    def settle_merchant(self) -> None:
        """Poll the merchant's view until it stops changing (bounded)."""
        deadline = time.monotonic() + STABLE_MAX_S
        before = self.view()
        while time.monotonic() < deadline:
            time.sleep(STABLE_GAP_S)
            now = self.view()
            if now == before:
                return
            before = now

    # ------------------------------------------------------------ acting and recording

    def execute(self, index: int, step: Step) -> StepRecord:
        started = time.monotonic()
        record = StepRecord(index, step.kind, dict(step.args))
        try:
            answer = steps.STEP_FUNCS[step.kind](self, step.args)
            record.status, record.answer, record.error = answer.status, answer.body, answer.error
        finally:
            record.seconds = round(time.monotonic() - started, 3)
            self.ev.steps.append(record)
            self.capture(record)
        return record

    def capture(self, record: StepRecord) -> None:
        rows, self.cursor = self.sandbox.list_requests(self.mchid, self.cursor)
        if record.kind in CREATING_STEPS:  # a renumbered create is this rental's too
            self.numbers |= {r["out_order_no"] for r in rows
                             if r.get("operation") == "create_service_order"
                             and r.get("out_order_no") and r["out_order_no"] not in self.seen}
        record.view = self.view()
        number = (record.view or {}).get("out_order_no")
        if number:
            self.numbers.add(number)
        record.requests = [r for r in rows if self.owns(r)]
        self.ev.requests += record.requests
        record.order = self.provider_order(number) if number else None

    def owns(self, row: dict[str, Any]) -> bool:
        """Is this request-log row about this scenario (its orders, its user)? The merchant
        may be busy with other rentals meanwhile (its own periodic reconciliation)."""
        number = row.get("out_order_no")
        if number:
            return number in self.numbers
        path = row.get("path") or ""
        return self.openid in path if "openid" in path else True

    def collect(self) -> None:
        self.deliver()
        self.settle_merchant()
        self.ev.rentals = [a.body for a in (self.driver.get_rental(r) for r in self.rentals)
                           if a.ok and isinstance(a.body, dict)]
        orders = self.sandbox.inspect_orders(self.mchid, self.openid)
        self.numbers |= {o["out_order_no"] for o in orders}
        self.numbers |= {r["out_order_no"] for r in self.ev.rentals if r.get("out_order_no")}
        rows, self.cursor = self.sandbox.list_requests(self.mchid, self.cursor)
        self.ev.requests += [r for r in rows if self.owns(r)]
        self.ev.orders = []
        for summary in orders:
            detail = self.sandbox.inspect_order(summary["pk"])
            self.ev.orders.append({"order": detail["order"], "notifications": [
                item for item in detail["timeline"] if item.get("kind") == "notification"]})

    def collect_faults(self) -> None:
        by_id = {a["id"]: a for a in self.armed}
        faults = self.sandbox.list_faults(self.tag)
        self.ev.faults = [{**f, "required": by_id.get(f["id"], {}).get("required", False),
                           "operation": (f.get("scope") or {}).get("operation")}
                          for f in sorted(faults, key=lambda f: f["id"])]


@dataclass
class ScenarioResult:
    scenario: Scenario
    verdict: Verdict
    evidence: Evidence
    seconds: float
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_dict(self, with_evidence: bool = True) -> dict[str, Any]:
        s = self.scenario
        out: dict[str, Any] = {
            "id": s.id, "slug": s.slug, "title": s.title, "category": s.category,
            "status": self.verdict.status, "passed": self.passed, "seconds": self.seconds,
            "verdict": s.verdict, "checks": [vars(c) for c in self.verdict.checks],
            "summary": summarise(self.evidence), "remedy": None if self.passed else s.remedy,
            "problem": self.problem}
        if with_evidence:
            out["evidence"] = self.evidence.to_dict()
        return out


def run_scenario(scenario: Scenario, target: Target, run_id: str | None = None,
                 openid: str | None = None, seen: set[str] | None = None) -> ScenarioResult:
    """One scenario; `seen` collects the order numbers of the scenarios run so far.

    When a step cannot run (say, there is no order to confirm because the merchant never
    created it), the evidence so far is still judged: the verdict is a failure if the judge
    finds one, else an error naming the step."""
    started = time.monotonic()
    run = Run(scenario, target, run_id or secrets.token_hex(3), seen)
    setup = problem = None
    try:
        run.start(openid)
        for index, step in enumerate(scenario.steps):
            try:
                run.execute(index, step)
            except ControlError as exc:
                problem = f"step #{index} {step.kind} could not run: {exc}"
                break
        run.collect()
    except ControlError as exc:
        setup = str(exc) if not run.ev.steps else None
        problem = problem or str(exc)
    except Exception as exc:  # one scenario's runner failure must not end the whole run
        log.exception("scenario %s: the runner failed", scenario.id)
        setup = f"the runner failed (a bug to report): {type(exc).__name__}: {exc}"
    finally:
        try:
            run.sandbox.disarm_faults(run.tag)
            run.collect_faults()
        except ControlError as exc:
            setup = setup or f"could not disarm the scenario's faults: {exc}"
    run.seen |= run.numbers
    if setup:
        verdict = Verdict(ERROR, [Check("setup", ERROR, setup)])
    else:
        verdict = run_judge(scenario.judge, run.ev, scenario.judge_params)
        if problem:
            verdict = decide([*verdict.checks, Check("ran to the end", ERROR, problem)])
    return ScenarioResult(scenario, verdict, run.ev, round(time.monotonic() - started, 2),
                          setup or problem)


Progress = Callable[[Scenario, ScenarioResult | None], None]


def run_all(target: Target, scenarios: Iterable[Scenario],
            progress: Progress | None = None) -> list[ScenarioResult]:
    """Every scenario in order, one at a time; `progress` hears each start and end."""
    run_id = secrets.token_hex(3)
    scenarios = list(scenarios)
    try:  # every user at once: probing is most of a scenario's setup
        users = pick_users(target.sandbox_url, [(user_prefix(s, f"S-{run_id}"),
                                                 s.needs_idle_user) for s in scenarios])
    except ControlError as exc:
        raise RunnerError(f"could not choose the scenarios' users: {exc}") from None
    results: list[ScenarioResult] = []
    seen: set[str] = set()
    for scenario, openid in zip(scenarios, users, strict=True):
        if progress:
            progress(scenario, None)
        result = run_scenario(scenario, target, run_id, openid, seen)
        results.append(result)
        if progress:
            progress(scenario, result)
    return results
