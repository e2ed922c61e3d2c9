"""End-to-end flows per second and sandbox requests per second under Locust.

Run on demand (not a test):

    python benchmarks/bench_load.py [--target sandbox|driver|both] [--users 20]
                                    [--duration 30s] [--workers 0] [--server-workers 2]

Starts `payscore up` (gunicorn, --server-workers processes, SQLite) and, for the driver target,
`payscore merchant-demo` in child processes, runs `payscore loadtest`'s runner and reports:

* flows/s     flows that finished and were judged after settling, per second of load;
* requests/s  Locust's aggregated request rate (sandbox target: every request hits the
              sandbox; driver target: driver calls plus the user's control-API taps);
* failed      flow failures (must be 0) and HTTP failures survived.

Pass --sandbox URL --merchant-json PATH [--driver URL] to measure servers you started.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from loadtests import local
from loadtests.runner import LoadOptions, parse_duration_s, run_load


def bench(target: str, users: int, duration: str, workers: int, sandbox_url: str,
          merchant_json: Path, driver_url: str | None, out: Path) -> dict:
    result = run_load(LoadOptions(target=target, users=users, spawn_rate=users,
                                  duration=duration, sandbox_url=sandbox_url,
                                  driver_url=driver_url, merchant_json=merchant_json,
                                  workers=workers, out_dir=out / target, wait_max=0.0))
    seconds = parse_duration_s(duration)
    aggregated = result.locust["aggregated"] or {}
    return {"target": target, "users": users, "locust_workers": workers,
            "duration_s": seconds, "flows": result.tally["flows"],
            "flows_per_s": result.tally["flows"] / seconds,
            "requests": aggregated.get("requests", 0),
            "requests_per_s": aggregated.get("rps", 0.0),
            "median_ms": aggregated.get("median_ms"), "p95_ms": aggregated.get("p95_ms"),
            "failed_flows": result.tally["failed"], "http_failures": result.tally["http_failures"],
            "wall_s": result.wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["sandbox", "driver", "both"], default="both")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--workers", type=int, default=0, help="Locust worker processes")
    parser.add_argument("--server-workers", type=int, default=2, help="sandbox gunicorn workers")
    parser.add_argument("--sandbox")
    parser.add_argument("--merchant-json", type=Path)
    parser.add_argument("--driver")
    args = parser.parse_args()
    targets = ["sandbox", "driver"] if args.target == "both" else [args.target]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        root = Path(tmp)
        if args.sandbox:
            servers = local.Servers(args.sandbox, args.merchant_json, args.driver)
        else:
            servers = local.start(root / "servers", workers=args.server_workers,
                                  merchant="driver" in targets)
        with servers:
            rows = [bench(t, args.users, args.duration, args.workers, servers.sandbox_url,
                          servers.merchant_json, servers.driver_url, root) for t in targets]
    print(f"{'target':8} {'users':>5} {'flows':>6} {'flows/s':>8} {'req/s':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'failed':>6} {'http f.':>7}")
    for r in rows:
        print(f"{r['target']:8} {r['users']:5d} {r['flows']:6d} {r['flows_per_s']:8.1f} "
              f"{r['requests_per_s']:8.1f} {r['median_ms'] or 0:7.0f} {r['p95_ms'] or 0:7.0f} "
              f"{r['failed_flows']:6d} {r['http_failures']:7d}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
