"""Scores move: the 03:00 daily refresh, major events within 2 hours, the weights, history."""

from __future__ import annotations

from sqlalchemy import select, update
from test_world_support import (
    HOUR,
    SECOND,
    T0,
    act,
    completed_order,
    control,
    count,
    cst_us,
    freeze,
    user,
    user_row,
)

from sandbox import db
from sandbox.world import behaviour, population, rules

MAGIC = population.MAGIC_OPENIDS
NEXT_3AM = cst_us(2025, 3, 6, 3, 0)


def _set(sandbox, openid, **values):
    with db.write_tx(sandbox.engine) as conn:
        conn.execute(update(db.users).where(db.users.c.openid == openid).values(**values))


def test_an_on_time_payment_shows_at_the_next_0300_refresh_as_2_points(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    before = user(client, openid)["score"]
    completed_order(client, sandbox, "S1", openid, 1000)
    sandbox.advance(0)
    assert user_row(sandbox, openid).on_time_orders == 81
    assert user(client, openid)["score"] == before  # not before the refresh
    sandbox.advance(NEXT_3AM - T0 - SECOND)
    assert user(client, openid)["score"] == before
    sandbox.advance(SECOND)
    profile = user(client, openid)
    assert profile["score"] == before + rules.POINTS_PER_ON_TIME_ORDER
    assert profile["score_history"] == [{"at": "2025-03-06T03:00:00+08:00", "at_us": NEXT_3AM,
                                         "score": before + 2, "reason": "daily_refresh"}]
    # nobody else changed, so the refresh wrote exactly one history row
    assert count(sandbox, db.score_history) == 1


def test_the_refresh_runs_every_day_at_0300_cst(client, sandbox):
    freeze(sandbox)
    sandbox.advance(3 * 24 * HOUR)
    with sandbox.engine.connect() as conn:
        rows = list(conn.execute(select(db.jobs.c.due_us, db.jobs.c.done).where(
            db.jobs.c.kind == "score_refresh").order_by(db.jobs.c.due_us)))
    due = [r.due_us for r in rows]
    assert due[-4:] == [NEXT_3AM + d * 24 * HOUR for d in range(4)]
    assert [r.done for r in rows][-4:] == [True, True, True, False]


def test_on_time_points_stop_at_the_40_percent_cap(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    _set(sandbox, openid, on_time_orders=rules.ON_TIME_CAP)
    sandbox.advance(NEXT_3AM - T0)  # the refresh takes the new input
    capped = user(client, openid)["score"]
    completed_order(client, sandbox, "CAP", openid, 1000)
    sandbox.advance(24 * HOUR)
    assert user_row(sandbox, openid).on_time_orders == rules.ON_TIME_CAP + 1
    assert user(client, openid)["score"] == capped  # 110 orders already fill the dimension


def test_a_complaint_is_re_evaluated_within_2_hours(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    before = user(client, openid)
    act(client, openid, "complain")
    social = before["social"] - behaviour.COMPLAINT_SOCIAL_PENALTY
    assert abs(user_row(sandbox, openid).social - social) < 1e-9
    sandbox.advance(rules.MAJOR_EVENT_DELAY_US - 1)
    assert user(client, openid)["score"] == before["score"]
    sandbox.advance(1)
    after = user(client, openid)
    expected = rules.compute_score({**before, "social": social})
    assert after["score"] == expected < before["score"]
    assert after["score_history"][-1]["reason"] == "complaint"
    assert after["score_history"][-1]["at_us"] == T0 + rules.MAJOR_EVENT_DELAY_US
    assert rules.MAJOR_EVENT_DELAY_US <= 2 * HOUR


def test_a_default_is_re_evaluated_within_2_hours_with_its_penalty(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    before = user(client, openid)["score"]
    act(client, openid, "default", amount=5000)
    sandbox.advance(2 * HOUR)
    after = user(client, openid)
    # 25 points per default plus one point per 10 yuan still overdue
    assert after["score"] == before - rules.DEFAULT_PENALTY - 5
    assert [h["reason"] for h in after["score_history"]] == ["default"]


def test_the_world_score_is_the_weighted_model_of_the_users_inputs(client, sandbox):
    freeze(sandbox)
    openid = MAGIC["always_confirms"]
    _set(sandbox, openid, payment_activity=30, on_time_orders=110, social=1.0, assets=1.0)
    sandbox.advance(NEXT_3AM - T0)
    assert user(client, openid)["score"] == rules.SCORE_MAX  # all four weights full: 850
    _set(sandbox, openid, payment_activity=0, on_time_orders=0, social=0.0, assets=0.0)
    sandbox.advance(24 * HOUR)
    assert user(client, openid)["score"] == rules.SCORE_MIN
    _set(sandbox, openid, payment_activity=30)
    sandbox.advance(24 * HOUR)
    # payment behaviour alone is 35 % of the 550 points above the floor: 192.5 -> 493
    history = user(client, openid)["score_history"]
    assert [h["score"] for h in history] == [850, 300, 493]


def test_the_refresh_of_a_seeded_population_writes_only_changed_scores(client, sandbox):
    freeze(sandbox)
    answer = control(client).post("/sandbox/users/seed", json={"count": 3000, "seed": 9})
    assert answer.json["inserted"] == 3000
    changed = [population.make_openid(9, i) for i in (0, 10, 20)]
    with db.write_tx(sandbox.engine) as conn:
        conn.execute(update(db.users).where(db.users.c.openid.in_(changed))
                     .values(on_time_orders=0, payment_activity=0))
    sandbox.advance(NEXT_3AM - T0)
    assert count(sandbox, db.score_history) == 3
    assert count(sandbox, db.score_history, db.score_history.c.openid.in_(changed)) == 3
