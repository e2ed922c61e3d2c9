"""`payscore loadtest`, `payscore gray` and `payscore gates` (registered by sandbox.cli).

Exit codes, the same for the three commands: 0 every gate passed; 1 a gate failed (or, for
loadtest, a flow failed); 3 inconclusive (not enough evidence yet: never a pass); 2 the run
could not start or broke (bad options, unreachable target).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console

console = Console()
EXIT = {"pass": 0, "fail": 1, "inconclusive": 3}
DEFAULT_MERCHANT_JSON = Path(".payscore/merchant.json")


def _merchant_json(path: str | None) -> Path | None:
    if path:
        return Path(path)
    return DEFAULT_MERCHANT_JSON if DEFAULT_MERCHANT_JSON.exists() else None


def _sandbox_url(url: str | None, merchant_json: Path | None) -> str:
    if url:
        return url
    if merchant_json is not None and merchant_json.exists():
        return json.loads(merchant_json.read_text())["base_url"]
    return "http://127.0.0.1:8080"


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--target", type=click.Choice(["sandbox", "driver"]), default="sandbox",
                  show_default=True, help="sandbox: act as the merchant against the sandbox; "
                  "driver: drive a merchant integration through its driver API.")
    @click.option("--users", default=10, show_default=True, type=click.IntRange(1, 100_000))
    @click.option("--spawn-rate", default=5.0, show_default=True, type=float)
    @click.option("--duration", default="30s", show_default=True,
                  help="e.g. 30s, 5m, 1h (more than 1h needs --i-know).")
    @click.option("--flows", default=0, show_default=True, type=click.IntRange(0, 10**7),
                  help="Stop once this many flows are recorded (the duration is then the cap); "
                       "29956 clean flows pass the failure-rate gate.")
    @click.option("--faults", default=None,
                  help='e.g. "http_error:500@1%,reset_after_commit@0.5%,callback_duplicate@2%"')
    @click.option("--workers", default=0, show_default=True, type=click.IntRange(0, 64),
                  help="Locust worker processes (distributed mode on 127.0.0.1).")
    @click.option("--sandbox", "sandbox_url", default=None,
                  help="Sandbox base URL (default: merchant.json's base_url).")
    @click.option("--driver", "driver_url", default=None,
                  help="Driver API base URL, e.g. http://127.0.0.1:8090/driver")
    @click.option("--merchant-json", default=None,
                  help="The merchant's credentials (default .payscore/merchant.json).")
    @click.option("--openid", "openids", multiple=True,
                  help="Users to rent as (repeatable; default o_magic_always_confirms).")
    @click.option("--seed", default=1, show_default=True, type=int)
    @click.option("--out", default="payscore-reports/loadtest", show_default=True)
    @click.option("--i-know", is_flag=True, help="Allow a run longer than one hour.")
    def loadtest(target, users, spawn_rate, duration, flows, faults, workers, sandbox_url,
                 driver_url, merchant_json, openids, seed, out, i_know) -> None:
        """Run Locust headless against the sandbox or a merchant, then settle and judge."""
        from loadtests.report import print_load
        from loadtests.runner import LoadOptions, LoadTestError, run_load

        mj = _merchant_json(merchant_json)
        opts = LoadOptions(target=target, users=users, spawn_rate=spawn_rate,
                           duration=duration, flows=flows,
                           sandbox_url=_sandbox_url(sandbox_url, mj),
                           out_dir=Path(out), driver_url=driver_url, merchant_json=mj,
                           faults=faults, workers=workers, seed=seed, i_know=i_know,
                           openids=list(openids) or ["o_magic_always_confirms"])
        try:
            result = run_load(opts, lambda text: console.print(f"[dim]{text}[/]"))
        except (LoadTestError, ValueError) as exc:
            console.print(f"[red]loadtest: {exc}[/]")
            sys.exit(2)
        print_load(result.to_dict(), console)
        if result.tally["failed"]:
            sys.exit(1)
        sys.exit(EXIT[result.gate["verdict"]])

    @cli.command()
    @click.option("--users", default=50_000, show_default=True, type=click.IntRange(1, 10**7))
    @click.option("--policy", "policy_path", default=None,
                  help="Admission policy (YAML/JSON); default loadtests/policies/default.yaml.")
    @click.option("--seed", default=1, show_default=True, type=int)
    @click.option("--mode", type=click.Choice(["model", "live"]), default="model",
                  show_default=True)
    @click.option("--data-dir", default=None,
                  help="model mode: take the users of this sandbox data dir's database.")
    @click.option("--db", default=None, help="model mode: take the users of this database URL.")
    @click.option("--driver", "driver_url", default=None, help="live mode: the driver API URL.")
    @click.option("--sandbox", "sandbox_url", default=None, help="live mode: the sandbox URL.")
    @click.option("--merchant-json", default=None,
                  help="live mode: the merchant's credentials, for provider-side evidence.")
    @click.option("--concurrency", default=32, show_default=True, type=click.IntRange(1, 512),
                  help="live mode: users driven at once.")
    @click.option("--out", default="payscore-reports/gray", show_default=True)
    def gray(users, policy_path, seed, mode, data_dir, db, driver_url, sandbox_url,
             merchant_json, concurrency, out) -> None:
        """Gray release: sampled users through the admission policy and the funnel."""
        from loadtests import gray as gray_model
        from loadtests.policy import POLICIES_DIR, PolicyError, load_policy
        from loadtests.report import page, print_gray

        try:
            policy = load_policy(policy_path or POLICIES_DIR / "default.yaml")
        except PolicyError as exc:
            console.print(f"[red]gray: {exc}[/]")
            sys.exit(2)
        if mode == "model":
            db_url = db or (f"sqlite:///{(Path(data_dir) / 'sandbox.db').resolve()}"
                            if data_dir else None)
            result = gray_model.run_model(policy, users, seed, db_url)
        else:
            from loadtests.gray_live import LiveGrayError, run_live

            mj = _merchant_json(merchant_json)
            if not driver_url:
                console.print("[red]gray --mode live needs --driver URL[/]")
                sys.exit(2)
            try:
                result = run_live(policy, users, seed, driver_url=driver_url,
                                  sandbox_url=_sandbox_url(sandbox_url, mj), merchant_json=mj,
                                  concurrency=concurrency, console=console)
            except LiveGrayError as exc:
                console.print(f"[red]gray: {exc}[/]")
                sys.exit(2)
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "gray.json").write_text(json.dumps(result, indent=2, default=str))
        from loadtests.report import gray_section

        (out_dir / "gray.html").write_text(page("Gray release", gray_section(result)))
        print_gray(result, console)
        console.print(f"report: {out_dir / 'gray.html'} and gray.json")
        failed = result.get("flows", {}).get("failed", 0)
        sys.exit(1 if failed else EXIT[result["conversion"]["verdict"]])

    @cli.command()
    @click.option("--driver", "driver_url", required=True, help="The merchant's driver API URL.")
    @click.option("--sandbox", "sandbox_url", default=None, help="The sandbox URL.")
    @click.option("--merchant-json", default=None,
                  help="The merchant's credentials (default .payscore/merchant.json).")
    @click.option("--policy", "policy_path", default=None, help="Admission policy for the "
                  "gray stage (default loadtests/policies/power_bank.yaml).")
    @click.option("--quick", is_flag=True,
                  help="CI-sized run: verdicts may be inconclusive (exit code 3).")
    @click.option("--scenarios", "scenario_ids", default=None,
                  help="Anomaly scenarios to run, e.g. 1-30 or 6,18,30 (default: all 30; "
                       "--quick: a few).")
    @click.option("--seed", default=None, type=int,
                  help="Gray-release seed (default: a fresh one, so the users are new).")
    @click.option("--load-users", default=None, type=click.IntRange(1, 10_000),
                  help="Load run users (default 40; --quick 4).")
    @click.option("--load-flows", default=None, type=click.IntRange(0, 10**7),
                  help="Stop the load run once this many flows are recorded (default 30556: "
                       "what a clean pass needs, 2 % spare; --quick and 0: time only).")
    @click.option("--load-duration", default=None,
                  help="Load run duration, the cap when --load-flows is set (default 45m; "
                       "--quick 10s; at most 1h).")
    @click.option("--gray-users", default=None, type=click.IntRange(1, 10**7),
                  help="Gray release sample (default 50000; --quick 120).")
    @click.option("--gray-mode", type=click.Choice(["live", "model"]), default="live",
                  show_default=True)
    @click.option("--out", default="payscore-reports/gates", show_default=True)
    def gates(driver_url, sandbox_url, merchant_json, policy_path, quick, scenario_ids, seed,
              load_users, load_flows, load_duration, gray_users, gray_mode, out) -> None:
        """The onboarding gates, in order, and one readiness report (HTML + JSON)."""
        from loadtests.gates import GateSettings, parse_ids, run_gates
        from loadtests.runner import LoadTestError

        mj = _merchant_json(merchant_json)
        try:
            ids = parse_ids(scenario_ids)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--scenarios") from None
        settings = GateSettings.for_run(quick=quick, driver_url=driver_url,
                                        sandbox_url=_sandbox_url(sandbox_url, mj),
                                        merchant_json=mj, out_dir=Path(out), seed=seed,
                                        policy_path=Path(policy_path) if policy_path else None,
                                        scenario_ids=ids, gray_mode=gray_mode)
        for key, value in (("load_users", load_users), ("load_flows", load_flows),
                           ("load_duration", load_duration),
                           ("gray_users", gray_users)):
            if value is not None:
                setattr(settings, key, value)
        try:
            report = run_gates(settings, console)
        except LoadTestError as exc:
            console.print(f"[red]gates: {exc}[/]")
            sys.exit(2)
        sys.exit(EXIT.get(report["verdict"], 2))
