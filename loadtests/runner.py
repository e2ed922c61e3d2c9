"""`payscore loadtest`: Locust headless as subprocesses, then settle, judge and gate.

Locust runs through its own CLI, so distributed mode is Locust's: with K workers the runner
starts one ``--master --expect-workers K`` bound to 127.0.0.1 and K ``--worker`` processes.
Durations are bounded (1 h unless the caller insists) and targets must be loopback addresses.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtests import flowlog, judge
from loadtests.faults import FaultArmer, parse_fault_mix
from loadtests.gates_math import GateResult, failure_rate_gate
from loadtests.runconfig import OPTION, RunConfig
from loadtests.settle import Settler, failure_timeline, sandbox_now_us
from loadtests.signer import MerchantSigner
from loadtests.sink import CallbackSink

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MAX_DURATION_S = 3600
USER_CLASSES = {"sandbox": "SandboxMerchantUser", "driver": "DriverUser"}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")


class LoadTestError(RuntimeError):
    """A run that must not start (bad target, unbounded duration) or could not run."""


def parse_duration_s(text: str | int) -> int:
    """'90s', '5m', '1h30m', '45' -> seconds."""
    if isinstance(text, int):
        return text
    match = _DURATION.match(str(text).strip().lower())
    if not match or not any(match.groups()):
        raise LoadTestError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def require_loopback(url: str, what: str) -> None:
    """Refuse anything but 127.0.0.0/8, ::1 and localhost: load is only ever local."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise LoadTestError(f"{what} {url!r} is not a loopback address; load runs only target "
                        "127.0.0.1 (see loadtests/README.md for several machines)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoadOptions:
    target: str  # sandbox | driver
    users: int
    spawn_rate: float
    duration: str | int
    sandbox_url: str
    out_dir: Path
    driver_url: str | None = None
    merchant_json: Path | None = None
    faults: str | None = None
    workers: int = 0
    seed: int = 1
    i_know: bool = False
    openids: list[str] = field(default_factory=lambda: ["o_magic_always_confirms"])
    stop_timeout_s: int = 30
    wait_max: float = 0.05
    flows: int = 0  # stop once this many flows are recorded; the duration is then the cap


@dataclass
class LoadResult:
    run_id: str
    options: dict[str, Any]
    wall_s: float
    locust: dict[str, Any]
    tally: dict[str, Any]
    gate: dict[str, Any]
    faults: list[dict[str, Any]]
    settle: dict[str, Any]
    timeline: list[dict[str, float]]
    orphans: list[str] | None
    sink: dict[str, Any] | None
    paths: dict[str, str]
    run_config: str = ""  # the --payscore-run JSON, to start more workers by hand

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def validate(opts: LoadOptions) -> int:
    """Check the options; returns the duration in seconds."""
    if opts.target not in USER_CLASSES:
        raise LoadTestError(f"--target must be one of {', '.join(USER_CLASSES)}")
    seconds = parse_duration_s(opts.duration)
    if seconds <= 0:
        raise LoadTestError("--duration must be positive")
    if seconds > MAX_DURATION_S and not opts.i_know:
        raise LoadTestError("runs longer than 1h need --i-know")
    if opts.users < 1 or opts.spawn_rate <= 0 or opts.workers < 0 or opts.flows < 0:
        raise LoadTestError("--users >= 1, --spawn-rate > 0, --workers >= 0 and --flows >= 0 "
                            "please")
    require_loopback(opts.sandbox_url, "--sandbox")
    if opts.target == "driver":
        if not opts.driver_url:
            raise LoadTestError("--target driver needs --driver URL")
        require_loopback(opts.driver_url, "--driver")
    elif opts.merchant_json is None or not Path(opts.merchant_json).exists():
        raise LoadTestError("--target sandbox needs the merchant's merchant.json "
                            "(--merchant-json; `payscore up` writes .payscore/merchant.json)")
    parse_fault_mix(opts.faults)
    return seconds


def locust_commands(opts: LoadOptions, cfg: RunConfig,
                    out: Path) -> list[list[str]]:
    """The master (or single) command first, then one command per worker."""
    host = cfg.driver_url if opts.target == "driver" else cfg.sandbox_url
    common = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
              "--host", str(host), OPTION, cfg.to_json(), "--loglevel", os.environ.get("PAYSCORE_LOCUST_LOGLEVEL", "WARNING"),
              "--stop-timeout", str(opts.stop_timeout_s)]
    head = common + ["-u", str(opts.users), "-r", str(opts.spawn_rate),
                     "--csv", str(out / "locust"), "--html", str(out / "locust.html"),
                     "--exit-code-on-error", "0", "--only-summary"]
    if not opts.workers:
        return [head + [USER_CLASSES[opts.target]]]
    port = free_port()
    master = head + ["--master", "--expect-workers", str(opts.workers),
                     "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                     USER_CLASSES[opts.target]]
    worker = common + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port),
                       USER_CLASSES[opts.target]]
    return [master] + [list(worker) for _ in range(opts.workers)]


def _spawn(commands: list[list[str]], out: Path, seconds: int, grace_s: int) -> int:
    """Run master (+ workers) to completion within a hard bound; returns the master's code."""
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    try:
        for index, cmd in enumerate(commands):
            name = "master" if index == 0 else f"worker{index}"
            log = (logs / f"{name}.log").open("w")
            procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env),
                          log))
        deadline = time.monotonic() + seconds + grace_s
        master = procs[0][0]
        try:
            code = master.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise LoadTestError(f"locust did not finish within {seconds + grace_s}s; "
                                f"see {logs}") from None
        # Workers have sent their flows before reporting stopped, but a master that quits
        # after they stopped does not tell them (it forgot them): end them ourselves.
        for proc, _ in procs[1:]:
            for stop in (None, proc.terminate, proc.kill):
                if stop is not None:
                    stop()
                try:
                    proc.wait(timeout=3)
                    break
                except subprocess.TimeoutExpired:
                    continue
        return code
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.close()


def read_locust_stats(out: Path) -> dict[str, Any]:
    """Per-name and aggregated rows of Locust's <prefix>_stats.csv."""
    import csv

    path = out / "locust_stats.csv"
    if not path.exists():
        return {"rows": [], "aggregated": None}
    rows = list(csv.DictReader(path.open(encoding="utf-8")))

    def num(row: dict, key: str) -> float:
        try:
            return float(row.get(key) or 0)
        except ValueError:
            return 0.0

    table = [{"type": r.get("Type"), "name": r.get("Name"),
              "requests": int(num(r, "Request Count")), "failures": int(num(r, "Failure Count")),
              "median_ms": num(r, "Median Response Time"), "p95_ms": num(r, "95%"),
              "p99_ms": num(r, "99%"), "rps": num(r, "Requests/s")} for r in rows]
    aggregated = next((t for t in table if t["name"] == "Aggregated"), None)
    exceptions = []
    if (out / "locust_exceptions.csv").exists():
        exceptions = [{"count": int(num(r, "Count")), "message": r.get("Message")}
                      for r in csv.DictReader((out / "locust_exceptions.csv").open())]
    return {"rows": [t for t in table if t["name"] != "Aggregated"], "aggregated": aggregated,
            "exceptions": exceptions}


def resolve_driver(url: str) -> str:
    """The driver API's base URL (the merchant's root URL is accepted too), or LoadTestError."""
    from fault_scenarios.clients import DriverNotFound, resolve_driver_url

    try:
        return resolve_driver_url(url)
    except DriverNotFound as exc:
        raise LoadTestError(str(exc)) from None


def driver_mchid(driver_url: str) -> str | None:
    """The merchant id a driver reports in GET {driver}/health, if it does."""
    import requests

    try:
        r = requests.get(f"{driver_url.rstrip('/')}/health", timeout=10)
        return str(r.json().get("mchid") or "") or None if r.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None


def run_load(opts: LoadOptions, progress: Callable[[str], None] | None = None) -> LoadResult:
    """Run, settle, judge and gate one load run; results are written under opts.out_dir."""
    seconds = validate(opts)
    if opts.target == "driver":
        opts.driver_url = resolve_driver(str(opts.driver_url))
    say = progress or (lambda _text: None)
    out = Path(opts.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_id = "load" + secrets.token_hex(4)
    flows_path = out / "flows.jsonl"
    flows_path.unlink(missing_ok=True)
    signer = MerchantSigner.from_file(opts.merchant_json) if opts.merchant_json else None
    if signer is not None:
        signer.sync_clock(opts.sandbox_url)
    mchid = signer.mchid if signer else None
    if opts.target == "driver" and mchid is None:
        mchid = driver_mchid(str(opts.driver_url))
    sink = CallbackSink(signer).start() if opts.target == "sandbox" and signer else None
    try:
        cfg = RunConfig(run_id=run_id, target=opts.target,
                        sandbox_url=opts.sandbox_url.rstrip("/"),
                        driver_url=opts.driver_url.rstrip("/") if opts.driver_url else None,
                        merchant_json=str(Path(opts.merchant_json).resolve())
                        if opts.merchant_json else None, mchid=mchid,
                        notify_url=sink.url if sink else None, openids=list(opts.openids),
                        seed=opts.seed, flows_path=str(flows_path), wait_max=opts.wait_max,
                        run_time_s=seconds, stop_after_flows=opts.flows)
        started = time.monotonic()
        started_us = sandbox_now_us(cfg.sandbox_url)
        code, armed = _locust_under_faults(opts, cfg, out, seconds, say)
        say("settling: draining callbacks"
            + (", reconciling" if opts.target == "driver" else ""))
        settler = Settler(cfg.sandbox_url, signer, cfg.driver_url)
        settled = settler.settle()
        flows = flowlog.read_flows(flows_path)
        say(f"judging {len(flows)} flows")
        verdicts = settler.judge_all(flows, sink.events_for if sink else None)
    finally:
        if sink is not None:
            sink.stop()
    tally = judge.tally(flows, verdicts)
    orphans = None
    if mchid and opts.target == "driver":
        created = settler.created_orders(mchid, cfg.openids, started_us)
        if created is not None:
            orphans = judge.orphan_orders((f.out_order_no for f in flows if f.out_order_no),
                                          created)
            # Each order no flow knows of is at least one failed flow (a duplicate or a leak).
            tally.failed += len(orphans)
            tally.flows += len(orphans)
            if orphans:
                tally.by_category["duplicated"] += len(orphans)
    gate: GateResult = failure_rate_gate(tally.failed, tally.flows)
    result = LoadResult(
        run_id=run_id, options=_public_options(opts, seconds), wall_s=time.monotonic() - started,
        locust={**read_locust_stats(out), "exit_code": code}, tally=tally.to_dict(),
        gate=gate.to_dict(), faults=armed, settle=settled.__dict__,
        timeline=failure_timeline(flows, verdicts), orphans=orphans,
        sink=sink.summary() if sink else None,
        paths={"out": str(out), "flows": str(flows_path), "html": str(out / "locust.html"),
               "csv": str(out / "locust_stats.csv"), "results": str(out / "results.json")},
        run_config=cfg.to_json())
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result


def _locust_under_faults(opts: LoadOptions, cfg: RunConfig, out: Path, seconds: int,
                         say: Callable[[str], None]) -> tuple[int, list[dict[str, Any]]]:
    """Arm the mix, run Locust, disarm (always); returns Locust's code and the faults taken."""
    armer = FaultArmer(cfg.sandbox_url)
    armed: list[dict[str, Any]] = []
    try:
        specs = parse_fault_mix(opts.faults)
        if specs:
            if not cfg.mchid:
                raise LoadTestError("a fault mix is scoped to the merchant: pass "
                                    "--merchant-json (or a driver whose /health names mchid)")
            say(f"arming {len(specs)} fault(s) for {cfg.run_id}")
            armed = list(armer.arm(specs, cfg.mchid, cfg.run_id, opts.seed))
        say(f"locust: {opts.users} users, {seconds}s"
            + (f" or {opts.flows} flows" if opts.flows else "")
            + f", {opts.workers or 'no'} worker process(es)")
        code = _spawn(locust_commands(opts, cfg, out), out, seconds,
                      grace_s=opts.stop_timeout_s + 60)
    finally:
        if armer.armed:
            armer.disarm(cfg.run_id)
    return code, (armer.taken(cfg.run_id) or armed) if armed else []


def _public_options(opts: LoadOptions, seconds: int) -> dict[str, Any]:
    return {"target": opts.target, "users": opts.users, "spawn_rate": opts.spawn_rate,
            "duration_s": seconds, "flows": opts.flows, "workers": opts.workers,
            "faults": opts.faults,
            "sandbox": opts.sandbox_url, "driver": opts.driver_url, "seed": opts.seed}
