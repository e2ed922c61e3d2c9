"""Transport faults on real sockets: a dropped connection and a slow answer as a real client
sees them, under werkzeug's server (sandbox.live) and under gunicorn with two gthread workers
(`payscore up --workers 2`), where a fault armed through one worker is taken by either, and a
next-N trigger counts across both."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import select

from loadtests import local
from merchant_kit import protocol
from sandbox import db
from sandbox.live import LiveSandbox
from sandbox.testing import add_merchant

CREATE = "/v3/payscore/serviceorder"


@dataclass
class Merchant:
    base_url: str
    mchid: str
    serial_no: str
    private_key: protocol.PrivateKey
    appid: str
    service_id: str

    def call(self, method: str, target: str, body: dict | None = None, timeout: float = 10,
             session: requests.Session | None = None, now_s: int | None = None):
        data = b"" if body is None else json.dumps(body).encode()
        auth = protocol.build_authorization(self.mchid, self.serial_no, self.private_key,
                                            method, target, data, now_s or int(time.time()),
                                            protocol.make_nonce())
        headers = {"Authorization": auth, "Accept": "application/json",
                   "User-Agent": "payscore-fault-tests/1", "Content-Type": "application/json"}
        return (session or requests).request(method, self.base_url + target, data=data or None,
                                             headers=headers, timeout=timeout)

    def create(self, out_order_no: str, **kw):
        return self.call("POST", CREATE, {
            "out_order_no": out_order_no, "appid": self.appid, "service_id": self.service_id,
            "service_introduction": "充电宝租借", "time_range": {"start_time": "OnAccept"},
            "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
            "notify_url": "http://127.0.0.1:9/notify"}, **kw)

    def arm(self, **spec) -> dict:
        r = requests.post(f"{self.base_url}/sandbox/faults", json={"mchid": self.mchid, **spec},
                          timeout=30)
        assert r.status_code == 201, r.text
        return r.json()

    def log(self, **filters) -> list[dict]:
        r = requests.get(f"{self.base_url}/sandbox/requests", params=filters, timeout=30)
        return r.json()["requests"]


def orders_of(engine, mchid: str) -> list[str]:
    o = db.orders.c
    with engine.connect() as conn:
        return list(conn.execute(select(o.out_order_no).where(o.mchid == mchid)).scalars())


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveSandbox]:
    with LiveSandbox(tmp_path_factory.mktemp("faults-live"), START_DISPATCHER=False,
                     START_WORLD=False) as server:
        yield server


def _merchant(live: LiveSandbox) -> Merchant:
    m = add_merchant(live.app)
    return Merchant(live.base_url, m.mchid, m.serial_no, m.private_key, m.appid, m.service_id)


def test_resets_drop_the_connection_without_an_answer_on_werkzeug(live):
    merchant, engine = _merchant(live), live.sandbox.engine
    session = requests.Session()
    assert merchant.create("LR-0", session=session).status_code == 200  # a kept-alive session
    merchant.arm(effect="reset_before_commit", remaining=1, scenario_id="S2")
    with pytest.raises(requests.ConnectionError) as lost:
        merchant.create("LR-1", session=session)
    assert "without response" in str(lost.value)  # not an HTTP answer of any kind
    assert "LR-1" not in orders_of(engine, merchant.mchid)
    assert merchant.create("LR-1", session=session).status_code == 200  # the retry works
    merchant.arm(effect="reset_after_commit", remaining=1, scenario_id="S3")
    with pytest.raises(requests.ConnectionError):
        merchant.create("LR-2", session=session)
    assert "LR-2" in orders_of(engine, merchant.mchid)  # committed, then the reply was lost
    assert merchant.create("LR-2", session=session).status_code == 200
    assert [(x["status"], x["fault"]) for x in merchant.log(faulted="true",
                                                            mchid=merchant.mchid)] == \
        [(444, "reset_before_commit"), (200, "reset_after_commit")]


def test_delay_outlasts_the_client_timeout_only_in_scope(live):
    merchant, bystander = _merchant(live), _merchant(live)
    merchant.arm(effect="delay", remaining=1, params={"seconds": 1.5})
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        merchant.create("LD-1", timeout=0.4)
    assert time.monotonic() - started < 1.4
    quick = time.monotonic()
    assert bystander.create("LD-2", timeout=5).status_code == 200
    assert time.monotonic() - quick < 1.0  # the other merchant is not slowed down
    assert "LD-1" in orders_of(live.sandbox.engine, merchant.mchid)  # phase "after": committed
    deadline = time.monotonic() + 10
    while not merchant.log(fault="delay", mchid=merchant.mchid):  # logged once it answered
        assert time.monotonic() < deadline, "the delayed request never finished"
        time.sleep(0.05)
    (logged,) = merchant.log(fault="delay", mchid=merchant.mchid)
    assert logged["duration_ms"] >= 1500 and logged["status"] == 200


# ------------------------------------------------------------------ gunicorn, two workers

def _gunicorn_merchant(servers: local.Servers) -> Merchant:
    """The demo merchant `payscore up` provisioned, from its merchant.json."""
    info = json.loads(servers.merchant_json.read_text())
    key_path = servers.merchant_json.parent / info["private_key_path"]
    return Merchant(servers.sandbox_url, info["mchid"], info["merchant_serial_no"],
                    protocol.load_private_key(key_path.read_bytes()), info["appid"],
                    info["service_id"])


def test_gunicorn_workers_share_faults_and_drop_connections_quietly(tmp_path):
    # threads=4: `payscore up`'s own default, not the load runs' 8
    with local.start(tmp_path, workers=2, threads=4, merchant=False) as servers:
        merchant = _gunicorn_merchant(servers)
        for i in range(4):  # separate connections: both workers have served and cached
            assert merchant.create(f"G-{i}").status_code == 200
        merchant.arm(effect="http_error", remaining=5, scenario_id="S-G")
        statuses = [merchant.create(f"GN-{i}").status_code for i in range(12)]
        assert statuses == [500] * 5 + [200] * 7
        assert len(merchant.log(scenario_id="S-G")) == 5
        session = requests.Session()
        for effect, out_order_no in (("reset_before_commit", "GR-1"),
                                     ("reset_after_commit", "GR-2")):
            merchant.arm(effect=effect, remaining=1)
            with pytest.raises(requests.ConnectionError):
                merchant.create(out_order_no, session=session)
            assert merchant.create(out_order_no, session=session).status_code == 200
        faulted = merchant.log(faulted="true", operation="create_service_order")
        assert [x["fault"] for x in faulted][-2:] == ["reset_before_commit",
                                                      "reset_after_commit"]
    server_log = (tmp_path / "sandbox.log").read_text()
    assert "Socket error" not in server_log and "Traceback" not in server_log
