"""Pre-authorisation (reference §2.10) and its callbacks (§6.4), with the control API's user."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from merchant_kit.protocol import payscore_time
from sandbox import db
from sandbox.testing import SignedClient, add_merchant

PERMISSIONS = "/v3/payscore/permissions"
USER = "o_magic_always_confirms"
HOUR_US = 3600 * 1_000_000


def authorize(client: SignedClient, openid: str = USER, code: str | None = None):
    body = {"openid": openid} | ({"authorization_code": code} if code else {})
    return client.post(f"/sandbox/merchants/{client.merchant.mchid}/permissions/authorize",
                       body, sign=False)


def revoke(client: SignedClient, openid: str = USER):
    return client.post(f"/sandbox/merchants/{client.merchant.mchid}/permissions/revoke",
                       {"openid": openid}, sign=False)


def apply(client: SignedClient, code: str, **extra):
    return client.post(PERMISSIONS, {**client.ids(), "authorization_code": code, **extra})


def by_code(client: SignedClient, code: str):
    return client.get(f"{PERMISSIONS}/authorization-code/{code}",
                      query={"service_id": client.merchant.service_id})


def by_openid(client: SignedClient, openid: str = USER):
    return client.get(f"{PERMISSIONS}/openid/{openid}", query=client.ids())


def service_state(client: SignedClient, openid: str = USER) -> str:
    r = client.get("/v3/payscore/user-service-state", query={**client.ids(), "openid": openid})
    assert r.status_code == 200
    assert set(r.json) == {"appid", "service_id", "openid", "use_service_state"}
    return r.json["use_service_state"]


def notices(sandbox) -> list:
    with sandbox.engine.connect() as conn:
        return list(conn.execute(select(db.notifications).order_by(db.notifications.c.created_us)))


def test_pre_authorisation_by_code(client, sandbox):
    sandbox.clock.freeze()
    r = apply(client, "AUTH-1", notify_url="https://merchant.example/auth")
    assert r.status_code == 200
    token = r.json["apply_permissions_token"]
    assert 0 < len(token) <= 300 and set(r.json) == {"apply_permissions_token"}
    pending = by_code(client, "AUTH-1").json
    assert pending["authorization_state"] == "UNBINDUSER" and "openid" not in pending
    assert pending["notify_url"] == "https://merchant.example/auth"
    assert service_state(client) == "UNAVAILABLE"

    assert authorize(client, code="AUTH-1").status_code == 200
    bound = by_code(client, "AUTH-1").json
    assert (bound["authorization_state"], bound["openid"], bound["mchid"]) == \
        ("AVAILABLE", USER, client.merchant.mchid)
    assert bound["authorization_success_time"].endswith("+08:00")
    assert service_state(client) == "AVAILABLE"
    assert by_openid(client).json["authorization_code"] == "AUTH-1"

    opened = notices(sandbox)
    assert [n.event_type for n in opened] == ["PAYSCORE.USER_OPEN_SERVICE"]
    assert opened[0].url == "https://merchant.example/auth"  # the permission's own URL
    assert opened[0].resource == {
        "appid": client.merchant.appid, "mchid": client.merchant.mchid,
        "service_id": client.merchant.service_id, "openid": USER,
        "user_service_status": "USER_OPEN_SERVICE",
        "openorclose_time": payscore_time(sandbox.clock.now()),
        "authorization_code": "AUTH-1"}


def test_terminate_by_code_is_204_signed_and_notifies(client, sandbox):
    apply(client, "AUTH-2", notify_url="https://merchant.example/auth")
    authorize(client, code="AUTH-2")
    body = {"service_id": client.merchant.service_id, "reason": "用户退租"}
    r = client.post(f"{PERMISSIONS}/authorization-code/AUTH-2/terminate", body)
    assert r.status_code == 204 and r.get_data() == b""
    assert r.headers["Wechatpay-Signature"]  # 204 answers are signed too
    after = by_code(client, "AUTH-2").json
    assert after["authorization_state"] == "UNAVAILABLE"
    assert "cancel_authorization_time" in after
    closing = [n for n in notices(sandbox) if n.event_type == "PAYSCORE.USER_CLOSE_SERVICE"]
    assert len(closing) == 1
    assert closing[0].resource["user_service_status"] == "USER_CLOSE_SERVICE"
    again = client.post(f"{PERMISSIONS}/authorization-code/AUTH-2/terminate", body)
    assert again.status_code == 204  # already ended: nothing changes, nothing is sent
    assert len([n for n in notices(sandbox)
                if n.event_type == "PAYSCORE.USER_CLOSE_SERVICE"]) == 1


def test_openid_authorisation_terminate_and_unfinished_orders(app, sandbox):
    client = SignedClient(app, add_merchant(app, notify_url="https://merchant.example/mch"))
    assert authorize(client).status_code == 200
    assert service_state(client) == "AVAILABLE"
    view = by_openid(client).json
    assert view["authorization_state"] == "AVAILABLE" and "authorization_code" not in view
    assert notices(sandbox)[0].url == "https://merchant.example/mch"  # merchant's URL

    order = client.create_body("U1", need_user_confirm=False, openid=USER)
    assert client.post("/v3/payscore/serviceorder", order).status_code == 200
    terminate = {**client.ids(), "reason": "不再使用"}
    blocked = client.post(f"{PERMISSIONS}/openid/{USER}/terminate", terminate)
    assert blocked.status_code == 400 and "存在未完成订单" in blocked.json["message"]
    assert service_state(client) == "AVAILABLE"

    client.post("/v3/payscore/serviceorder/U1/cancel", {**client.ids(), "reason": "x"})
    r = client.post(f"{PERMISSIONS}/openid/{USER}/terminate", terminate)
    assert r.status_code == 204 and r.get_data() == b""
    assert service_state(client) == "UNAVAILABLE"
    assert [n.event_type for n in notices(sandbox)] == [
        "PAYSCORE.USER_OPEN_SERVICE", "PAYSCORE.USER_CLOSE_SERVICE"]
    refused = client.post("/v3/payscore/serviceorder",
                          client.create_body("U2", need_user_confirm=False, openid=USER))
    assert refused.status_code == 403 and refused.json["code"] == "NO_AUTH"


def test_user_revokes_and_reauthorises(client, sandbox):
    authorize(client)
    assert revoke(client).json["authorization_state"] == "UNAVAILABLE"
    assert service_state(client) == "UNAVAILABLE"
    assert revoke(client).status_code == 404  # nothing left to close
    assert authorize(client).json["authorization_state"] == "AVAILABLE"
    assert service_state(client) == "AVAILABLE"
    kinds = [n.event_type for n in notices(sandbox)]
    # the demo merchant has no notify_url: notices only go where a URL is configured
    assert kinds == []


def test_unknown_user_is_unavailable_and_unknown_code_not_found(client):
    view = by_openid(client, "o_never_seen").json
    assert view["authorization_state"] == "UNAVAILABLE" and view["openid"] == "o_never_seen"
    missing = by_code(client, "NOPE")
    assert missing.status_code == 404 and missing.json["code"] == "ORDER_NOT_EXIST"
    terminate = client.post(f"{PERMISSIONS}/openid/o_never_seen/terminate",
                            {**client.ids(), "reason": "x"})
    assert terminate.status_code == 404


def test_code_rules(client, sandbox):
    assert apply(client, "AUTH-3").status_code == 200
    retry = apply(client, "AUTH-3")
    assert retry.status_code == 200  # same parameters while unbound: a fresh token
    other = apply(client, "AUTH-3", notify_url="https://merchant.example/x")
    assert other.status_code == 400 and other.json["code"] == "INVALID_REQUEST"
    bad = apply(client, "bad code!")
    assert bad.status_code == 400 and bad.json["code"] == "PARAM_ERROR"
    wrong_app = client.post(PERMISSIONS, {"appid": "wx0000000000000000",
                                          "service_id": client.merchant.service_id,
                                          "authorization_code": "AUTH-4"})
    assert wrong_app.status_code == 400
    # the token is valid for one hour: a user arriving later cannot accept it
    apply(client, "AUTH-5")
    sandbox.advance(HOUR_US + 1_000_000)
    late = authorize(client, code="AUTH-5")
    assert late.status_code == 400 and "过期" in late.json["message"]
    assert by_code(client, "AUTH-5").json["authorization_state"] == "UNBINDUSER"
    apply(client, "AUTH-6")
    authorize(client, code="AUTH-6")
    taken = authorize(client, "o_someone_else", "AUTH-6")
    assert taken.status_code == 400


def test_path_parameter_in_body_is_refused(client):
    apply(client, "AUTH-7")
    r = client.post(f"{PERMISSIONS}/authorization-code/AUTH-7/terminate",
                    {"service_id": client.merchant.service_id, "reason": "x",
                     "authorization_code": "AUTH-7"})
    assert r.status_code == 400 and "/uri_template/authorization_code" in r.json["message"]


@pytest.mark.parametrize("call", ["by_code", "terminate_code", "by_openid",
                                  "terminate_openid", "state"])
def test_another_merchant_sees_nothing(app, client, sandbox, call):
    apply(client, "AUTH-ISO")
    authorize(client, code="AUTH-ISO")
    other = SignedClient(app, add_merchant(app))
    svc = {"service_id": other.merchant.service_id}
    if call == "by_code":
        r = other.get(f"{PERMISSIONS}/authorization-code/AUTH-ISO", query=svc)
        assert r.status_code == 404
    elif call == "terminate_code":
        r = other.post(f"{PERMISSIONS}/authorization-code/AUTH-ISO/terminate",
                       {**svc, "reason": "x"})
        assert r.status_code == 404
    elif call == "by_openid":
        r = other.get(f"{PERMISSIONS}/openid/{USER}", query=other.ids())
        assert r.json["authorization_state"] == "UNAVAILABLE"
    elif call == "terminate_openid":
        r = other.post(f"{PERMISSIONS}/openid/{USER}/terminate",
                       {**other.ids(), "reason": "x"})
        assert r.status_code == 404
    else:
        assert service_state(other) == "UNAVAILABLE"
    assert by_code(client, "AUTH-ISO").json["authorization_state"] == "AVAILABLE"
    # the victim's code is still its own: the other merchant may use the same code freely
    assert apply(other, "AUTH-ISO").status_code == 200


@pytest.mark.parametrize("openid", ["o_magic_not_real_name", "o_magic_under_18",
                                    "o_magic_frozen", "o_magic_blacklisted"])
def test_an_ineligible_user_cannot_open_the_service(client, openid):
    refused = authorize(client, openid)
    assert refused.status_code == 400
    assert refused.json["code"] == "INVALID_REQUEST"
    assert service_state(client, openid) == "UNAVAILABLE"


def test_an_authorised_user_who_is_blacklisted_later_is_unavailable(client, sandbox):
    assert authorize(client).json["authorization_state"] == "AVAILABLE"
    assert service_state(client) == "AVAILABLE"
    with db.write_tx(sandbox.engine) as conn:
        conn.execute(db.users.update().where(db.users.c.openid == USER)
                     .values(blacklisted=True))
    assert service_state(client) == "UNAVAILABLE"
