"""Users in a running sandbox: first-start population, any openid, seeding, the CLI."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import select
from test_world_support import count, create, freeze, user

from sandbox import db
from sandbox.testing import make_sandbox
from sandbox.world import population, rules, users

MAGIC = population.MAGIC_OPENIDS


def test_first_start_seeds_the_default_population_and_magic_users_once(app, sandbox):
    assert count(sandbox, db.users, db.users.c.seed_batch == users.DEFAULT_BATCH) == 200
    assert count(sandbox, db.users, db.users.c.magic.is_not(None)) == len(MAGIC)
    # the daily refresh is scheduled at the next 03:00 China Standard Time
    with sandbox.engine.connect() as conn:
        due = conn.execute(select(db.jobs.c.due_us).where(
            db.jobs.c.kind == "score_refresh", db.jobs.c.done.is_(False))).scalars().all()
    assert due == [rules.next_refresh_us(sandbox.clock.now_us())]
    # a second start over the same database adds nothing
    again = make_sandbox(sandbox.data_dir.parent)
    sb2 = again.extensions["payscore"]
    assert count(sb2, db.users) == 200 + len(MAGIC)
    assert count(sb2, db.jobs, db.jobs.c.kind == "score_refresh") == 1
    sb2.engine.dispose()


def test_default_population_is_the_first_users_of_seed_42(sandbox):
    expected = population.generate_users(3, 42)
    with sandbox.engine.connect() as conn:
        for row in expected:
            stored = users.find_user(conn, row["openid"])
            assert stored is not None and stored.score == row["score"]
            assert stored.balance_behaviour == row["balance_behaviour"]


def test_an_unknown_openid_becomes_a_deterministic_eligible_user(client, sandbox, tmp_path):
    openid = "oMerchantOwnTestUser_0001"
    profile = user(client, openid)
    assert profile["eligible"] is True and profile["risk_tier"] == "NORMAL"
    assert profile["seed_batch"] == users.ADHOC_BATCH
    # the same openid is the same user in another sandbox
    other = make_sandbox(tmp_path / "other")
    other_profile = other.test_client().get(f"/sandbox/users/{openid}").json
    for key in ("score", "age", "balance_behaviour", "confirm_behaviour", "confirm_delay_s",
                "client_version", "on_time_orders"):
        assert other_profile[key] == profile[key], key
    other.extensions["payscore"].engine.dispose()
    # and a merchant can use any openid at once
    freeze(sandbox)
    assert create(client, "ANY1", openid="oAnotherOpenidNobodySeeded").status_code == 200
    assert users.adhoc_user("x1") != users.adhoc_user("x2")


def test_adhoc_users_are_always_eligible_but_otherwise_follow_the_population():
    drawn = [users.adhoc_user(f"oAdhoc{i}") for i in range(400)]
    assert all(rules.eligibility(u)[0] for u in drawn)
    behaviours = {u["balance_behaviour"] for u in drawn}
    assert "pays" in behaviours and len(behaviours) >= 2  # not one canned user


def test_seed_endpoint_is_reproducible_and_keeps_existing_users(client, sandbox):
    http = client.app.test_client()
    first = http.post("/sandbox/users/seed", json={"count": 300, "seed": 7})
    assert first.status_code == 200
    assert first.json["inserted"] == 300
    assert first.json["first_openid"] == population.make_openid(7, 0)
    again = http.post("/sandbox/users/seed", json={"count": 350, "seed": 7})
    assert again.json["inserted"] == 50  # only the new tail
    assert again.json["total_users"] == 200 + len(MAGIC) + 350
    for bad in ({"count": -1}, {"count": "10"}, {"seed": 1}, {"count": 1, "x": 1}, [1]):
        answer = http.post("/sandbox/users/seed", json=bad)
        assert answer.status_code == 400 and answer.json["code"] == "PARAM_ERROR", bad
    answer = http.post("/sandbox/users/seed", data=b"{not json",
                       headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and answer.json["code"] == "PARAM_ERROR"


def test_user_profile_shows_eligibility_with_reason(client):
    for name, reason in (("under_18", rules.UNDER_18), ("over_65", rules.OVER_65),
                         ("not_real_name", rules.NOT_REAL_NAME),
                         ("no_bank_card", rules.NO_BANK_CARD_OR_FACE),
                         ("client_too_old", rules.CLIENT_TOO_OLD)):
        profile = user(client, MAGIC[name])
        assert (profile["eligible"], profile["reason"]) == (False, reason), name
        assert profile["reason_text"] == rules.REASON_TEXT[reason]
    assert user(client, MAGIC["frozen"])["risk_tier"] == rules.FROZEN
    assert user(client, MAGIC["blacklisted"])["risk_tier"] == rules.BLACKLISTED
    assert user(client, MAGIC["always_confirms"])["risk_tier"] == rules.NORMAL


def test_control_api_rejects_bad_input_with_wechat_errors(client):
    http = client.app.test_client()
    long_openid = "o" * 129
    assert http.get(f"/sandbox/users/{long_openid}").json["code"] == "PARAM_ERROR"
    for body in ({"action": "dance"}, {}, {"action": "confirm"},
                 {"action": "default"}, {"action": "pay", "mchid": "1"},
                 {"action": "fail_next_deduction", "count": 0}):
        answer = http.post(f"/sandbox/users/{MAGIC['always_confirms']}/act", json=body)
        assert answer.status_code == 400 and answer.json["code"] == "PARAM_ERROR", body
    answer = http.post(f"/sandbox/users/{MAGIC['always_confirms']}/act",
                       json={"action": "confirm", "mchid": "1900000000", "out_order_no": "NOPE"})
    assert answer.status_code == 404 and answer.json["code"] == "ORDER_NOT_EXIST"
    assert http.get("/sandbox/orders/1900000000/NOPE/timeline").status_code == 404
    assert http.get("/sandbox/jobs?due_before=soon").json["code"] == "PARAM_ERROR"
    assert http.get("/sandbox/jobs?limit=0").status_code == 400


def test_cli_seeds_shows_users_and_moves_the_clock(tmp_path):
    from sandbox.cli import _register_plugins, cli

    _register_plugins()
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "d")]
    seeded = runner.invoke(cli, ["users", "seed", "--count", "1000", "--seed", "5", *data])
    assert seeded.exit_code == 0, seeded.output
    assert "seeded 1000 new users" in seeded.output
    shown = runner.invoke(cli, ["users", "show", MAGIC["under_18"], "--json", *data])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["reason"] == rules.UNDER_18
    assert runner.invoke(cli, ["clock", "freeze", *data]).exit_code == 0
    before = runner.invoke(cli, ["clock", "show", *data]).output
    advanced = runner.invoke(cli, ["clock", "advance", "3d", *data])
    assert advanced.exit_code == 0, advanced.output
    assert "3 jobs ran" in advanced.output  # one 03:00 score refresh per day
    after = runner.invoke(cli, ["clock", "show", *data]).output
    assert before != after and "frozen" in after
    bad = runner.invoke(cli, ["clock", "advance", "soon", *data])
    assert bad.exit_code == 2 and "not a duration" in bad.output
    assert "running" in runner.invoke(cli, ["clock", "reset", *data]).output
