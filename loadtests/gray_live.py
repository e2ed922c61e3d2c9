"""Gray release, live mode: every sampled user through the real merchant and the sandbox.

The sample and each user's product, amount and behaviour are the model's (same seed, same
users: the sandbox seeds them with POST /sandbox/users/seed). Users below their product's
threshold are not offered Pay Score (no call is made). Every other user rents through the
merchant's driver API, and the sandbox decides eligibility exactly as in production (an
ineligible or frozen user must end as DEPOSIT_FALLBACK). Then the user behaves as profiled:
confirms (the control API confirms at once), declines (the control API declines), or ignores
(the merchant cancels the rental); a confirmed rental is finished with the user's amount and
WeChat's deduction follows the user's balance behaviour (the sandbox world does it).

After settling, each user is one flow judged like a load-run flow, with the state the model
predicts as the expectation, so the integration itself is tested at gray scale. The funnel
counts what was observed; conversion = users whose rental ended PAID / sampled users.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import Progress

from loadtests import judge
from loadtests.gates_math import conversion_gate
from loadtests.gray import STAGES, Assignment, assign, funnel, per_product, sample_users, sweep
from loadtests.gray import highest_passing_threshold as strictest
from loadtests.judge import FlowRecord
from loadtests.policy import Policy
from loadtests.settle import Settler
from loadtests.signer import MerchantSigner
from merchant_kit.transport import session_for

# The shortest rental: the finish comes at least this long after the confirmation. WeChat
# wants the confirmation second <= end_time <= the complete call, so a finish within the same
# second tests clock agreement to the millisecond, which no real rental does.
MIN_RENTAL_S = 1.1
# A driver call answers within the merchant's own deadlines (design.md; the kit's total
# deadline is 30 s): wait past that, so a slow answer is judged, not a harness timeout.
DRIVER_TIMEOUT_S = 65.0


class LiveGrayError(RuntimeError):
    """The live gray release could not run (seeding, driver, options)."""


def expected_states(a: Assignment, settle_days: int = 0) -> tuple[str, ...]:
    """The merchant state the user's profile implies once the run has settled."""
    if not a.eligible:
        return (judge.DEPOSIT_FALLBACK,)
    if not a.confirmed:
        return (judge.CANCELLED,)
    if a.balance == "pays" or (a.balance == "late" and a.pay_delay_days <= settle_days):
        return (judge.PAID,)
    return (judge.AWAITING_PAYMENT,)


class _Driver:
    """One user's rental through the driver API, with the user's own taps on the sandbox."""

    def __init__(self, driver_url: str, sandbox_url: str, mchid: str, mode: str,
                 min_rental_s: float = MIN_RENTAL_S):
        self.driver_url = driver_url.rstrip("/")
        self.sandbox_url = sandbox_url.rstrip("/")
        self.mchid, self.mode = mchid, mode
        self.min_rental_s = min_rental_s
        self.local = threading.local()

    @property
    def http(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = session_for(self.driver_url)
        return self.local.session

    def call(self, flow: FlowRecord, method: str, url: str, body: Any = None,
             ok: tuple[int, ...] = (200, 201)) -> dict | None:
        try:
            r = self.http.request(method, url, json=body, timeout=DRIVER_TIMEOUT_S)
        except requests.RequestException as exc:
            flow.http_failures += 1
            flow.errors.append(f"{method} {url.rsplit('/', 2)[-2:]}: {type(exc).__name__}")
            return None
        if r.status_code not in ok:
            flow.http_failures += 1
            flow.errors.append(f"{method} {'/'.join(url.rsplit('/', 2)[-2:])}: {r.status_code} "
                               f"{r.text[:120]}")
            return None
        data = r.json() if r.content else {}
        if isinstance(data, dict) and data.get("merchant_state"):
            flow.seen_states.append(data["merchant_state"])
        return data

    def user_taps(self, flow: FlowRecord, action: str) -> None:
        # 400: the world's own simulated user got there first, which is the same tap.
        url = (f"{self.sandbox_url}/sandbox/merchants/{self.mchid}/orders/{flow.out_order_no}"
               f"/{action}")
        try:
            r = self.http.post(url, json={"openid": flow.openid} if action == "confirm" else {},
                               timeout=30)
            if r.status_code not in (200, 400):
                flow.http_failures += 1
        except requests.RequestException:
            flow.http_failures += 1

    def drive(self, a: Assignment, flow: FlowRecord) -> FlowRecord:
        flow.started = time.time()
        rent = self.call(flow, "POST", f"{self.driver_url}/rentals",
                         {"openid": a.openid, "mode": self.mode, "deposit": a.risk_fund})
        if rent is not None:
            flow.rental_id = str(rent.get("rental_id"))
            flow.out_order_no = rent.get("out_order_no")
            if flow.out_order_no and rent.get("merchant_state") != judge.DEPOSIT_FALLBACK:
                self._behave(a, flow)
        flow.ended = time.time()
        return flow

    def _behave(self, a: Assignment, flow: FlowRecord) -> None:
        rental = f"{self.driver_url}/rentals/{flow.rental_id}"
        if a.confirm == "confirms":
            self.user_taps(flow, "confirm")
            time.sleep(self.min_rental_s)  # the user has the power bank for a moment at least
            self.call(flow, "POST", f"{rental}/finish", {"amount": a.amount})
        elif a.confirm == "declines":
            self.user_taps(flow, "decline")
        else:  # the user walked away: the merchant gives the device back to the shelf
            self.call(flow, "POST", f"{rental}/cancel", {"reason": "用户未确认"})


def _seed(sandbox_url: str, users: int, seed: int, reuse: bool) -> dict[str, Any]:
    r = requests.post(f"{sandbox_url.rstrip('/')}/sandbox/users/seed",
                      json={"count": users, "seed": seed}, timeout=600)
    if r.status_code != 200:
        raise LiveGrayError(f"seeding users failed: {r.status_code} {r.text[:200]}")
    answer = r.json()
    if answer.get("inserted", 0) < users and not reuse:
        raise LiveGrayError(
            f"{users - answer.get('inserted', 0)} users of seed {seed} already live in this "
            "sandbox and may have changed (defaults, freezes): pick another --seed, use a fresh "
            "sandbox, or pass reuse_users")
    return answer


def run_live(policy: Policy, users: int, seed: int, *, driver_url: str, sandbox_url: str,
             merchant_json: Path | None = None, concurrency: int = 32,
             console: Console | None = None, settle_days: int = 0,
             reuse_users: bool = False, min_rental_s: float = MIN_RENTAL_S) -> dict[str, Any]:
    """Drive the sample, settle, judge; the gray result plus flows and throughput."""
    console = console or Console()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    from fault_scenarios.clients import DriverNotFound, resolve_driver_url

    try:
        driver_url = resolve_driver_url(driver_url)
    except DriverNotFound as exc:
        raise LiveGrayError(str(exc)) from None
    signer = MerchantSigner.from_file(merchant_json) if merchant_json else None
    if signer is not None:
        signer.sync_clock(sandbox_url)
    mchid = signer.mchid if signer else _driver_mchid(driver_url)
    if not mchid:
        raise LiveGrayError("the merchant's mchid is unknown: pass --merchant-json")
    seeded = _seed(sandbox_url, users, seed, reuse_users)
    assignments = assign(sample_users(users, seed), policy, seed)
    timings["prepare_s"] = time.perf_counter() - t0
    thresholds = {p.id: p.min_score for p in policy.products}
    offered = [a for a in assignments if a.score >= thresholds[a.product]]
    flows = {a.openid: FlowRecord(flow_id=a.openid, target="driver", openid=a.openid,
                                  mode=policy.mode, intent=f"{a.confirm}/{a.balance}",
                                  amount=a.amount, expected=expected_states(a, settle_days))
             for a in offered}
    driver = _Driver(driver_url, sandbox_url, mchid, policy.mode, min_rental_s)
    t1 = time.perf_counter()
    with Progress(console=console, transient=True) as progress, \
            ThreadPoolExecutor(concurrency) as pool:
        task = progress.add_task(f"driving {len(offered):,} offered users", total=len(offered))
        for _ in pool.map(lambda a: driver.drive(a, flows[a.openid]), offered):
            progress.advance(task)
    timings["drive_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    settler = Settler(sandbox_url, signer, driver_url, workers=min(concurrency, 16))
    settled = settler.settle(advance=f"{settle_days}d" if settle_days else "0s")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("judging flows", total=len(flows))
        verdicts = settler.judge_all(flows.values(),
                                     progress=lambda n: progress.advance(task, n))
    timings["settle_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    tally = judge.tally(flows.values(), verdicts)
    result = _observed(policy, assignments, thresholds, verdicts, seed)
    result.update(
        flows=tally.to_dict(), settle=settled.__dict__, seeded=seeded, timings=timings,
        settle_days=settle_days,
        throughput_users_per_s=users / timings["drive_s"] if timings["drive_s"] else 0.0,
        throughput_driven_per_s=len(offered) / timings["drive_s"] if timings["drive_s"] else 0.0)
    return result


def _observed(policy: Policy, assignments: list[Assignment], thresholds: dict[str, int],
              verdicts: dict[str, judge.FlowVerdict], seed: int) -> dict[str, Any]:
    """The funnel as observed: eligibility of users never offered comes from the rules."""
    counts = dict.fromkeys(STAGES, 0)
    unpaid = 0
    for a in assignments:
        counts["sampled"] += 1
        verdict = verdicts.get(a.openid)
        if verdict is None:  # below the threshold: nobody asked the provider
            counts["eligible"] += a.eligible
            continue
        final = verdict.final_state
        if final == judge.DEPOSIT_FALLBACK:
            continue
        counts["eligible"] += 1
        counts["offered"] += 1
        if final in (judge.PAID, judge.AWAITING_PAYMENT):
            counts["confirmed"] += 1
            counts["completed"] += 1
            counts["paid"] += final == judge.PAID
            unpaid += final == judge.AWAITING_PAYMENT
    gate = conversion_gate(counts["paid"], counts["sampled"])
    rows, previous = [], None
    for stage in STAGES:
        count = counts[stage]
        rows.append({"stage": stage, "count": count,
                     "of_sampled": count / counts["sampled"] if counts["sampled"] else 0.0,
                     "of_previous": count / previous if previous else 1.0})
        previous = count or None
    points = sweep(assignments)
    done = counts["completed"]
    model = funnel(assignments, thresholds)
    return {
        "mode": "live", "source": "population (seeded into the sandbox)", "seed": seed,
        "policy": policy.to_dict(), "funnel": rows, "conversion": gate.to_dict(),
        "conversion_definition": "users whose rental ended PAID / sampled users",
        "default_rate": unpaid / done if done else 0.0,
        "overdue_rate": unpaid / done if done else 0.0,
        "defaulted": unpaid, "late": 0,
        # Who the rules turn away, for the whole sample (never-offered users included).
        "ineligible": dict(model.ineligible), "frozen_by_risk_tier": dict(model.frozen),
        "products": per_product(assignments, policy), "sweep": points,
        "highest_passing_threshold": strictest(points), "sweep_source": "model (same users)",
        "model": {"funnel": model.rows(), "conversion": model.counts["paid"] / len(assignments)
                  if assignments else 0.0, "default_rate": model.default_rate},
    }


def _driver_mchid(driver_url: str) -> str | None:
    from loadtests.runner import driver_mchid

    return driver_mchid(driver_url)
