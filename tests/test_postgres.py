"""The order life cycle and its concurrency rules on both backends, in process.

`db_url` (tests/conftest.py) gives SQLite in the test's tmp dir or an isolated PostgreSQL
schema. Run the whole signed core suite on PostgreSQL with
`PAYSCORE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test pytest --payscore-db=postgres`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from merchant_kit import protocol
from sandbox import db
from sandbox.clock import to_datetime
from sandbox.testing import SignedClient, add_merchant, make_sandbox

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
ORDERS = "/v3/payscore/serviceorder"


def _end_time(sandbox) -> str:
    """Now: not in the future, and not before the user confirmed (start_time OnAccept)."""
    return protocol.payscore_time(to_datetime(sandbox.clock.now_us()))


def _timeline(sandbox, out_order_no: str) -> tuple[int, list[tuple[str, str | None]]]:
    with sandbox.engine.connect() as conn:
        order = conn.execute(select(db.orders).where(
            db.orders.c.out_order_no == out_order_no)).one()
        events = conn.execute(select(db.order_events.c.kind, db.order_events.c.to_state)
                              .where(db.order_events.c.order_pk == order.pk)
                              .order_by(db.order_events.c.id)).all()
    return order.version, [tuple(e) for e in events if e.to_state is not None]


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_full_life_cycle(app, client, sandbox, merchant):
    http = app.test_client()
    created = client.post(ORDERS, client.create_body("LIFE-1"))
    assert created.status_code == 200 and created.json["state"] == "CREATED"

    confirm = http.post(f"/sandbox/merchants/{merchant.mchid}/orders/LIFE-1/confirm",
                        json={"openid": "oLifeCycleUser"})
    assert confirm.status_code == 200, confirm.json
    q = client.get(ORDERS, {**client.ids(), "out_order_no": "LIFE-1"})
    assert (q.json["state"], q.json["state_description"]) == ("DOING", "USER_CONFIRM")

    completed = client.post(f"{ORDERS}/LIFE-1/complete", {
        **client.ids(), "post_payments": [{"name": "租借费", "amount": 800}],
        "post_discounts": [{"name": "会员", "description": "会员价", "amount": 100}],
        "total_amount": 700, "time_range": {"end_time": _end_time(sandbox)}})
    assert completed.status_code == 200, completed.json
    assert completed.json["state_description"] == "MCH_COMPLETE"

    paid = http.post(f"/sandbox/merchants/{merchant.mchid}/orders/LIFE-1/deduction", json={})
    assert paid.status_code == 200, paid.json
    q = client.get(ORDERS, {**client.ids(), "query_id": _query_id(sandbox, "LIFE-1")})
    assert (q.json["state"], q.json["collection"]["state"]) == ("DONE", "USER_PAID")
    assert q.json["collection"]["paid_amount"] == 700
    assert _timeline(sandbox, "LIFE-1") == (4, [
        ("create", "CREATED"), ("user_confirm", "DOING/USER_CONFIRM"),
        ("complete", "DOING/MCH_COMPLETE/USER_PAYING"), ("deduction_succeeded", "DONE/USER_PAID")])

    assert client.post(ORDERS, client.create_body("LIFE-2")).status_code == 200
    cancel = {**client.ids(), "reason": "用户取消"}
    assert client.post(f"{ORDERS}/LIFE-2/cancel", cancel).status_code == 200
    assert client.post(f"{ORDERS}/LIFE-2/cancel", cancel).status_code == 200  # same params
    again = client.post(f"{ORDERS}/LIFE-2/complete", {
        **client.ids(), "post_payments": [{"name": "租借费", "amount": 1}], "total_amount": 1,
        "time_range": {"end_time": _end_time(sandbox)}})
    assert (again.status_code, again.json["code"]) == (400, "ORDER_CANCELED")
    assert _timeline(sandbox, "LIFE-2") == (2, [("create", "CREATED"), ("cancel", "REVOKED")])


def _query_id(sandbox, out_order_no: str) -> str:
    with sandbox.engine.connect() as conn:
        return conn.execute(select(db.orders.c.query_id).where(
            db.orders.c.out_order_no == out_order_no)).scalar_one()


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_concurrent_identical_creates_in_one_process(app, merchant, sandbox):
    """Threads of one process; on PostgreSQL the losers of the insert race are rerun."""
    body = SignedClient(app, merchant).create_body("SAME-1")
    barrier = threading.Barrier(16, timeout=30)

    def create(_):
        client = SignedClient(app, merchant)  # one test client per thread
        barrier.wait()
        r = client.post(ORDERS, body)
        return r.status_code, r.get_data()

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(create, range(16)))
    assert {status for status, _ in answers} == {200}, answers
    assert len({data for _, data in answers}) == 1
    with sandbox.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.orders)).scalar_one() == 1
    assert _timeline(sandbox, "SAME-1") == (1, [("create", "CREATED")])


@pytest.mark.postgres
def test_each_test_gets_its_own_schema(tmp_path, db_url, postgres_schemas):
    first = make_sandbox(tmp_path / "a", db_url=db_url)
    with postgres_schemas() as other_url:
        second = make_sandbox(tmp_path / "b", db_url=other_url)
        try:
            client = SignedClient(first, add_merchant(first))
            assert client.post(ORDERS, client.create_body("MINE-1")).status_code == 200
            with second.extensions["payscore"].engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(db.orders)).scalar_one() == 0
                assert conn.execute(select(func.count()).select_from(db.merchants)
                                    ).scalar_one() == 0
        finally:
            second.extensions["payscore"].engine.dispose()
            first.extensions["payscore"].engine.dispose()


def test_postgres_tests_say_why_they_skip(monkeypatch, postgres_schemas):
    monkeypatch.delenv("PAYSCORE_TEST_POSTGRES_URL", raising=False)
    with pytest.raises(pytest.skip.Exception,
                       match="set PAYSCORE_TEST_POSTGRES_URL to run PostgreSQL tests"), \
            postgres_schemas():
        pass
