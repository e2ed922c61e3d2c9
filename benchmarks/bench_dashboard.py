"""How fast the dashboard stays with many orders: the orders API and the page render in Chromium.

    .venv/bin/python benchmarks/bench_dashboard.py [--orders 100000] [--db postgresql://...]

Bulk-inserts the orders straight into the database (with a timeline event each and a callback
for one in ten), serves the sandbox on a loopback port, times the read endpoints over HTTP, then
times headless Chromium from navigation until the orders table is populated. Prints a table.
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert

from sandbox import db
from sandbox.live import LiveSandbox
from sandbox.testing import add_merchant

ROOT = Path(__file__).resolve().parents[1]

STATES = [("CREATED", None), ("DOING", "USER_CONFIRM"), ("DOING", "MCH_COMPLETE"), ("DONE", None),
          ("REVOKED", None), ("EXPIRED", None)]
CHUNK = 5000
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def bulk_orders(live: LiveSandbox, mchids: list[str], count: int, seed: int = 7) -> float:
    """Insert `count` orders spread over the last 30 sandbox days; returns seconds taken."""
    rng = random.Random(seed)
    sb = live.sandbox
    now = sb.clock.now_us()
    started = time.perf_counter()
    run = secrets.token_hex(3).upper()  # out_order_no prefix: a database may hold other runs
    for first in range(0, count, CHUNK):
        orders, events, notes = [], [], []
        for i in range(first, min(first + CHUNK, count)):
            state, description = STATES[rng.randrange(len(STATES))]
            created = now - (count - i) * 25_000_000  # one order every 25 s, oldest first
            orders.append({
                "mchid": mchids[i % len(mchids)], "out_order_no": f"B{run}{i:08d}",
                "order_id": f"1{run}{i:024d}", "query_id": secrets.token_hex(16),
                "appid": "wxbench", "service_id": "bench", "openid": f"o-bench-{i % 5000:05d}",
                "need_user_confirm": True, "state": state, "state_description": description,
                "collection_state": None, "total_amount": 3000 if state == "DONE" else None,
                "paid_amount": 0, "request_digest": "0" * 64,
                "doc": {"service_introduction": "充电宝租借", "package": "p",
                        "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900}},
                "notify_url": "http://127.0.0.1:9/notify", "deducting": False,
                "created_us": created, "updated_us": created, "version": 1})
            events.append({"at_us": created, "kind": "create",
                           "from_state": None, "to_state": "CREATED", "detail": None})
            if i % 10 == 0:
                notes.append({"id": str(uuid.UUID(int=rng.getrandbits(128))),
                              "mchid": mchids[i % len(mchids)], "order_pk": len(orders) - 1,
                              "event_type": "PAYSCORE.USER_CONFIRM", "summary": "确认订单",
                              "original_type": "payscore", "url": "http://127.0.0.1:9/notify",
                              "resource": {}, "status": "DELIVERED", "attempts": 1,
                              "next_attempt_us": None, "created_us": created})
        with db.write_tx(sb.engine) as conn:
            pks = list(conn.execute(insert(db.orders).returning(
                db.orders.c.pk, sort_by_parameter_order=True), orders).scalars())
            for event, pk in zip(events, pks, strict=True):
                event["order_pk"] = pk
            for note in notes:  # order_pk held the index within the chunk until now
                note["order_pk"] = pks[note["order_pk"]]
            conn.execute(insert(db.order_events), events)
            if notes:
                conn.execute(insert(db.notifications), notes)
    if db.is_postgres(sb.engine):
        with db.write_tx(sb.engine) as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def timed_get(url: str, runs: int) -> tuple[float, float, dict]:
    """(median ms, max ms, last answer) of `runs` GETs after one warm-up."""
    session = requests.Session()
    answer = session.get(url, timeout=30)
    answer.raise_for_status()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        answer = session.get(url, timeout=30)
        samples.append((time.perf_counter() - t) * 1000)
        answer.raise_for_status()
    return statistics.median(samples), max(samples), answer.json()


def api_numbers(live: LiveSandbox, mchid: str, runs: int) -> list[tuple[str, float, float, str]]:
    base = f"{live.base_url}/sandbox/api"
    rows = []
    _, _, first = timed_get(f"{base}/orders", 1)
    cases = [
        ("baseline: GET /sandbox/clock", f"{live.base_url}/sandbox/clock"),
        ("orders, first page (50)", f"{base}/orders"),
        ("orders, state=DONE", f"{base}/orders?state=DONE"),
        ("orders, mchid+state=EXPIRED", f"{base}/orders?mchid={mchid}&state=EXPIRED"),
        ("orders, openid", f"{base}/orders?openid=o-bench-00042"),
        ("orders, created in last 2h", f"{base}/orders?since=2h"),
        ("orders, next page (cursor)", f"{base}/orders?before={first['next_before']}"),
        ("order timeline", f"{base}/orders/{first['orders'][0]['pk']}"),
        ("notifications, first page", f"{base}/notifications"),
        ("requests, failed only", f"{base}/requests?failed=true"),
    ]
    for label, url in cases:
        median, worst, answer = timed_get(url, runs)
        note = ""
        if "count" in answer:
            note = f"count {'>' if answer['count_capped'] else ''}{answer['count']}"
        rows.append((label, median, worst, note))
    return rows


def page_numbers(live: LiveSandbox, runs: int) -> list[tuple[str, float, float, str]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install-browser.sh")], check=True)
        chromium = shutil.which("chromium")
    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        for label, route in (("orders page, unfiltered", "#/orders"),
                             ("orders page, state=DONE", "#/orders?state=DONE"),
                             ("order timeline page", "#/orders/1")):
            samples = []
            for _ in range(runs + 1):  # the first load warms the HTTP cache and the JIT
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                page = context.new_page()
                page.goto(f"{live.base_url}/sandbox/ui/{route}")
                target = "#timeline li" if "/orders/" in route else "tr.order-row >> nth=49"
                page.wait_for_selector(target, timeout=30_000)
                # ms from the start of navigation (the page's time origin) to a full table
                samples.append(page.evaluate("performance.now()"))
                context.close()
            rows.append((label, statistics.median(samples[1:]), max(samples[1:]),
                         "navigation start → table populated"))
        browser.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in a tmp dir)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    console = Console()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    with tempfile.TemporaryDirectory() as tmp:
        live = LiveSandbox(Path(tmp), db_url=args.db, START_DISPATCHER=False,
                           START_WORLD=False).start()
        try:
            live.sandbox.clock.freeze()
            mchids = [add_merchant(live.app, base_url=live.base_url).mchid for _ in range(3)]
            took = bulk_orders(live, mchids, args.orders)
            console.print(f"inserted {args.orders:,} orders in {took:.1f} s "
                          f"({live.sandbox.engine.dialect.name})")
            table = Table("what", "median ms", "max ms", "note",
                          title=f"dashboard with {args.orders:,} orders")
            for label, median, worst, note in (api_numbers(live, mchids[0], args.runs)
                                               + page_numbers(live, max(args.runs // 4, 3))):
                table.add_row(label, f"{median:.1f}", f"{worst:.1f}", note)
            console.print(table)
        finally:
            live.stop()


if __name__ == "__main__":
    main()
