"""Fault injection on the API side: the catalogue of effect kinds, HTTP errors only within
their scope, triggers, disarming, validation, and several processes sharing the fault set.
What the answer-bending effects do (bodies, signatures, platform keys, outage) and the request
log as evidence are in test_faults_answers.py.

Everything here runs through Flask's test client; tests/test_faults_http.py repeats the
transport effects on real sockets.
"""

from __future__ import annotations

import pytest
from faults_support import S, arm, create, order_numbers, query, requests_log
from sqlalchemy import func, select

from sandbox import db
from sandbox.faults.effects import KINDS
from sandbox.faults.engine import draw
from sandbox.testing import SignedClient, add_merchant, make_sandbox

BRIEF_KINDS = {
    "http_error", "delay", "reset_before_commit", "reset_after_commit", "truncated_body",
    "garbage_body", "html_gateway", "bad_signature", "probe_signature", "unsigned",
    "rotated_serial", "public_key_signing", "callback_duplicate",
    "callback_concurrent_duplicates", "callback_reorder", "callback_delay", "callback_drop",
    "callback_tamper", "callback_stale_timestamp", "callback_replay", "callback_probe_signature",
    "callback_mismatched_content", "outage"}


# ------------------------------------------------------------------ the catalogue

def test_the_effect_kinds_are_the_closed_catalogue(app):
    assert set(KINDS) == BRIEF_KINDS
    for effect in KINDS.values():
        for hook in set(effect.hooks) - {"action"}:
            assert hook in effect.appliers or hook in effect.observers, (effect.name, hook)
        if effect.is_action:
            assert effect.arm is not None and effect.undo is not None
    listed = app.test_client().get("/sandbox/faults/kinds").json
    assert {e["effect"] for e in listed["effects"]} == BRIEF_KINDS
    delay = next(e for e in listed["effects"] if e["effect"] == "delay")
    assert delay["params"]["seconds"]["max"] == 30 and delay["params"]["phase"]["choices"] == \
        ["before", "after"]
    assert "create_service_order" in listed["operations"]
    assert "PAYSCORE.USER_PAID" in listed["events"]


# ------------------------------------------------------------------ http errors and scope

@pytest.mark.parametrize("params, status, code", [
    ({}, 500, "SYSTEM_ERROR"),
    ({"code": "FREQUENCY_LIMITED"}, 429, "FREQUENCY_LIMITED"),
    ({"code": "NO_AUTH", "message": "商户暂无权限"}, 403, "NO_AUTH"),
    ({"code": "PARAM_ERROR"}, 400, "PARAM_ERROR"),
    ({"code": "RATELIMIT_EXCEEDED", "status": 429}, 429, "RATELIMIT_EXCEEDED"),
])
def test_http_error_answers_instead_of_the_sandbox_only_in_scope(app, sandbox, client, other,
                                                                 params, status, code):
    arm(app, effect="http_error", params=params, mchid=client.merchant.mchid,
        operation="create_service_order", scenario_id="S6")
    assert create(other, "OTHER-1").status_code == 200  # another merchant
    r = create(client, "E-1")
    assert (r.status_code, r.json["code"]) == (status, code)
    if "message" in params:
        assert r.json["message"] == params["message"]
    assert not any(h.startswith("Wechatpay-") for h, _ in r.headers.items())  # errors are unsigned
    assert query(client, "E-1").status_code == 404  # another operation: untouched, and the
    assert "E-1" not in order_numbers(sandbox, client.merchant.mchid)  # error processed nothing


def test_http_error_after_commit_keeps_what_the_operation_did(app, sandbox, client):
    arm(app, effect="http_error", params={"phase": "after"}, mchid=client.merchant.mchid,
        remaining=1)
    r = create(client, "AFTER-1")
    assert (r.status_code, r.json["code"]) == (500, "SYSTEM_ERROR")
    assert order_numbers(sandbox, client.merchant.mchid) == ["AFTER-1"]
    again = create(client, "AFTER-1")  # the identical retry finds the order
    assert again.status_code == 200 and again.json["out_order_no"] == "AFTER-1"


def test_delay_before_processing_is_wall_time_in_the_handler(app, sandbox, client):
    arm(app, effect="delay", mchid=client.merchant.mchid, remaining=1,
        params={"seconds": 0.3, "phase": "before"})
    assert create(client, "DB-1").status_code == 200
    (logged,) = requests_log(app, fault="delay")
    assert logged["duration_ms"] >= 300 and logged["out_order_no"] == "DB-1"


def test_scope_by_order_number_and_by_user(app, sandbox, client):
    mchid = client.merchant.mchid
    for no, user in (("U-1", "o_user_one"), ("U-2", "o_user_two")):
        assert create(client, no).status_code == 200
        confirmed = app.test_client().post(f"/sandbox/merchants/{mchid}/orders/{no}/confirm",
                                           json={"openid": user})
        assert confirmed.status_code == 200, confirmed.json
    arm(app, effect="http_error", out_order_no="U-1")
    arm(app, effect="http_error", params={"code": "FREQUENCY_LIMITED"}, openid="o_user_two",
        operation="query_service_order")
    assert query(client, "U-1").status_code == 500  # from the query string
    assert create(client, "U-1").status_code == 500  # from the create body
    assert create(client, "U-3").status_code == 200
    assert query(client, "U-2").status_code == 429  # the order's user, looked up
    assert query(client, "U-3").status_code == 200


# ------------------------------------------------------------------ triggers

def test_next_n_calls_then_never_again(app, client):
    fault = arm(app, effect="http_error", mchid=client.merchant.mchid, remaining=3)
    statuses = [create(client, f"N-{i}").status_code for i in range(5)]
    assert statuses == [500, 500, 500, 200, 200]
    listed = app.test_client().get(f"/sandbox/faults/{fault['id']}").json
    assert (listed["taken"], listed["trigger"]["remaining"], listed["active"],
            listed["status"]) == (3, 0, False, "exhausted")


def test_probability_draws_are_reproducible_with_a_seed(tmp_path):
    runs = []
    for run, seed in enumerate((7, 7, 8)):
        app = make_sandbox(tmp_path / f"run{run}")
        client = SignedClient(app, add_merchant(app))
        arm(app, effect="http_error", mchid=client.merchant.mchid, probability=0.5, seed=seed)
        runs.append([create(client, f"P-{i}").status_code == 500 for i in range(16)])
        app.extensions["payscore"].engine.dispose()
    assert runs[0] == runs[1] == [draw(7, i, 0.5) for i in range(16)]
    assert runs[2] == [draw(8, i, 0.5) for i in range(16)] != runs[0]
    assert 3 <= sum(runs[0]) <= 13


def test_window_on_the_sandbox_clock(app, sandbox, client):
    sandbox.clock.freeze()
    now = sandbox.clock.freeze()
    arm(app, effect="http_error", mchid=client.merchant.mchid, window_s=60)
    later = arm(app, effect="http_error", params={"code": "FREQUENCY_LIMITED"},
                mchid=client.merchant.mchid, start_in_s=120, window_s=60)
    assert later["status"] == "scheduled" and later["trigger"]["window_start_us"] == \
        now + 120 * S
    assert create(client, "W-1").status_code == 500
    sandbox.clock.shift(61 * S)
    assert create(client, "W-2").status_code == 200
    sandbox.clock.shift(60 * S)
    assert create(client, "W-3").status_code == 429
    sandbox.clock.shift(60 * S)
    assert create(client, "W-4").status_code == 200
    statuses = {f["id"]: f["status"] for f in app.test_client().get("/sandbox/faults").json[
        "faults"]}
    assert statuses[later["id"]] == "expired"


def test_disarm_one_fault_and_a_scenarios_faults(app, client):
    http = app.test_client()
    mine = arm(app, effect="http_error", mchid=client.merchant.mchid, scenario_id="S-A",
               operation="query_service_order")
    arm(app, effect="http_error", params={"code": "NO_AUTH"}, mchid=client.merchant.mchid,
        scenario_id="S-B", operation="create_service_order")
    arm(app, effect="unsigned", mchid=client.merchant.mchid, scenario_id="S-B")
    assert create(client, "D-1").status_code == 403
    assert http.delete(f"/sandbox/faults/{mine['id']}").json["status"] == "disarmed"
    assert query(client, "D-1").status_code == 404  # no 500 any more
    gone = http.delete("/sandbox/faults?scenario_id=S-B").json
    assert len(gone["disarmed"]) == 2
    r = create(client, "D-2")
    assert r.status_code == 200 and "Wechatpay-Signature" in r.headers
    assert http.get("/sandbox/faults?active=true").json["faults"] == []
    assert http.delete("/sandbox/faults").status_code == 400  # say which, or all=true
    assert http.delete("/sandbox/faults/999").json["code"] == "RESOURCE_NOT_EXISTS"


REFUSED = [
    ({"effect": "explode"}, "effect", "PARAM_ERROR"),
    ({"effect": "http_error", "operation": "create_order"}, "operation", "PARAM_ERROR"),
    ({"effect": "callback_drop", "operation": "create_service_order"}, "operation",
     "PARAM_ERROR"),
    ({"effect": "delay", "params": {"seconds": 31}}, "params/seconds", "PARAM_ERROR"),
    ({"effect": "delay", "params": {"sconds": 3}}, "params/sconds", "PARAM_ERROR"),
    ({"effect": "http_error", "params": {"code": "MADE_UP"}}, "params/status", "PARAM_ERROR"),
    ({"effect": "http_error", "probability": 1.5}, "/probability", "PARAM_ERROR"),
    ({"effect": "http_error", "remaining": 0}, "/remaining", "PARAM_ERROR"),
    ({"effect": "rotated_serial", "remaining": 2}, "remaining", "PARAM_ERROR"),
    ({"effect": "public_key_signing"}, "mchid", "PARAM_ERROR"),
    ({"effect": "callback_reorder", "operation": "PAYSCORE.USER_CONFIRM"}, "operation",
     "PARAM_ERROR"),
    ({"effect": "http_error", "mchid": "1900000000"}, None, "MCH_NOT_EXISTS"),
    ({}, "/effect", "PARAM_ERROR"),
]


def test_arming_refuses_what_it_cannot_do(app):
    http = app.test_client()
    for spec, field, code in REFUSED:
        r = http.post("/sandbox/faults", json=spec)
        assert r.status_code == 400 and r.json["code"] == code, (spec, r.json)
        if field is not None:
            assert r.json["detail"]["field"] == field, (spec, r.json)
    unknown = http.post("/sandbox/faults", json={"effect": "explode"}).json["detail"]["issue"]
    assert all(name in unknown for name in BRIEF_KINDS)  # the list of kinds
    operation = http.post("/sandbox/faults", json={"effect": "http_error",
                                                   "operation": "nope"}).json["detail"]
    assert "query_service_order" in operation["issue"] and operation["value"] == "nope"
    bad_json = http.post("/sandbox/faults", data=b"{nope", content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.json["code"] == "PARAM_ERROR"
    assert http.get("/sandbox/faults").json["faults"] == []


# ------------------------------------------------------------------ several processes

def test_another_process_sees_faults_and_a_fault_is_taken_once(tmp_path):
    """Two apps on one database file stand in for two gunicorn workers."""
    first = make_sandbox(tmp_path)
    second = make_sandbox(tmp_path)
    merchant = add_merchant(first)
    one, two = SignedClient(first, merchant), SignedClient(second, merchant)
    assert create(two, "X-0").status_code == 200  # second's cache: nothing armed
    arm(first, effect="http_error", mchid=merchant.mchid, remaining=3)
    statuses = [create(c, f"X-{i}").status_code for i, c in enumerate([two, one] * 3, 1)]
    assert statuses == [500, 500, 500, 200, 200, 200]
    rotated = arm(first, effect="rotated_serial")["state"]["serial"]
    assert create(two, "X-9").headers["Wechatpay-Serial"] == rotated  # keys reloaded there
    for app in (first, second):
        app.extensions["payscore"].engine.dispose()


def test_the_cache_reloads_only_when_the_fault_set_changes(app, sandbox, client, monkeypatch):
    engine = sandbox.extras["faults"]
    loads = []
    original = engine._load
    monkeypatch.setattr(engine, "_load", lambda version: loads.append(version) or
                        original(version))
    for i in range(5):
        create(client, f"C-{i}")
    assert len(loads) <= 1  # at most the first call after the fixture's setup
    before = len(loads)
    app.test_client().post("/sandbox/faults", json={"effect": "unsigned",
                                                    "mchid": client.merchant.mchid})
    for i in range(3):
        create(client, f"D-{i}")
    assert len(loads) == before + 1


def test_a_broken_held_connection_is_reopened_and_faults_still_apply(app, sandbox, client,
                                                                      caplog):
    assert create(client, "BP-0").status_code == 200 and sandbox.held._dbapi is not None
    sandbox.held._dbapi.close()  # the held connection dies under the clock/version read
    arm(app, effect="http_error", mchid=client.merchant.mchid, remaining=2)
    assert [create(client, f"BP-{i}").status_code for i in (1, 2, 3)] == [500, 500, 200]
    assert sandbox.probe.fault_version() is not None  # a new connection
    assert sum("held database connection failed" in r.message for r in caplog.records) == 1


def test_rows_written_by_hand_get_defaults_and_bad_ones_are_ignored(app, sandbox, client):
    with db.write_tx(sandbox.engine) as conn:
        for effect, params in (("http_error", {"status": 503}), ("delay", {"seconds": 99}),
                               ("warp_drive", {})):
            conn.execute(db.faults.insert().values(
                effect=effect, hook="before", params=params, mchid=client.merchant.mchid,
                taken=0, active=True, created_us=sandbox.clock.now_us(conn)))
    r = create(client, "H-1")  # the bad delay (99 s) and the unknown kind are skipped
    assert (r.status_code, r.json["code"]) == (503, "SYSTEM_ERROR")
    listed = app.test_client().get("/sandbox/faults").json["faults"]
    assert sorted(f["effect"] for f in listed) == ["delay", "http_error", "warp_drive"]


def test_an_old_database_gets_the_new_fault_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the faults table as the first release created it
        conn.execute("CREATE TABLE faults (id INTEGER PRIMARY KEY, scenario_id VARCHAR(32), "
                     "effect VARCHAR(32) NOT NULL, hook VARCHAR(16) NOT NULL, params JSON, "
                     "mchid VARCHAR(32), out_order_no VARCHAR(32), openid VARCHAR(128), "
                     "operation VARCHAR(48), remaining INTEGER, probability FLOAT, "
                     "seed INTEGER, window_start_us BIGINT, window_end_us BIGINT, "
                     "taken INTEGER NOT NULL, active BOOLEAN NOT NULL, "
                     "created_us BIGINT NOT NULL)")
        conn.execute("INSERT INTO faults (effect, hook, taken, active, created_us) "
                     "VALUES ('unsigned', 'after', 0, 0, 1)")
    app = make_sandbox(tmp_path, db_url=f"sqlite:///{path}")
    sb = app.extensions["payscore"]
    with sb.engine.connect() as conn:
        row = conn.execute(select(db.faults)).one()
        assert (row.matched, row.state, row.disarmed_us) == (0, None, None)
        assert conn.execute(select(func.count()).select_from(db.fault_version)).scalar() == 1
    sb.engine.dispose()
