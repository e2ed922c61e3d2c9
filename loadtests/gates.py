"""`payscore gates`: WeChat's four onboarding stages, in order, and one readiness report.

1. API application: a clean run of rentals through the driver, then the sandbox's request log
   for the merchant since the run began must show zero SIGN_ERROR (and at least one call).
2. Sandbox test: the 30 anomaly scenarios (fault_scenarios' runner; --quick runs a few, so the
   check cannot pass) and a load run through the driver judged by the failure-rate gate (95 %
   upper bound < 0.01 %).
3. Gray release: the sampled users through the merchant (live mode) judged by the conversion
   gate (95 % Wilson interval against 15 %); the live flows must not fail either.
4. Go-live: scenario 30 (sustained outage: the merchant's breaker opens, probes, closes) from
   the sandbox test's run, and the breaker the driver reports in GET {driver}/health.

A stage passes only when all its checks pass, fails when any fails, else is inconclusive; the
report's verdict is the same rule over the stages. Sizes: `--quick` is CI-sized (verdicts may
be inconclusive: the failure-rate gate alone needs ~30,000 clean flows); the full size is in
`GateSettings.for_run`.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import Progress

from loadtests import scenarios
from loadtests.gates_math import FAIL, INCONCLUSIVE, PASS, flows_needed_for_clean_pass
from loadtests.judge import FlowRecord
from loadtests.policy import POLICIES_DIR, load_policy

STAGE_TITLES = {
    "api_application": "API application: every call correctly signed",
    "sandbox_test": "Sandbox test: 30 anomaly scenarios and a load run",
    "gray_release": "Gray release: conversion of the sampled users",
    "go_live": "Go-live: the risk circuit breaker",
}

BREAKER_LIMITS = {"fail_max": (1, 50), "reset_timeout": (1.0, 600.0)}


@dataclass
class GateSettings:
    driver_url: str
    sandbox_url: str
    merchant_json: Path | None
    out_dir: Path
    quick: bool = False
    seed: int | None = None
    policy_path: Path | None = None
    api_rentals: int = 20
    load_users: int = 40
    # The load run lasts until the failure-rate gate can pass (its clean-flow count, 2 %
    # spare for flows the judge drops as interrupted) or the duration runs out: a fixed time
    # passed on a fast machine and left the gate inconclusive on a slower one.
    load_flows: int = field(default_factory=lambda: math.ceil(
        flows_needed_for_clean_pass() * 1.02))
    load_duration: str = "45m"
    load_faults: str | None = None
    scenario_ids: tuple[int, ...] | None = None  # None: the whole catalogue
    gray_users: int = 50_000
    gray_mode: str = "live"
    gray_concurrency: int = 32

    @classmethod
    def for_run(cls, *, quick: bool, **kw: Any) -> GateSettings:
        settings = cls(quick=quick, **kw)
        if quick:
            settings.api_rentals, settings.load_users, settings.load_duration = 5, 4, "10s"
            settings.load_flows = 0
            settings.gray_users, settings.gray_concurrency = 120, 16
            if settings.scenario_ids is None:
                settings.scenario_ids = scenarios.QUICK
        return settings


@dataclass
class Stage:
    name: str
    title: str
    verdict: str = INCONCLUSIVE
    checks: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def check(self, name: str, verdict: str, detail: str, **evidence: Any) -> None:
        self.checks.append({"check": name, "verdict": verdict, "detail": detail, **evidence})

    def decide(self) -> str:
        self.verdict = combine(c["verdict"] for c in self.checks)
        return self.verdict


def parse_ids(text: str | None) -> tuple[int, ...] | None:
    """'1,5,10-12' -> (1, 5, 10, 11, 12); None or '' -> None (the whole catalogue)."""
    if not text:
        return None
    ids: set[int] = set()
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ValueError(f"not a scenario id or range: {part!r}")
        ids.update(range(int(low), int(high or low) + 1))
    return tuple(sorted(ids))


def combine(verdicts: Any) -> str:
    """pass only if every verdict passes; fail if any fails; otherwise inconclusive."""
    verdicts = list(verdicts)
    if not verdicts:
        return INCONCLUSIVE
    if any(v in (FAIL, "error") for v in verdicts):
        return FAIL
    return PASS if all(v == PASS for v in verdicts) else INCONCLUSIVE


@contextmanager
def timed_bar(console: Console, label: str, seconds: float) -> Iterator[None]:
    """A progress bar that follows the wall clock while a blocking step runs."""
    done = threading.Event()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=max(seconds, 1.0))
        started = time.monotonic()

        def tick() -> None:
            while not done.wait(0.5):
                progress.update(task, completed=min(time.monotonic() - started, seconds))

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=2)


# ---------------------------------------------------------------------------- stage 1


def newest_request_id(sandbox_url: str) -> int:
    r = requests.get(f"{sandbox_url}/sandbox/api/requests", params={"limit": 1}, timeout=30)
    rows = r.json().get("requests", []) if r.status_code == 200 else []
    return int(rows[0]["id"]) if rows else 0


def requests_since(sandbox_url: str, mchid: str, since_id: int, pages: int = 200
                   ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for _ in range(pages):
        r = requests.get(f"{sandbox_url}/sandbox/requests",
                         params={"mchid": mchid, "since_id": since_id, "limit": 5000}, timeout=60)
        r.raise_for_status()
        data = r.json()
        rows.extend(data.get("requests", []))
        if not data.get("requests") or data.get("last_id", since_id) == since_id:
            break
        since_id = data["last_id"]
    return rows


def api_application(s: GateSettings, mchid: str, console: Console) -> Stage:
    from loadtests.gray_live import _Driver

    stage = Stage("api_application", STAGE_TITLES["api_application"])
    started = newest_request_id(s.sandbox_url)
    driver = _Driver(s.driver_url, s.sandbox_url, mchid, "need_confirm")
    from loadtests.gray import Assignment

    driver_errors: list[str] = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("clean rentals", total=s.api_rentals)
        for n in range(s.api_rentals):
            a = Assignment("o_magic_always_confirms", 700, "power_bank", 9900, 100 + n, None,
                           "confirms", "pays", 0)
            flow = FlowRecord(flow_id=f"api{n}", target="driver", openid=a.openid)
            driver.drive(a, flow)
            driver_errors.extend(flow.errors)
            progress.advance(task)
    rows = requests_since(s.sandbox_url, mchid, started)
    v3 = [r for r in rows if (r.get("path") or "").startswith("/v3/")]
    sign_errors = [r for r in v3 if r.get("code") == "SIGN_ERROR"]
    by_op: dict[str, int] = {}
    for row in v3:
        by_op[row.get("operation") or "?"] = by_op.get(row.get("operation") or "?", 0) + 1
    if sign_errors:
        verdict = FAIL
        detail = (f"{len(sign_errors)} of {len(v3)} calls rejected with SIGN_ERROR, first: "
                  f"{sign_errors[0].get('verdict')}")
    elif not v3:
        # An eligible user renting 20 times and no call at all: the integration is not wired
        # to the sandbox (or its driver fails before calling), whatever else it does.
        verdict = FAIL
        detail = (f"the merchant made no /v3/ call in {s.api_rentals} clean rentals"
                  + (f"; its driver answered: {driver_errors[0]}" if driver_errors else ""))
    else:
        verdict, detail = PASS, f"{len(v3)} signed calls, zero SIGN_ERROR"
    stage.check("zero_sign_error", verdict, detail, calls=len(v3), sign_errors=len(sign_errors),
                by_operation=by_op, driver_errors=len(driver_errors),
                examples=[{k: r.get(k) for k in ("operation", "status", "code", "verdict")}
                          for r in sign_errors[:5]])
    stage.decide()
    return stage


# ---------------------------------------------------------------------------- stage 2


def sandbox_test(s: GateSettings, console: Console) -> tuple[Stage, dict[str, Any]]:
    from loadtests.report import gate_line
    from loadtests.runner import LoadOptions, LoadTestError, parse_duration_s, run_load

    stage = Stage("sandbox_test", STAGE_TITLES["sandbox_test"])
    scenario_result = scenarios.run_catalogue(
        s.driver_url, s.sandbox_url, console, only=s.scenario_ids,
        out_dir=s.out_dir / "scenarios", required=scenarios.CATALOGUE_SIZE)
    stage.check("anomaly_scenarios", scenario_result["verdict"], scenario_result["detail"],
                **{k: v for k, v in scenario_result.items() if k not in ("verdict", "detail")})
    seconds = parse_duration_s(s.load_duration)
    opts = LoadOptions(target="driver", users=s.load_users, spawn_rate=max(1, s.load_users / 4),
                       duration=s.load_duration, sandbox_url=s.sandbox_url,
                       out_dir=s.out_dir / "load", driver_url=s.driver_url,
                       merchant_json=s.merchant_json, faults=s.load_faults,
                       seed=s.seed or 1, openids=["o_magic_always_confirms"],
                       flows=s.load_flows)
    load = None
    try:
        until = f"{s.load_flows} flows, at most {s.load_duration}" if s.load_flows else \
            s.load_duration
        with timed_bar(console, f"load run ({s.load_users} users, {until})", seconds + 20):
            load = run_load(opts).to_dict()
    except LoadTestError as exc:
        stage.check("failure_rate", "error", f"the load run could not run: {exc}")
    if load is not None:
        gate = load["gate"]
        stage.check("failure_rate", gate["verdict"], gate_line(gate), flows=load["tally"]["flows"],
                    failed=load["tally"]["failed"], by_category=load["tally"]["by_category"],
                    http_failures=load["tally"]["http_failures"],
                    requests=(load["locust"]["aggregated"] or {}).get("requests"))
    stage.decide()
    return stage, {"load": load, "scenarios": scenario_result}


# ---------------------------------------------------------------------------- stages 3 and 4


def gray_release(s: GateSettings, console: Console) -> tuple[Stage, dict[str, Any] | None]:
    from loadtests import gray
    from loadtests.gray_live import LiveGrayError, run_live
    from loadtests.report import gate_line

    stage = Stage("gray_release", STAGE_TITLES["gray_release"])
    policy = load_policy(s.policy_path or POLICIES_DIR / "power_bank.yaml")
    seed = s.seed if s.seed is not None else secrets.randbelow(10**9)
    try:
        if s.gray_mode == "model":
            result = gray.run_model(policy, s.gray_users, seed)
        else:
            result = run_live(policy, s.gray_users, seed, driver_url=s.driver_url,
                              sandbox_url=s.sandbox_url, merchant_json=s.merchant_json,
                              concurrency=s.gray_concurrency, console=console)
    except LiveGrayError as exc:
        stage.check("conversion", "error", str(exc))
        stage.decide()
        return stage, None
    gate = result["conversion"]
    stage.check("conversion", gate["verdict"], gate_line(gate), sampled=gate["sample"],
                converted=gate["successes_or_failures"], seed=seed, mode=result["mode"])
    if "flows" in result:
        flows = result["flows"]
        stage.check("gray_flows", FAIL if flows["failed"] else PASS,
                    f"{flows['flows']:,} live flows judged, {flows['failed']:,} failed",
                    by_category=flows["by_category"], examples=flows["examples"][:5])
    stage.decide()
    return stage, result


def go_live(s: GateSettings, console: Console, earlier: dict[str, Any] | None) -> Stage:
    """Scenario 30's verdict (from the sandbox test's run) and the configured breaker."""
    stage = Stage("go_live", STAGE_TITLES["go_live"])
    row = scenarios.one(earlier or {}, scenarios.BREAKER_SCENARIO)
    if row is not None:
        stage.check("breaker_scenario_30", PASS if row["passed"] else FAIL,
                    f"scenario 30 (sustained provider outage): {row['status']}",
                    seconds=row.get("seconds"), remedy=row.get("remedy"))
    elif not scenarios.available():
        stage.check("breaker_scenario_30", INCONCLUSIVE, "the scenario runner is not installed")
    else:
        stage.check("breaker_scenario_30", INCONCLUSIVE,
                    "scenario 30 was not part of this run (--quick runs a subset; "
                    "--scenarios 30 adds it)")
    verdict, detail, breaker = configured_breaker(s.driver_url)
    stage.check("configured_breaker", verdict, detail, breaker=breaker)
    stage.decide()
    return stage


def configured_breaker(driver_url: str) -> tuple[str, str, dict[str, Any] | None]:
    """The breaker the merchant reports in GET {driver}/health (provider.breaker)."""
    try:
        health = requests.get(f"{driver_url.rstrip('/')}/health", timeout=10).json()
    except (requests.RequestException, ValueError) as exc:
        return FAIL, f"GET /health failed: {exc}", None
    breaker = (health.get("provider") or {}).get("breaker") or health.get("breaker")
    if not isinstance(breaker, dict):
        return FAIL, "the driver's /health reports no circuit breaker", None
    problems = []
    for key, (low, high) in BREAKER_LIMITS.items():
        value = breaker.get(key)
        if not isinstance(value, int | float) or not low <= value <= high:
            problems.append(f"{key}={value!r} outside [{low}, {high}]")
    if breaker.get("state") not in (None, "closed"):
        problems.append(f"state {breaker.get('state')!r} at the start, expected closed")
    if problems:
        return FAIL, "; ".join(problems), breaker
    return PASS, (f"opens after {breaker['fail_max']} failures, probes after "
                  f"{breaker['reset_timeout']}s"), breaker


# ---------------------------------------------------------------------------- the whole run


def run_gates(s: GateSettings, console: Console | None = None,
              stage_hook: Callable[[Stage], None] | None = None) -> dict[str, Any]:
    """Run the four stages in order; write gates.json and gates.html; print the summary."""
    from loadtests import gates_report
    from loadtests.runner import driver_mchid, require_loopback, resolve_driver
    from loadtests.signer import MerchantSigner

    console = console or Console()
    require_loopback(s.driver_url, "--driver")
    require_loopback(s.sandbox_url, "--sandbox")
    s.driver_url = resolve_driver(s.driver_url)
    s.out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    mchid = (MerchantSigner.from_file(s.merchant_json).mchid if s.merchant_json
             else driver_mchid(s.driver_url))
    stages: list[Stage] = []
    extras: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], Stage]]] = [
        ("API application", lambda: api_application(s, str(mchid), console)),
        ("Sandbox test", lambda: _keep(sandbox_test(s, console), extras, "sandbox")),
        ("Gray release", lambda: _keep(gray_release(s, console), extras, "gray")),
        ("Go-live", lambda: go_live(s, console, (extras.get("sandbox") or {}).get("scenarios"))),
    ]
    step_names = list(STAGE_TITLES)
    for n, (title, step) in enumerate(steps):
        if stages and stages[0].verdict == FAIL:
            # Without correctly signed calls nothing later can pass, and a 20-minute load
            # run of failing flows proves nothing more: the later stages are not run.
            stage = Stage(step_names[n], STAGE_TITLES[step_names[n]])
            stage.check("not_run", FAIL, "not run: the API application stage failed")
            stage.decide()
        else:
            console.print(f"[bold]{title}[/] …")
            t0 = time.monotonic()
            stage = step()
            stage.seconds = time.monotonic() - t0
        stages.append(stage)
        if stage_hook is not None:
            stage_hook(stage)
    report = {
        "verdict": combine(st.verdict for st in stages), "quick": s.quick,
        "driver": s.driver_url, "sandbox": s.sandbox_url, "mchid": mchid,
        "wall_s": time.monotonic() - started, "stages": [asdict(st) for st in stages],
        "load": (extras.get("sandbox") or {}).get("load"), "gray": extras.get("gray"),
        "scenarios": (extras.get("sandbox") or {}).get("scenarios"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(s).items()},
    }
    (s.out_dir / "gates.json").write_text(json.dumps(report, indent=2, default=str))
    (s.out_dir / "gates.html").write_text(gates_report.html(report))
    gates_report.print_summary(report, console)
    return report


def _keep(pair: tuple[Stage, dict[str, Any] | None], extras: dict[str, Any], key: str
          ) -> Stage:
    stage, data = pair
    extras[key] = data
    return stage


__all__ = ["FAIL", "INCONCLUSIVE", "PASS", "GateSettings", "Stage", "combine",
           "configured_breaker", "parse_ids", "run_gates"]
