"""The gray release: policies, the model's funnel and sweep, and live mode on a small sample."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from loadtests import gray, judge
from loadtests.gray_live import expected_states, run_live
from loadtests.policy import PolicyError, example_policies, load_policy, parse_policy
from sandbox.world import population, rules

DEFAULT = Path(__file__).parents[1] / "loadtests" / "policies" / "default.yaml"


def test_example_policies_load():
    names = {p.stem: load_policy(p) for p in example_policies()}
    assert {"default", "conservative", "power_bank"} <= set(names)
    default = names["default"]
    assert [(p.id, p.min_score) for p in default.products] == [
        ("power_bank", 550), ("weekly_card", 600), ("hotel_stay", 650)]
    assert sum(p.share for p in default.products) == pytest.approx(1.0)


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "x", "products": []}, "products"),
    ({"name": "x", "products": [{"id": "a", "min_score": 900, "risk_fund": 1,
                                 "amount": [0, 1]}]}, "min_score"),
    ({"name": "x", "products": [{"id": "a", "min_score": 600, "risk_fund": 100,
                                 "amount": [50, 500]}]}, "risk_fund"),
    ({"name": "x", "products": [{"id": "a", "min_score": 600, "risk_fund": 100,
                                 "amount": [90, 50]}]}, "min <= max"),
    ({"name": "x", "typo": 1, "products": [{"id": "a", "min_score": 600, "risk_fund": 100,
                                            "amount": [1, 50]}]}, "typo"),
])
def test_bad_policies_name_the_problem(data, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(data)


def test_unreadable_policy_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(PolicyError, match="YAML"):
        load_policy(bad)


@pytest.fixture(scope="module")
def sample():
    return population.generate_users(3000, 11)


def test_model_funnel_is_deterministic_and_monotone(sample):
    policy = load_policy(DEFAULT)
    a = gray.summarise(policy, gray.assign(sample, policy, 11), 11, "population", {})
    b = gray.summarise(policy, gray.assign(sample, policy, 11), 11, "population", {})
    assert a["funnel"] == b["funnel"]
    counts = [row["count"] for row in a["funnel"]]
    assert counts[0] == 3000 and counts == sorted(counts, reverse=True)
    assert a["conversion"]["observed"] == pytest.approx(counts[-1] / 3000)
    assert a["conversion"]["sample"] == 3000 and a["conversion"]["verdict"] == "pass"
    assert sum(a["ineligible"].values()) + sum(a["frozen_by_risk_tier"].values()) \
        == 3000 - a["funnel"][1]["count"]
    per = {row["product"]: row for row in a["products"]}
    assert sum(row["paid"] for row in per.values()) == counts[-1]


def test_model_follows_the_sandbox_rules(sample):
    policy = load_policy(DEFAULT)
    assignments = gray.assign(sample, policy, 11)
    by_openid = {u["openid"]: u for u in sample}
    for a in assignments[:500]:
        user = by_openid[a.openid]
        assert a.eligible == (rules.refusal(user, 0, a.risk_fund, 0) is None)
        product = next(p for p in policy.products if p.id == a.product)
        assert product.amount_min <= a.amount <= product.amount_max


def test_frozen_users_are_counted_by_tier(sample):
    policy = load_policy(DEFAULT)
    users = [dict(u) for u in sample[:200]]
    for user in users[:10]:
        user["blacklisted"] = True
    for user in users[10:15]:
        user["frozen_until_us"] = 10**18
    result = gray.funnel(gray.assign(users, policy, 1), {p.id: p.min_score
                                                         for p in policy.products})
    eligible_blacklisted = sum(rules.eligibility(u)[0] for u in users[:10])
    assert result.frozen[rules.BLACKLISTED] == eligible_blacklisted
    assert result.frozen[rules.FROZEN] == sum(rules.eligibility(u)[0] for u in users[10:15])


def test_sweep_matches_the_funnel_at_a_uniform_threshold(sample):
    policy = load_policy(DEFAULT).with_threshold(600)
    assignments = gray.assign(sample, policy, 11)
    f = gray.funnel(assignments, {p.id: 600 for p in policy.products})
    point = next(p for p in gray.sweep(assignments) if p["threshold"] == 600)
    assert (point["completed"], point["paid"]) == (f.counts["completed"], f.counts["paid"])
    assert point["default_rate"] == pytest.approx(f.default_rate)
    conversions = [p["conversion"] for p in gray.sweep(assignments)]
    assert conversions == sorted(conversions, reverse=True)  # stricter never converts more
    best = gray.highest_passing_threshold(gray.sweep(assignments))
    assert best is not None
    assert all(p["conversion_lower"] < 0.15 for p in gray.sweep(assignments)
               if p["threshold"] > best)


def test_model_reads_a_sandbox_database(tmp_path):
    from sandbox import db
    from sandbox.testing import make_sandbox

    app = make_sandbox(tmp_path)
    sb = app.extensions["payscore"]
    with db.write_tx(sb.engine) as conn:
        population.seed_users(conn, 400, 5, sb.clock.now_us(conn))
    url = app.config["DATABASE_URL"]
    result = gray.run_model(load_policy(DEFAULT), 300, 5, db_url=url)
    assert result["source"] == "database" and result["funnel"][0]["count"] == 300
    with sb.engine.connect() as conn:
        stored = conn.execute(db.users.select().where(db.users.c.magic.is_(None))).all()
    users, defaults, now_us = gray.load_db_users(url, 10_000, 5)
    assert len(users) == len(stored) >= 400 and defaults == {} and now_us > 0
    assert not any(u["magic"] for u in users)  # the documented magic users are left out
    seeded = {u["openid"] for u in population.generate_users(400, 5)}
    assert seeded <= {u["openid"] for u in users}


def test_cli_model_mode_writes_the_report(tmp_path):
    from sandbox.cli import _register_plugins, cli

    _register_plugins()
    result = CliRunner().invoke(cli, ["gray", "--users", "2000", "--seed", "3", "--policy",
                                      str(DEFAULT), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "gray.json").read_text())
    assert data["conversion"]["verdict"] == "pass" and data["funnel"][0]["count"] == 2000
    page = (tmp_path / "gray.html").read_text()
    assert page.count("<svg") == 2 and "http" not in page.split("<body>")[1].split("xmlns")[0]
    assert "users who completed a paid order / sampled users" in result.output


def test_strict_policy_fails_the_conversion_gate(tmp_path):
    from sandbox.cli import _register_plugins, cli

    strict = tmp_path / "strict.yaml"
    strict.write_text("name: strict\nproducts:\n  - {id: pb, min_score: 760, risk_fund: 9900, "
                      "amount: [100, 900]}\n")
    _register_plugins()
    result = CliRunner().invoke(cli, ["gray", "--users", "3000", "--policy", str(strict),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert json.loads((tmp_path / "out" / "gray.json").read_text())["conversion"]["verdict"] \
        == "fail"


def test_expected_states_follow_the_profile():
    a = gray.Assignment("o", 700, "pb", 9900, 500, None, "confirms", "late", 3)
    assert expected_states(a) == (judge.AWAITING_PAYMENT,)
    assert expected_states(a, settle_days=3) == (judge.PAID,)
    assert expected_states(replace(a, balance="pays")) == (judge.PAID,)
    assert expected_states(replace(a, refusal="UNDER_18")) == (judge.DEPOSIT_FALLBACK,)
    assert expected_states(replace(a, confirm="ignores")) == (judge.CANCELLED,)
    assert expected_states(replace(a, confirm="declines")) == (judge.CANCELLED,)


def test_live_mode_on_a_small_sample(merchant_world):
    policy = load_policy(DEFAULT.with_name("power_bank.yaml"))
    result = run_live(policy, 60, 2024, driver_url=merchant_world["driver"],
                      sandbox_url=merchant_world["sandbox"],
                      merchant_json=merchant_world["merchant_json"], concurrency=8)
    flows = result["flows"]
    assert flows["flows"] > 30 and flows["failed"] == 0, flows["examples"]
    assert result["seeded"]["inserted"] == 60
    funnel = {row["stage"]: row["count"] for row in result["funnel"]}
    assert funnel["sampled"] == 60 and funnel["paid"] == result["conversion"]["successes_or_"
                                                                           "failures"]
    model = {row["stage"]: row["count"] for row in result["model"]["funnel"]}
    # Live outcomes are what the model predicts, except late payers who still owe at the end.
    assert [funnel[k] for k in ("eligible", "offered", "confirmed", "completed")] == \
        [model[k] for k in ("eligible", "offered", "confirmed", "completed")]
    assignments = gray.assign(population.generate_users(60, 2024), policy, 2024)
    late = sum(1 for a in assignments if a.offered(550) and a.confirmed and a.balance == "late")
    assert funnel["paid"] == model["paid"] - late
    assert funnel["paid"] + result["defaulted"] == funnel["completed"]
    assert result["throughput_users_per_s"] > 0
