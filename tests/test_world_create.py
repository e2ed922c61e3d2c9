"""Eligibility and risk tiers reflected in create: each magic openid's documented answer."""

from __future__ import annotations

import pytest
from test_world_support import (
    DAY,
    act,
    completed_order,
    count,
    create,
    freeze,
    refused,
    state,
    user,
)

from sandbox import db
from sandbox.world import population, rules

MAGIC = population.MAGIC_OPENIDS
RISK = rules.INTERNAL_CODES[rules.MSG_RISK_REJECTED]  # 271300099
OVERDUE = rules.INTERNAL_CODES[rules.MSG_OVERDUE_PENDING]  # 271299627

REFUSED = ("under_18", "over_65", "not_real_name", "no_bank_card", "client_too_old", "frozen",
           "blacklisted")
ACCEPTED = ("always_confirms", "never_confirms", "declines", "insufficient_balance",
            "pays_after_3_days", "malicious", "thin_file")


def test_every_magic_user_is_either_refused_or_accepted():
    assert set(REFUSED) | set(ACCEPTED) == set(MAGIC)


@pytest.mark.parametrize("name", REFUSED)
def test_ineligible_and_restricted_magic_users_are_refused_at_create(client, sandbox, name):
    freeze(sandbox)
    answer = create(client, f"R_{name}", openid=MAGIC[name])
    assert refused(answer, RISK), answer.json
    assert answer.json == {"code": "INVALID_REQUEST", "message": "综合评估未通过"}
    assert count(sandbox, db.orders) == 0  # nothing was created


@pytest.mark.parametrize("name", ACCEPTED)
def test_eligible_magic_users_get_their_order(client, sandbox, name):
    freeze(sandbox)
    answer = create(client, f"A_{name}", openid=MAGIC[name])
    assert answer.status_code == 200, answer.json
    assert answer.json["state"] == "CREATED"


def test_no_score_threshold_a_thin_file_user_with_a_low_score_is_accepted(client, sandbox):
    freeze(sandbox)
    assert user(client, MAGIC["thin_file"])["score"] < 500
    assert create(client, "THIN", openid=MAGIC["thin_file"]).status_code == 200


def test_need_confirm_orders_without_openid_are_not_assessed_at_create(client, sandbox):
    freeze(sandbox)
    body = client.create_body("NO_OPENID", notify_url="http://127.0.0.1:9/n")
    assert client.post("/v3/payscore/serviceorder", body).status_code == 200


def test_a_pending_overdue_order_blocks_new_orders_until_it_is_paid(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["insufficient_balance"]
    completed_order(client, sandbox, "OWED", openid, 2000)
    sandbox.advance(DAY - 1)
    assert create(client, "NEXT0", openid=openid).status_code == 200  # not overdue yet
    sandbox.advance(1)  # day 1: the default is recorded
    answer = create(client, "NEXT1", openid=openid)
    assert refused(answer, OVERDUE), answer.json
    assert answer.json["message"] == "存在待处理的超时未支付订单"
    assert user(client, openid)["pending_overdue_order"]["out_order_no"] == "OWED"
    act(client, openid, "pay", "OWED")  # the user tops up and pays in the mini-program
    assert state(client, "OWED") == "DONE/USER_PAID"
    assert create(client, "NEXT2", openid=openid).status_code == 200


def test_service_availability_for_permissions_and_user_service_state(client, sandbox):
    from sandbox import errors
    from sandbox.world import reactions, users

    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    act(client, openid, "default", amount=100)
    act(client, openid, "default", amount=100)  # LIMITED: high-value orders only
    now = sandbox.clock.now_us()
    with db.read_tx(sandbox.engine) as conn:
        for name in REFUSED:
            assert not users.can_use_service(conn, MAGIC[name], now), name
            with pytest.raises(errors.InvalidRequest) as refusal:
                reactions.check_can_open_service(conn, MAGIC[name], now)
            assert refusal.value.internal_code == RISK
        for name in ACCEPTED:
            assert users.can_use_service(conn, MAGIC[name], now), name
            reactions.check_can_open_service(conn, MAGIC[name], now)
        # an unseeded openid is assessed as its ad-hoc user, without writing anything
        assert users.can_use_service(conn, "oNotSeenBefore", now)
        assert users.find_user(conn, "oNotSeenBefore") is None
