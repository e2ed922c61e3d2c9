"""The dashboard's read API (/sandbox/api/) through Flask's test client: lists, filters,
paging, capped counts, merged timelines, explanations of rejected requests, and the UI's headers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from merchant_kit import protocol
from sandbox import db


def _api(app, path: str, **query):
    answer = app.test_client().get(path, query_string=query)
    return answer.status_code, answer.get_json()


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_order_list_is_newest_first_filtered_paged_and_counted(app, client, merchant):
    for i in range(5):
        assert client.post("/v3/payscore/serviceorder",
                           client.create_body(f"LIST{i}")).status_code == 200
    client.post("/v3/payscore/serviceorder/LIST0/cancel",
                {**client.ids(), "reason": "no longer needed"})
    status, page = _api(app, "/sandbox/api/orders", limit=2)
    assert status == 200 and page["count"] == 5 and not page["count_capped"]
    assert [o["out_order_no"] for o in page["orders"]] == ["LIST4", "LIST3"]
    _, page2 = _api(app, "/sandbox/api/orders", limit=2, before=page["next_before"])
    _, page3 = _api(app, "/sandbox/api/orders", limit=2, before=page2["next_before"])
    assert [o["out_order_no"] for o in page2["orders"] + page3["orders"]] == \
        ["LIST2", "LIST1", "LIST0"]
    assert page3["next_before"] is None
    _, revoked = _api(app, "/sandbox/api/orders", state="REVOKED", mchid=merchant.mchid)
    assert [o["out_order_no"] for o in revoked["orders"]] == ["LIST0"]
    _, other = _api(app, "/sandbox/api/orders", mchid="1900000000")
    assert other == {"orders": [], "count": 0, "count_capped": False, "next_before": None}


def test_counts_are_capped_instead_of_scanning(app, monkeypatch, client):
    from sandbox.backend import inspect

    monkeypatch.setattr(inspect, "COUNT_CAP", 3)
    for i in range(5):
        client.post("/v3/payscore/serviceorder", client.create_body(f"CAP{i}"))
    _, page = _api(app, "/sandbox/api/orders")
    assert (page["count"], page["count_capped"], len(page["orders"])) == (3, True, 5)


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_timeline_merges_requests_state_changes_and_callbacks(app, client, merchant, sandbox):
    client.post("/v3/payscore/serviceorder", client.create_body("TL1"))
    client.get("/v3/payscore/serviceorder", {"out_order_no": "TL1", **client.ids()})
    app.test_client().post(f"/sandbox/merchants/{merchant.mchid}/orders/TL1/confirm",
                           json={"openid": "o-timeline"})
    with sandbox.engine.connect() as conn:
        pk = conn.execute(db.orders.select().where(db.orders.c.out_order_no == "TL1")).one().pk
    status, found = _api(app, f"/sandbox/api/orders/{pk}")
    assert status == 200 and found["order"]["openid"] == "o-timeline"
    kinds = [(t["kind"], t.get("operation") or t.get("event") or t.get("event_type"))
             for t in found["timeline"]]
    assert ("request", "user_confirm") in kinds  # the control call that made the user act
    kinds.remove(("request", "user_confirm"))  # logged when it ended: after its state change
    assert kinds == [("request", "create_service_order"), ("state", "create"),
                     ("request", "query_service_order"), ("state", "user_confirm"),
                     ("notification", "PAYSCORE.USER_CONFIRM")]
    assert found["timeline"][0]["verdict"] == "signature ok"
    callback = next(t for t in found["timeline"] if t["kind"] == "notification")
    assert callback["status"] == "PENDING" and callback["next_attempt"] is not None
    assert _api(app, "/sandbox/api/orders/999999")[0] == 404


@pytest.mark.parametrize(("case", "expected"), [
    ("stale", "It sent timestamp"),
    ("serial", "merchant's API certificate"),
    ("signature", "does not verify"),
    ("mchid", "not a merchant of this sandbox"),
    ("format", "could not be parsed"),
])
def test_rejected_requests_are_explained(app, client, merchant, case, expected):
    body = client.create_body("EXPL1")
    if case == "stale":
        answer = client.post("/v3/payscore/serviceorder", body, timestamp=client._now() - 400)
    elif case == "serial":
        answer = client.post("/v3/payscore/serviceorder", body, headers={
            "Authorization": protocol.build_authorization(
                merchant.mchid, "ABCDEF", merchant.private_key, "POST",
                "/v3/payscore/serviceorder", json.dumps(body).encode(), client._now(), "n")})
    elif case == "signature":
        answer = client.post("/v3/payscore/serviceorder", body, headers={  # signed another body
            "Authorization": protocol.build_authorization(
                merchant.mchid, merchant.serial_no, merchant.private_key, "POST",
                "/v3/payscore/serviceorder", b'{"tampered":1}', client._now(), "n")})
    elif case == "mchid":
        answer = client.post("/v3/payscore/serviceorder", body,
                             headers={"Authorization": protocol.build_authorization(
                                 "1234567890", merchant.serial_no, merchant.private_key,
                                 "POST", "/v3/payscore/serviceorder", b"", client._now(), "n")})
    else:
        answer = client.post("/v3/payscore/serviceorder", body,
                             headers={"Authorization": "WECHATPAY2-SHA256-RSA2048 nonsense"})
    assert answer.status_code == 401
    _, log = _api(app, "/sandbox/api/requests", failed="true")
    row = log["requests"][0]
    assert row["verdict"].startswith(f"signature rejected: {case}")
    assert expected in row["explanation"]
    if case == "stale":
        assert "400 s behind the sandbox clock" in row["explanation"]
    if case in ("stale", "serial", "signature"):  # the merchant it claimed to be
        assert row["mchid"] == merchant.mchid
        _, mine = _api(app, "/sandbox/api/requests", mchid=merchant.mchid)
        assert row["id"] in [r["id"] for r in mine["requests"]]


def test_dashboard_reads_are_not_logged_and_bad_queries_are_wechat_errors(app, client):
    client.post("/v3/payscore/serviceorder", client.create_body("QUIET1"))
    for _ in range(3):
        _api(app, "/sandbox/api/orders")
        _api(app, "/sandbox/api/requests")
    _, log = _api(app, "/sandbox/api/requests")
    assert [r["path"] for r in log["requests"]] == ["/v3/payscore/serviceorder"]
    assert log["requests"][0]["out_order_no"] == "QUIET1"  # from the create body
    for path, query in [("/sandbox/api/orders", {"before": "nonsense"}),
                        ("/sandbox/api/orders", {"before": "1_2x"}),
                        ("/sandbox/api/orders", {"before": "9" * 40 + "_1"}),
                        ("/sandbox/api/orders", {"limit": "100000"}),
                        ("/sandbox/api/orders", {"state": "<script>"}),
                        ("/sandbox/api/orders", {"since": "forever"}),
                        ("/sandbox/api/requests", {"before": str(2**70)}),
                        ("/sandbox/api/notifications", {"status": "x"})]:
        status, body = _api(app, path, **query)
        assert status == 400 and body["code"] == "PARAM_ERROR", (path, query, body)
    status, body = _api(app, "/sandbox/api/users/o-nobody")
    assert status == 404 and body["code"] == "RESOURCE_NOT_EXISTS"


def test_the_ui_is_served_hardened_and_self_contained(app):
    http = app.test_client()
    index = http.get("/sandbox/ui/")
    assert index.status_code == 200
    csp = index.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    html = index.get_data(as_text=True)
    static = Path(__file__).resolve().parents[1] / "sandbox" / "ui" / "static"
    for name in sorted(p.name for p in static.glob("*.js")) + ["app.css"]:
        asset = http.get(f"/sandbox/ui/static/{name}")
        assert asset.status_code == 200, name
        text = asset.get_data(as_text=True)
        assert "innerHTML" not in text and "http://" not in text and "https://" not in text, \
            f"{name}: must build DOM with text nodes and load nothing from elsewhere"
    assert "http://" not in html and "https://" not in html
