"""Gray release speed: model mode on 50,000 users (target < 5 s) and live mode users/s
(target >= 100 users/s).

Run on demand (not a test):

    python benchmarks/bench_gray.py [--users 50000] [--live-users 2000] [--concurrency 64]
                                    [--server-workers 2] [--no-live]

Model mode is timed in this process (sampling the population, then the funnel and sweep).
Live mode starts `payscore up` and `payscore merchant-demo` in child processes and drives
every sampled user through the reference merchant's driver API; it reports users/s over all
sampled users and over the users actually driven (offered Pay Score), and the CPU each driven
user costs the sandbox, the merchant and this harness: on N cores the servers cannot exceed
about N / (sandbox + merchant CPU per user) users/s, whatever the harness does.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from loadtests import gray, local
from loadtests.gray_live import run_live
from loadtests.policy import POLICIES_DIR, load_policy


def bench_model(users: int, seed: int) -> dict:
    policy = load_policy(POLICIES_DIR / "default.yaml")
    started, cpu = time.perf_counter(), time.process_time()
    result = gray.run_model(policy, users, seed)
    return {"mode": "model", "users": users, "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu, **result["timings"],
            "conversion": result["conversion"]["observed"]}


def bench_live(users: int, seed: int, concurrency: int, server_workers: int) -> dict:
    policy = load_policy(POLICIES_DIR / "power_bank.yaml")
    with tempfile.TemporaryDirectory(prefix="bench-gray-") as tmp, \
            local.start(Path(tmp), workers=server_workers) as servers:
        before, harness = servers.cpu_seconds(), time.process_time()
        result = run_live(policy, users, seed, driver_url=str(servers.driver_url),
                          sandbox_url=servers.sandbox_url, merchant_json=servers.merchant_json,
                          concurrency=concurrency)
        after, harness = servers.cpu_seconds(), time.process_time() - harness
    driven = result["flows"]["flows"] or 1
    cpu_ms = {f"{name}_cpu_ms_per_user": (after[name] - before[name]) * 1000 / driven
              for name in after}
    cpu_ms["harness_cpu_ms_per_user"] = harness * 1000 / driven
    return {"mode": "live", "users": users, "concurrency": concurrency, **cpu_ms,
            "server_workers": server_workers, **result["timings"],
            "users_per_s": result["throughput_users_per_s"],
            "driven_per_s": result["throughput_driven_per_s"],
            "flows": result["flows"]["flows"], "failed_flows": result["flows"]["failed"],
            "conversion": result["conversion"]["observed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--live-users", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-live", action="store_true")
    args = parser.parse_args()
    rows = [bench_model(args.users, args.seed)]
    print(f"model: {args.users:,} users in {rows[0]['wall_s']:.2f} s wall "
          f"({rows[0]['cpu_s']:.2f} s CPU; sampling {rows[0]['sample_s']:.2f} s)")
    if not args.no_live:
        rows.append(bench_live(args.live_users, args.seed, args.concurrency,
                               args.server_workers))
        live = rows[-1]
        print(f"live: {live['users']:,} users in {live['drive_s']:.1f} s = "
              f"{live['users_per_s']:.1f} users/s ({live['driven_per_s']:.1f} driven/s), "
              f"{live['failed_flows']} failed flows of {live['flows']}; CPU per driven user: "
              f"sandbox {live['sandbox_cpu_ms_per_user']:.0f} ms, merchant "
              f"{live['merchant_cpu_ms_per_user']:.0f} ms, harness "
              f"{live['harness_cpu_ms_per_user']:.0f} ms")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
