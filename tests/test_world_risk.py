"""Overdue escalation (day 1/3/7) on the timeline, and the three risk tiers."""

from __future__ import annotations

from test_world_support import (
    DAY,
    T0,
    act,
    completed_order,
    count,
    create,
    cst_us,
    events_of,
    freeze,
    kinds,
    refused,
    state,
    timeline,
    user,
    user_row,
)

from sandbox import db
from sandbox.world import population, rules

MAGIC = population.MAGIC_OPENIDS
RISK = rules.INTERNAL_CODES[rules.MSG_RISK_REJECTED]
OVERDUE = rules.INTERNAL_CODES[rules.MSG_OVERDUE_PENDING]


def _overdue(client, out_order_no):
    return [(e["kind"], e["at_us"]) for e in events_of_prefix(client, out_order_no, "overdue_")]


def events_of_prefix(client, out_order_no, prefix):
    return [e for e in timeline(client, out_order_no)["events"] if e["kind"].startswith(prefix)]


def test_overdue_escalation_day_1_3_7_in_order_on_the_timeline(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["insufficient_balance"]
    completed_order(client, sandbox, "O1", openid, 2500)
    sandbox.advance(DAY - 1)
    assert _overdue(client, "O1") == []
    sandbox.advance(7 * DAY)
    assert _overdue(client, "O1") == [("overdue_notice", T0 + DAY),
                                      ("overdue_negotiation", T0 + 3 * DAY),
                                      ("overdue_legal", T0 + 7 * DAY)]
    notice = events_of(client, "O1", "overdue_notice")[0]["detail"]
    assert notice["stage"] == "NOTICE" and notice["unpaid"] == 2500
    assert notice["default_recorded"] is True
    assert events_of(client, "O1", "overdue_legal")[0]["detail"]["description"] == "第七日启动法律程序"
    # the timeline interleaves the stages with WeChat's continuing attempts, in time order
    times = [e["at_us"] for e in events_of_prefix(client, "O1", "")]
    assert times == sorted(times)
    assert kinds(client, "O1").count("deduction_failed") >= 8
    # one default for the order, on day 1
    row = user_row(sandbox, openid)
    assert (row.defaults_total, row.overdue_fen) == (1, 2500)
    assert count(sandbox, db.user_defaults, db.user_defaults.c.at_us == T0 + DAY) == 1


def test_paying_between_stages_stops_the_escalation(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["insufficient_balance"]
    completed_order(client, sandbox, "O2", openid, 900)
    sandbox.advance(4 * DAY)
    act(client, openid, "pay", "O2")
    sandbox.advance(10 * DAY)
    assert [k for k, _ in _overdue(client, "O2")] == ["overdue_notice", "overdue_negotiation"]
    assert state(client, "O2") == "DONE/USER_PAID"
    assert user_row(sandbox, openid).overdue_fen == 0


def test_two_defaults_in_a_calendar_month_limit_high_value_orders(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    act(client, openid, "default", amount=100)
    assert create(client, "H0", openid=openid, amount=rules.HIGH_VALUE_LIMIT_FEN + 1) \
        .status_code == 200  # one default: still NORMAL
    act(client, openid, "default", amount=100)
    assert user(client, openid)["risk_tier"] == rules.LIMITED
    high = create(client, "H1", openid=openid, amount=rules.HIGH_VALUE_LIMIT_FEN + 1)
    assert refused(high, RISK), high.json
    assert create(client, "L1", openid=openid, amount=rules.HIGH_VALUE_LIMIT_FEN) \
        .status_code == 200  # 299.00 yuan is not high-value
    # a new calendar month (China Standard Time) lifts the limit
    sandbox.advance(cst_us(2025, 4, 1, 0, 0) - T0 - 1)
    assert user(client, openid)["risk_tier"] == rules.LIMITED
    sandbox.advance(1)
    assert user(client, openid)["risk_tier"] == rules.NORMAL
    assert create(client, "H2", openid=openid, amount=rules.HIGH_VALUE_LIMIT_FEN + 1) \
        .status_code == 200


def test_more_than_500_yuan_overdue_freezes_for_30_days(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["insufficient_balance"]
    completed_order(client, sandbox, "BIG", openid, 50001)
    sandbox.advance(DAY)
    profile = user(client, openid)
    assert profile["risk_tier"] == rules.FROZEN
    assert profile["frozen_until_us"] == T0 + DAY + 30 * DAY
    answer = create(client, "B1", openid=openid)
    assert refused(answer, OVERDUE), answer.json  # frozen because of unpaid overdue money
    act(client, openid, "pay", "BIG")
    answer = create(client, "B2", openid=openid)
    assert refused(answer, RISK), answer.json  # paid, but the freeze lasts its 30 days
    sandbox.advance(30 * DAY - 1)
    assert refused(create(client, "B3", openid=openid), RISK)
    sandbox.advance(1)
    assert user(client, openid)["risk_tier"] == rules.NORMAL
    assert create(client, "B4", openid=openid).status_code == 200


def test_exactly_500_yuan_overdue_does_not_freeze(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["insufficient_balance"]
    completed_order(client, sandbox, "EDGE", openid, 50000)
    sandbox.advance(DAY)
    assert user_row(sandbox, openid).frozen_until_us is None
    assert user(client, openid)["risk_tier"] == rules.NORMAL


def test_malicious_evasion_blacklists_at_the_legal_stage(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["malicious"]
    completed_order(client, sandbox, "M1", openid, 1000)
    sandbox.advance(7 * DAY - 1)
    assert user(client, openid)["risk_tier"] != rules.BLACKLISTED
    sandbox.advance(1)
    assert events_of(client, "M1", "overdue_legal")[0]["detail"]["blacklisted"] is True
    assert user(client, openid)["risk_tier"] == rules.BLACKLISTED
    act(client, openid, "pay", "M1")  # paying later does not lift a blacklist
    answer = create(client, "M2", openid=openid)
    assert refused(answer, RISK), answer.json


def test_flag_malicious_blacklists_at_once(client, sandbox):
    freeze(sandbox)
    openid = "oFlaggedByOperations"
    assert create(client, "F0", openid=openid).status_code == 200
    profile = act(client, openid, "flag_malicious")["user"]
    assert profile["blacklisted"] is True and profile["malicious"] is True
    assert profile["risk_tier"] == rules.BLACKLISTED
    assert refused(create(client, "F1", openid=openid), RISK)
