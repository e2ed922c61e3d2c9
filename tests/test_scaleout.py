"""Persistence and scale-out: state survives a restart, and `payscore up --workers 2`
(gunicorn, several processes) never corrupts an order under concurrent calls.

Every test runs on SQLite (the default) and on PostgreSQL (an isolated schema on the server
named by PAYSCORE_TEST_POSTGRES_URL; skipped, saying so, when it is unset).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from loadtests import local
from merchant_kit import protocol
from sandbox import db
from sandbox.testing import SignedClient, add_merchant, make_sandbox

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


# ------------------------------------------------------------------ persistence (in process)

@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_orders_survive_a_restart(tmp_path, db_url):
    first = make_sandbox(tmp_path, db_url=db_url)
    merchant = add_merchant(first)
    client = SignedClient(first, merchant)
    created = client.post("/v3/payscore/serviceorder", client.create_body("KEEP-1"))
    assert created.status_code == 200, created.json
    platform_serial = created.headers["Wechatpay-Serial"]
    first.extensions["payscore"].orders.user_confirm(merchant.mchid, "KEEP-1",
                                                     first.extensions["payscore"].clock.now_us(),
                                                     "oRestartUser")
    first.extensions["payscore"].engine.dispose()
    del first

    second = make_sandbox(tmp_path, db_url=db_url)  # same database: nothing is provisioned anew
    try:
        again = SignedClient(second, merchant)
        r = again.get("/v3/payscore/serviceorder", {**again.ids(), "out_order_no": "KEEP-1"})
        assert r.status_code == 200, r.json
        assert r.json["order_id"] == created.json["order_id"]
        assert (r.json["state"], r.json["state_description"]) == ("DOING", "USER_CONFIRM")
        assert r.json["openid"] == "oRestartUser"
        assert r.headers["Wechatpay-Serial"] == platform_serial  # the same platform keys
        replay = again.post("/v3/payscore/serviceorder", again.create_body("KEEP-1"))
        assert replay.json["package"] == created.json["package"]
    finally:
        second.extensions["payscore"].engine.dispose()


# ------------------------------------------------------------------ several worker processes

@dataclass
class Server:
    base_url: str
    db_url: str
    merchant: dict
    private_key: protocol.PrivateKey
    platform_key: protocol.PublicKey

    def call(self, method: str, target: str, body: dict | None = None) -> requests.Response:
        """One request signed like a merchant, on its own connection."""
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        m = self.merchant
        auth = protocol.build_authorization(m["mchid"], m["merchant_serial_no"],
                                            self.private_key, method, target, data,
                                            int(time.time()), protocol.make_nonce())
        headers = {"Authorization": auth, "Accept": "application/json",
                   "User-Agent": "payscore-scaleout-tests/1", "Content-Type": "application/json"}
        return requests.request(method, self.base_url + target, data=data or None,
                                headers=headers, timeout=60)

    def control(self, path: str, body: dict | None = None) -> dict:
        r = requests.post(f"{self.base_url}/sandbox{path}", json=body or {}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    def signature_ok(self, r: requests.Response) -> bool:
        message = protocol.response_message(r.headers["Wechatpay-Timestamp"],
                                            r.headers["Wechatpay-Nonce"], r.content)
        return protocol.verify(self.platform_key, message, r.headers["Wechatpay-Signature"])

    def ids(self) -> dict:
        return {"appid": self.merchant["appid"], "service_id": self.merchant["service_id"]}

    def create_body(self, out_order_no: str) -> dict:
        return {"out_order_no": out_order_no, **self.ids(), "service_introduction": "充电宝租借",
                "time_range": {"start_time": "OnAccept"},
                "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
                "notify_url": "http://127.0.0.1:9/notify", "need_user_confirm": True}


@contextlib.contextmanager
def _payscore_up(root: Path, db_url: str | None, workers: int = 2) -> Iterator[Server]:
    """`payscore up --workers N` as a child process on a free loopback port."""
    # threads=4: `payscore up`'s own default, not the load runs' 8
    with local.start(root, workers=workers, threads=4, db=db_url, merchant=False) as servers:
        data_dir = servers.merchant_json.parent
        info = json.loads(servers.merchant_json.read_text())
        private_key = protocol.load_private_key((data_dir / info["private_key_path"]).read_bytes())
        cert = protocol.load_certificate((data_dir / info["platform_certificate_path"])
                                         .read_bytes())
        url = db_url or f"sqlite:///{(data_dir / 'sandbox.db').resolve()}"
        yield Server(servers.sandbox_url, url, info, private_key, protocol.public_key_of(cert))


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, tmp_path_factory, postgres_schemas) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"up-{request.param}")
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(postgres_schemas()) if request.param == "postgres" else None
        yield stack.enter_context(_payscore_up(root, db_url))


@pytest.fixture
def inspect(server) -> Iterator[Callable]:
    """Run a function with a connection to the server's database."""
    engine = db.make_engine(server.db_url)

    def run(fn: Callable):
        with engine.connect() as conn:
            return fn(conn)

    yield run
    engine.dispose()


def _fire(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    """Run every call at once (a barrier releases them together) and return the answers."""
    barrier = threading.Barrier(len(calls), timeout=60)

    def run(call: Callable[[], requests.Response]) -> requests.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def _order(conn, mchid: str, out_order_no: str):
    return conn.execute(select(db.orders).where(db.orders.c.mchid == mchid,
                                                db.orders.c.out_order_no == out_order_no)).one()


def _timeline(conn, order_pk: int) -> list:
    return list(conn.execute(select(db.order_events).where(db.order_events.c.order_pk == order_pk)
                             .order_by(db.order_events.c.id)))


def _assert_consistent(conn, mchid: str, out_order_no: str) -> list:
    """One order row whose version counts its state changes, and a timeline whose changes
    chain: each starts where the previous one ended and the last ends in the order's state.
    (Timeline notes without a state, e.g. the world's "paid_on_time", do not count.)"""
    order = _order(conn, mchid, out_order_no)
    events = _timeline(conn, order.pk)
    changes = [e for e in events if e.to_state is not None]
    assert order.version == len(changes), (order.version, [e.kind for e in events])
    for before, after in itertools.pairwise(changes):
        assert after.from_state == before.to_state, (before, after)
    assert [e.at_us for e in events] == sorted(e.at_us for e in events)
    state = "/".join(p for p in (order.state, order.state_description, order.collection_state)
                     if p)
    assert changes[-1].to_state == state
    return changes


def test_fifty_identical_creates_make_one_order(server, inspect):
    out_order_no = "DUP-" + secrets.token_hex(4)
    body = server.create_body(out_order_no)
    answers = _fire([lambda: server.call("POST", "/v3/payscore/serviceorder", body)] * 50)

    assert [r.status_code for r in answers] == [200] * 50, {r.text for r in answers}
    assert len({r.content for r in answers}) == 1  # every caller got the same order
    assert all(server.signature_ok(r) for r in answers)
    assert len({r.headers["Request-ID"] for r in answers}) == 50

    def check(conn):
        count = conn.execute(select(func.count()).select_from(db.orders).where(
            db.orders.c.out_order_no == out_order_no)).scalar_one()
        assert count == 1
        changes = _assert_consistent(conn, server.merchant["mchid"], out_order_no)
        assert [e.kind for e in changes].count("create") == 1
    inspect(check)


def test_complete_races_cancel_and_exactly_one_wins(server, inspect):
    mchid, ids = server.merchant["mchid"], server.ids()
    cancel = {**ids, "reason": "用户取消"}
    for round_no in range(8):
        no = f"RACE-{round_no}-{secrets.token_hex(3)}"
        assert server.call("POST", "/v3/payscore/serviceorder",
                           server.create_body(no)).status_code == 200
        server.control(f"/merchants/{mchid}/orders/{no}/confirm", {"openid": "oRaceUser"})
        # now (the server runs on wall time): not in the future, not before the confirmation
        end_time = protocol.payscore_time(dt.datetime.now(dt.UTC))
        complete = {**ids, "post_payments": [{"name": "租借费", "amount": 300}],
                    "total_amount": 300, "time_range": {"end_time": end_time}}
        done, revoked = _fire([
            lambda no=no, complete=complete: server.call(
                "POST", f"/v3/payscore/serviceorder/{no}/complete", complete),
            lambda no=no: server.call("POST", f"/v3/payscore/serviceorder/{no}/cancel", cancel),
        ])
        assert sorted([done.status_code, revoked.status_code]) == [200, 400], \
            (done.text, revoked.text)
        winner = "complete" if done.status_code == 200 else "cancel"
        if winner == "complete":
            assert (revoked.json()["code"], revoked.json()["message"]) == (
                "PARAM_ERROR", "当前订单状态不满足撤销条件")
            assert done.json()["state_description"] == "MCH_COMPLETE"
            assert server.signature_ok(done)
        else:
            assert done.json()["code"] == "ORDER_CANCELED"
            assert server.signature_ok(revoked)

        def check(conn, no=no, winner=winner):
            changes = _assert_consistent(conn, mchid, no)
            # the simulated world may collect a completed order meanwhile (DONE/USER_PAID)
            assert [e.kind for e in changes][:3] == ["create", "user_confirm", winner]
            assert "cancel" not in [e.kind for e in changes[3:]]
            order = _order(conn, mchid, no)
            assert order.state in (("DOING", "DONE") if winner == "complete" else ("REVOKED",))
            assert (order.complete_digest is not None) == (winner == "complete")
            assert (order.cancel_digest is not None) == (winner == "cancel")
        inspect(check)


def test_parallel_distinct_orders_all_land(server, inspect):
    prefix = "PAR-" + secrets.token_hex(3)
    answers = _fire([
        lambda i=i: server.call("POST", "/v3/payscore/serviceorder",
                                server.create_body(f"{prefix}-{i}"))
        for i in range(40)])
    assert [r.status_code for r in answers] == [200] * 40, {r.text for r in answers}
    assert len({r.json()["order_id"] for r in answers}) == 40

    def check(conn):
        rows = conn.execute(select(db.orders.c.out_order_no, db.orders.c.version).where(
            db.orders.c.out_order_no.like(prefix + "-%"))).all()
        assert len(rows) == 40 and {v for _, v in rows} == {1}
        logged = conn.execute(select(db.request_log.c.out_order_no).where(
            db.request_log.c.out_order_no.like(prefix + "-%"),
            db.request_log.c.operation == "create_service_order",
            db.request_log.c.status == 200)).scalars().all()
        assert sorted(logged) == sorted(r[0] for r in rows)  # no log row lost to contention
    inspect(check)


def test_up_quiet_serves_without_an_access_log(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from sandbox import server as server_module
    from sandbox.cli import cli

    served: list[dict] = []
    monkeypatch.setattr(server_module, "serve", lambda _config, **kw: served.append(kw))
    for flags in ([], ["--quiet"]):
        result = CliRunner().invoke(cli, ["up", "--port", "18080", "--data-dir",
                                          str(tmp_path), *flags])
        assert result.exit_code == 0, result.output
    loud, quiet = (server_module.gunicorn_options(quiet=kw["quiet"]) for kw in served)
    assert loud["accesslog"] == "-" and quiet["accesslog"] is None
