"""What the answer-bending faults do to an API answer, through Flask's test client: truncated
and garbage bodies, the gateway page, bad, probe and missing signatures, in-process resets,
platform-key rotation and public-key signing, outages; and the request log as their evidence.
"""

from __future__ import annotations

import json

import pytest
from faults_support import S, arm, create, order_numbers, query, requests_log, signature_valid
from sqlalchemy import select

from sandbox import db

# ------------------------------------------------------------------ bodies and signatures

def test_truncated_and_garbage_bodies_and_the_gateway_page(app, sandbox, client):
    mchid = client.merchant.mchid
    arm(app, effect="truncated_body", mchid=mchid, remaining=1)
    r = create(client, "T-1")
    assert r.status_code == 200 and signature_valid(sandbox, r)  # signed over what was sent
    with pytest.raises(ValueError):
        json.loads(r.get_data())
    assert len(r.get_data()) < len(query(client, "T-1").get_data())
    arm(app, effect="garbage_body", mchid=mchid, remaining=1, params={"signed": "none"})
    r = query(client, "T-1")
    assert r.status_code == 200 and "Wechatpay-Signature" not in r.headers
    with pytest.raises(ValueError):
        json.loads(r.get_data())
    arm(app, effect="html_gateway", mchid=mchid, remaining=1)
    r = create(client, "T-2")
    assert r.status_code == 502 and r.content_type.startswith("text/html")
    assert b"<center>nginx</center>" in r.get_data() and "Wechatpay-Signature" not in r.headers
    assert "T-2" not in order_numbers(sandbox, mchid)
    assert create(client, "T-2").status_code == 200


def test_bad_probe_and_missing_signatures(app, sandbox, client):
    mchid = client.merchant.mchid
    assert create(client, "SIG-1").status_code == 200
    arm(app, effect="bad_signature", mchid=mchid, remaining=1, params={"claim_paid": True})
    r = query(client, "SIG-1")
    assert r.status_code == 200 and r.headers["Wechatpay-Serial"] in sandbox.signer.by_serial
    assert len(r.headers["Wechatpay-Signature"]) == 344 and not signature_valid(sandbox, r)
    assert (r.json["state"], r.json["collection"]["state"]) == ("DONE", "USER_PAID")
    real = query(client, "SIG-1")
    assert real.json["state"] == "CREATED" and signature_valid(sandbox, real)
    arm(app, effect="probe_signature", mchid=mchid, remaining=1)
    r = query(client, "SIG-1")
    assert r.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert r.headers["Wechatpay-Timestamp"] and r.headers["Wechatpay-Nonce"]
    assert r.json == real.json
    arm(app, effect="unsigned", mchid=mchid, remaining=1)
    r = query(client, "SIG-1")
    assert r.json == real.json and not any(h.startswith("Wechatpay-") for h, _ in r.headers.items())


def test_resets_in_process_look_like_a_dropped_connection(app, sandbox, client):
    mchid = client.merchant.mchid
    arm(app, effect="reset_before_commit", mchid=mchid, remaining=1, scenario_id="S2")
    with pytest.raises(ConnectionResetError):
        create(client, "R-1")
    assert order_numbers(sandbox, mchid) == []
    arm(app, effect="reset_after_commit", mchid=mchid, remaining=1, scenario_id="S3")
    with pytest.raises(ConnectionResetError):
        create(client, "R-1")
    assert order_numbers(sandbox, mchid) == ["R-1"]
    assert create(client, "R-1").status_code == 200
    logged = requests_log(app, faulted="true")
    assert [(x["status"], x["fault"], x["scenario_id"]) for x in logged] == \
        [(444, "reset_before_commit", "S2"), (200, "reset_after_commit", "S3")]


# ------------------------------------------------------------------ platform keys

def test_certificate_rotation_for_everyone_then_disarmed(app, sandbox, client):
    old = create(client, "ROT-1").headers["Wechatpay-Serial"]
    fault = app.test_client().post("/sandbox/faults/rotate-certificate", json={}).json
    new = fault["state"]["serial"]
    r = query(client, "ROT-1")
    assert r.headers["Wechatpay-Serial"] == new != old and signature_valid(sandbox, r)
    listed = client.get("/v3/certificates").json["data"]
    assert {c["serial_no"] for c in listed} == {old, new}
    app.test_client().delete(f"/sandbox/faults/{fault['id']}")
    assert query(client, "ROT-1").headers["Wechatpay-Serial"] == old
    assert [c["serial_no"] for c in client.get("/v3/certificates").json["data"]] == [old]


def test_certificate_rotation_scoped_to_one_merchant(app, sandbox, client, other):
    old = create(client, "ROT-2").headers["Wechatpay-Serial"]
    fault = arm(app, effect="rotated_serial", mchid=client.merchant.mchid, scenario_id="S13")
    new = fault["state"]["serial"]
    mine, theirs = query(client, "ROT-2"), create(other, "ROT-3")
    assert mine.headers["Wechatpay-Serial"] == new and signature_valid(sandbox, mine)
    assert theirs.headers["Wechatpay-Serial"] == old and signature_valid(sandbox, theirs)
    assert {c["serial_no"] for c in other.get("/v3/certificates").json["data"]} == {old, new}
    assert requests_log(app, scenario_id="S13")[-1]["fault"] == "rotated_serial"


def test_public_key_signing_and_switching_back(app, sandbox, client, other):
    http = app.test_client()
    mchid = client.merchant.mchid
    assert create(client, "PK-1").headers["Wechatpay-Serial"] == sandbox.signer.certificate.serial
    first = http.post(f"/sandbox/merchants/{mchid}/signing-mode",
                      json={"mode": "migrating", "ratio": 0.2}).json
    second = http.post(f"/sandbox/merchants/{mchid}/signing-mode",
                       json={"mode": "public_key"}).json
    r = query(client, "PK-1")
    assert r.headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_") and signature_valid(sandbox, r)
    assert client.get("/v3/certificates").json["code"] == "RESOURCE_NOT_EXISTS"
    assert not create(other, "PK-2").headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    assert http.get(f"/sandbox/faults/{first['id']}").json["status"] == "disarmed"
    http.delete(f"/sandbox/faults/{second['id']}")  # back to where it was before both
    with sandbox.engine.connect() as conn:
        row = conn.execute(select(db.merchants).where(db.merchants.c.mchid == mchid)).one()
    assert (row.signing_mode, row.migration_ratio) == ("certificate", 0.0)
    assert not query(client, "PK-1").headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")


# ------------------------------------------------------------------ outage

@pytest.mark.parametrize("status, code", [(503, "SERVICE_UNAVAILABLE"), (500, "SYSTEM_ERROR")])
def test_outage_fails_everything_of_the_scope_for_the_window(app, sandbox, client, other,
                                                             status, code):
    sandbox.clock.freeze()
    arm(app, effect="outage", mchid=client.merchant.mchid, window_s=600,
        params={"status": status}, scenario_id="S30")
    answers = [create(client, "O-1"), query(client, "O-1"), client.get("/v3/certificates")]
    assert {(r.status_code, r.json["code"]) for r in answers} == {(status, code)}
    assert create(other, "O-2").status_code == 200
    sandbox.clock.shift(600 * S)
    assert create(client, "O-1").status_code == 200
    assert len(requests_log(app, scenario_id="S30", fault="outage")) == 3


# ------------------------------------------------------------------ evidence

def test_the_request_log_is_the_evidence(app, client, other):
    mchid = client.merchant.mchid
    arm(app, effect="http_error", mchid=mchid, out_order_no="EV-1", remaining=1,
        scenario_id="S-EV")
    create(client, "EV-1")
    create(client, "EV-1")
    create(other, "EV-1")
    query(client, "EV-1")
    mine = requests_log(app, mchid=mchid, out_order_no="EV-1")
    assert [(x["operation"], x["status"], x["fault"], x["scenario_id"]) for x in mine] == [
        ("create_service_order", 500, "http_error", "S-EV"),
        ("create_service_order", 200, None, None),
        ("query_service_order", 200, None, None)]
    assert [x["id"] for x in requests_log(app, scenario_id="S-EV")] == [mine[0]["id"]]
    after = requests_log(app, since_id=mine[0]["id"], operation="create_service_order")
    assert [x["mchid"] for x in after] == [mchid, other.merchant.mchid]
    assert requests_log(app, faulted="false", out_order_no="EV-1", limit=1)[0]["id"] == \
        mine[1]["id"]
    assert app.test_client().get("/sandbox/requests?since_id=-1").json["code"] == "PARAM_ERROR"
