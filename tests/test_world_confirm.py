"""Users act on their own after their delay; orders left alone expire after 30 days."""

from __future__ import annotations

from test_world_support import (
    DAY,
    SECOND,
    T0,
    act,
    control,
    create,
    events_of,
    freeze,
    notifications,
    state,
    user,
)

from sandbox.world import population

MAGIC = population.MAGIC_OPENIDS


def test_a_confirming_user_confirms_after_their_delay(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    delay = user(client, openid)["confirm_delay_s"] * SECOND
    assert create(client, "C1", openid=openid).status_code == 200
    sandbox.advance(delay - 1)
    assert state(client, "C1") == "CREATED"
    assert notifications(sandbox, "PAYSCORE.USER_CONFIRM") == []
    sandbox.advance(1)
    assert state(client, "C1") == "DOING/USER_CONFIRM"
    confirm = events_of(client, "C1", "user_confirm")[0]
    assert confirm["at_us"] == T0 + delay and confirm["detail"] == {"by": "user"}
    sent = notifications(sandbox, "PAYSCORE.USER_CONFIRM")
    assert len(sent) == 1 and sent[0].resource["state"] == "DOING"
    assert sent[0].resource["state_description"] == "USER_CONFIRM"
    assert sent[0].resource["openid"] == openid and sent[0].created_us == T0 + delay


def test_a_declining_user_declines_after_their_delay(client, sandbox):
    freeze(sandbox)
    assert create(client, "D1", openid=MAGIC["declines"]).status_code == 200
    sandbox.advance(5 * SECOND)
    assert state(client, "D1") == "REVOKED"
    assert events_of(client, "D1", "user_decline")[0]["at_us"] == T0 + 5 * SECOND
    assert notifications(sandbox, "PAYSCORE.USER_CONFIRM") == []


def test_an_ignored_order_expires_after_exactly_30_days(client, sandbox):
    freeze(sandbox)
    assert create(client, "E1", openid=MAGIC["never_confirms"]).status_code == 200
    sandbox.advance(30 * DAY - 1)
    assert state(client, "E1") == "CREATED"
    sandbox.advance(1)
    assert state(client, "E1") == "EXPIRED"
    assert events_of(client, "E1", "expire")[0]["at_us"] == T0 + 30 * DAY


def test_expiry_and_own_actions_do_nothing_once_the_order_moved_on(client, sandbox):
    freeze(sandbox)
    assert create(client, "X1", openid=MAGIC["always_confirms"]).status_code == 200
    cancel = client.post("/v3/payscore/serviceorder/X1/cancel",
                         {**client.ids(), "reason": "用户不需要了"})
    assert cancel.status_code == 200
    sandbox.advance(31 * DAY)
    assert state(client, "X1") == "REVOKED"
    assert events_of(client, "X1", "user_confirm") == []
    assert events_of(client, "X1", "expire") == []


def test_the_control_api_makes_any_user_act_on_an_order_without_openid(client, sandbox):
    freeze(sandbox)
    assert create(client, "N1").status_code == 200
    answer = act(client, "oWalkInUser", "confirm", "N1")
    assert answer["order"]["state"] == "DOING" and answer["order"]["openid"] == "oWalkInUser"
    assert len(notifications(sandbox, "PAYSCORE.USER_CONFIRM")) == 1
    assert create(client, "N2").status_code == 200
    assert act(client, "oWalkInUser", "decline", "N2")["order"]["state"] == "REVOKED"
    # a user cannot act on another user's order
    assert create(client, "N3", openid=MAGIC["never_confirms"]).status_code == 200
    answer = control(client).post("/sandbox/users/oSomeoneElse/act", json={
        "action": "confirm", "mchid": client.merchant.mchid, "out_order_no": "N3"})
    assert answer.status_code == 400 and answer.json["code"] == "PARAM_ERROR"
    # acting twice hits the state machine's own error
    again = control(client).post("/sandbox/users/oWalkInUser/act", json={
        "action": "confirm", "mchid": client.merchant.mchid, "out_order_no": "N1"})
    assert again.status_code == 400 and again.json["code"] == "INVALID_REQUEST"


def test_jobs_endpoint_lists_what_is_pending_in_run_order(client, sandbox):
    freeze(sandbox)
    assert create(client, "J1", openid=MAGIC["always_confirms"]).status_code == 200
    jobs = control(client).get("/sandbox/jobs").json["data"]
    assert [j["kind"] for j in jobs] == ["user_confirm", "score_refresh", "expire_order"]
    assert [j["due_us"] for j in jobs] == sorted(j["due_us"] for j in jobs)
    soon = control(client).get(f"/sandbox/jobs?due_before={T0 + DAY // 2}").json["data"]
    assert [j["kind"] for j in soon] == ["user_confirm"]
    only = control(client).get("/sandbox/jobs?kind=expire_order").json["data"]
    assert len(only) == 1 and only[0]["due_us"] == T0 + 30 * DAY
