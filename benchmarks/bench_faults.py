"""What the fault hooks cost a request when no fault applies (python benchmarks/bench_faults.py).

Measures, on a fresh SQLite sandbox (the default database; --db for another):
1. the version probe alone (FaultEngine.armed() when nothing changed);
2. the before + after hooks of one request with no fault armed, and with a fault armed for
   another merchant (cached, scope does not match: no database write);
3. a signed query_service_order end to end through Flask's test client, with the hooks
   installed and with them removed, interleaved (medians), to show the share.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from flask import Flask, Response, g

from sandbox.testing import SignedClient, add_merchant, make_sandbox


def per_call_us(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e6


def hooks_us(app: Flask, mchid: str, n: int) -> float:
    sb = app.extensions["payscore"]
    before, after = sb.hooks.before[-1], sb.hooks.after[-1]
    response = Response(b"{}", status=200)

    now_us = sb.clock.now_us()

    def one() -> None:
        g.pop("fault_snapshot", None)
        g.mchid, g.operation, g.now_us = mchid, "query_service_order", now_us
        before()
        after(response)

    with app.test_request_context("/v3/payscore/serviceorder?out_order_no=B1"):
        for _ in range(200):
            one()
        return per_call_us(one, n)


def request_ms(client: SignedClient, query: dict, n: int, sb) -> tuple[float, float]:
    """Median ms of a signed query with and without the fault hooks, interleaved request by
    request so that load on the machine weighs on both alike."""
    hooks = (list(sb.hooks.before), list(sb.hooks.after))
    samples: dict[bool, list[float]] = {True: [], False: []}
    for i in range(2 * n):
        installed = i % 2 == 0
        sb.hooks.before[:], sb.hooks.after[:] = hooks if installed else ([], [])
        started = time.perf_counter()
        r = client.get("/v3/payscore/serviceorder", query=query)
        samples[installed].append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.json
    sb.hooks.before[:], sb.hooks.after[:] = hooks
    return statistics.median(samples[True]), statistics.median(samples[False])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="hook calls per measurement")
    parser.add_argument("--requests", type=int, default=400,
                        help="requests with the hooks, and as many without")
    parser.add_argument("--db", default=None, help="database URL (default: a fresh SQLite "
                                                    "file); a PostgreSQL database is used as is")
    args = parser.parse_args()

    app = make_sandbox(Path(tempfile.mkdtemp(prefix="bench-faults-")), db_url=args.db)
    sb = app.extensions["payscore"]
    merchant, other = add_merchant(app), add_merchant(app)
    client = SignedClient(app, merchant)
    assert client.post("/v3/payscore/serviceorder", client.create_body("B1")).status_code == 200
    query = {"out_order_no": "B1", **client.ids()}
    engine = sb.extras["faults"]

    probe = per_call_us(engine.armed, args.calls)
    idle = hooks_us(app, merchant.mchid, args.calls)
    http = app.test_client()
    armed = http.post("/sandbox/faults", json={"effect": "http_error", "mchid": other.mchid})
    assert armed.status_code == 201, armed.json
    elsewhere = hooks_us(app, merchant.mchid, args.calls)
    http.delete("/sandbox/faults?all=true")

    request_ms(client, query, 25, sb)  # warm up
    on, off = request_ms(client, query, args.requests, sb)

    print(f"fault version probe (armed(), nothing changed): {probe:8.1f} µs")
    print(f"before+after hooks, no fault armed:             {idle:8.1f} µs per request")
    print(f"before+after hooks, a fault for another merchant:{elsewhere:7.1f} µs per request")
    print(f"signed query, hooks installed:                  {on * 1000:8.1f} µs (median)")
    print(f"signed query, hooks removed:                    {off * 1000:8.1f} µs (median)")
    print(f"difference:                                     {(on - off) * 1000:8.1f} µs "
          f"({(on - off) / off * 100:+.1f} %)")


if __name__ == "__main__":
    main()
