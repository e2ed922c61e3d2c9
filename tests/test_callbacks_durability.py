"""Callbacks are durable: a crash means a second delivery, never a lost one; claims are exclusive.

The kill -9 test runs the real `payscore up` server (gunicorn) in a subprocess. Waiting here is
for real network delivery and wall-clock leases (bounded loops with deadlines); business time is
moved through the control API, never waited for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from callbacks_support import T0, Receiver, S, enqueue, row_of
from sqlalchemy import func, select

from loadtests.runner import free_port
from sandbox import db
from sandbox.callbacks import outbox
from sandbox.callbacks.dispatcher import Dispatcher, dispatcher_of
from sandbox.clock import Clock
from sandbox.testing import add_merchant, make_sandbox


def wait_until(predicate, deadline_s: float, step_s: float = 0.05) -> bool:
    """Poll a condition on real (network) progress until it holds or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


def statuses(sb) -> dict[str, int]:
    n = db.notifications
    with sb.engine.connect() as conn:
        return dict(conn.execute(select(n.c.status, func.count()).group_by(n.c.status)).all())


def test_a_crash_between_claim_and_record_means_a_second_delivery_not_a_lost_one(tmp_path):
    app = make_sandbox(tmp_path, CALLBACK_LEASE_S=0.5)
    sb = app.extensions["payscore"]
    sb.clock.freeze(T0)
    m = add_merchant(app)
    crashed, survivor = Dispatcher(sb, "crashed"), Dispatcher(sb, "survivor")
    try:
        with Receiver() as rx:
            ids = [enqueue(sb, m.mchid, rx.url) for _ in range(10)]
            claimed = crashed.claim(100)  # ... and the process dies before posting or recording
            assert sorted(c.row.id for c in claimed) == sorted(ids)
            assert survivor.drain(wait_s=0)["attempts"] == 0  # live leases: not claimable
            lease_end_us = claimed[0].row.lease_until_us  # wall time: a network lease
            assert wait_until(lambda: time.time_ns() // 1000 > lease_end_us, 5)
            counts = survivor.drain()
            assert counts["delivered"] == 10 and counts["still_due"] == 0
            assert sorted(rx.ids()) == sorted(ids)
            # the "dead" dispatcher wakes up late: its post is one more (legal) duplicate, but
            # its record must not overwrite what the lease's new owner wrote
            late = crashed.record([crashed.post(claimed[0])])[0]
            assert late.attempts[0]["status_code"] == 200
        row = row_of(sb, claimed[0].row.id)
        assert (row.status, row.attempts, row.lease_owner) == ("DELIVERED", 1, None)
    finally:
        crashed.stop()
        survivor.stop()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_two_dispatchers_never_attempt_one_notification_concurrently(tmp_path, db_url):
    first = make_sandbox(tmp_path / "a", db_url=db_url)
    shared_url = db_url or first.config["DATABASE_URL"]
    second = make_sandbox(tmp_path / "b", db_url=shared_url)  # another "host", same database
    sb_a, sb_b = first.extensions["payscore"], second.extensions["payscore"]
    sb_a.clock.freeze(T0)
    m = add_merchant(first)
    a, b = dispatcher_of(sb_a), dispatcher_of(sb_b)
    posted_by = {"a": 0, "b": 0}
    lock = threading.Lock()

    def counting(dispatcher, name):
        inner = dispatcher.post

        def post(item):
            with lock:
                posted_by[name] += 1
            return inner(item)
        dispatcher.post = post

    counting(a, "a")
    counting(b, "b")
    total = 300
    try:
        with Receiver(default_delay=0.005) as rx:  # a slow-ish merchant widens any race window
            with db.write_tx(sb_a.engine) as conn:
                ids = {outbox.enqueue(conn, mchid=m.mchid, event_type="PAYSCORE.USER_PAID",
                                      url=rx.url, resource={"n": i}, now_us=T0)
                       for i in range(total)}
            a.start()
            b.start()
            drains = [threading.Thread(target=d.drain) for d in (a, b)]  # and synchronous ones
            for thread in drains:
                thread.start()
            assert wait_until(lambda: len(rx.requests) >= total, 60), len(rx.requests)
            for thread in drains:
                thread.join(30)
            assert wait_until(lambda: statuses(sb_a) == {"DELIVERED": total}, 10)
            time.sleep(0.2)  # nothing more may arrive: every row is delivered
        assert rx.max_in_flight_per_id == 1
        assert sorted(rx.ids()) == sorted(ids)  # each exactly once: no double claim
        with sb_a.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(db.delivery_attempts)) \
                .scalar_one() == total
            assert conn.execute(select(func.max(db.notifications.c.attempts))).scalar_one() == 1
        assert posted_by["a"] + posted_by["b"] == total
        assert posted_by["a"] > 0 and posted_by["b"] > 0, posted_by
    finally:
        for sb in (sb_a, sb_b):
            sb.extras["stop_services"]()
            sb.engine.dispose()


# ---------------------------------------------------------------- kill -9 the real server


def start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PAYSCORE_CALLBACK_LEASE_S": "2", "PAYSCORE_CALLBACK_POLL_S": "0.05"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", "up", "--port", str(port), "--data-dir",
         str(data_dir)], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True)  # its own process group: gunicorn's master and workers
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{base}/sandbox/health", timeout=1).status_code == 200
        except requests.RequestException:
            return proc.poll() is not None
    assert wait_until(healthy, 60, 0.2) and proc.poll() is None, log.read_text()[-2000:]
    return proc


def kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    proc.wait(30)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_kill_9_mid_delivery_loses_no_notification(tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    total, fail_first = 2000, 600
    server = start_server(data_dir, free_port(), log)
    engine = None
    try:
        with Receiver(script=[500] * fail_first) as rx:  # a first wave of failures
            mchid = json.loads((data_dir / "merchant.json").read_text())["mchid"]
            engine = db.make_engine(f"sqlite:///{data_dir / 'sandbox.db'}")
            with db.write_tx(engine) as conn:
                now_us = Clock(engine).now_us(conn)
                ids = {outbox.enqueue(conn, mchid=mchid, event_type="PAYSCORE.USER_PAID",
                                      url=rx.url, resource={"n": i}, now_us=now_us)
                       for i in range(total)}
            assert wait_until(lambda: len(rx.requests) >= fail_first + 200, 90), \
                len(rx.requests)
            kill_group(server, signal.SIGKILL)  # mid-delivery: rows claimed, not recorded
            delivered_before = set(rx.ids(ok_only=True))
            assert len(delivered_before) < total  # the crash really interrupted the work
            with engine.connect() as conn:
                leased = conn.execute(select(func.count()).where(
                    db.notifications.c.lease_owner.is_not(None))).scalar_one()
            server = start_server(data_dir, free_port(), log)

            def all_delivered() -> bool:
                # the failed first wave is due 15 s later on the sandbox clock: move it there
                # (the restarted server's own background dispatcher does the delivering)
                Clock(engine).shift(60 * S)
                return set(rx.ids(ok_only=True)) >= ids

            assert wait_until(all_delivered, 150, 0.5), \
                f"{len(ids - set(rx.ids(ok_only=True)))} never delivered"
        with engine.connect() as conn:
            n = db.notifications
            assert conn.execute(select(func.count()).where(n.c.status != "DELIVERED")) \
                .scalar_one() == 0
        accepted = rx.ids(ok_only=True)
        print(f"\nkill -9 after {len(delivered_before)} delivered, {leased} leased at the kill; "
              f"{len(rx.requests)} requests, {len(accepted) - len(set(accepted))} duplicates "
              f"of an accepted notification")
    finally:
        kill_group(server, signal.SIGTERM)
        if engine is not None:
            engine.dispose()
