"""The seeded user population and the magic users (sandbox.world.population)."""

from __future__ import annotations

import re
import statistics
from collections import Counter

import pytest
from sqlalchemy import func, select, update

from sandbox import db
from sandbox.world import population, rules

NOW = 1_710_000_000_000_000
OPENID = re.compile(r"^o[A-Za-z0-9_-]{27}$")
COLUMNS = set(db.users.c.keys())


@pytest.fixture(scope="module")
def crowd() -> list[dict]:
    return population.generate_users(20_000, seed=1)


@pytest.fixture
def engine(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'world.db'}")
    db.init_db(engine)
    yield engine
    engine.dispose()


def count_users(engine, *where) -> int:
    with db.read_tx(engine) as conn:
        return conn.execute(select(func.count()).select_from(db.users).where(*where)).scalar_one()


# --- generation ----------------------------------------------------------------------------

def test_rows_have_exactly_the_users_columns():
    rows = population.generate_users(5, seed=3, batch="b1")
    assert all(set(row) == COLUMNS for row in rows)
    assert all(set(row) == COLUMNS for row in population.magic_users(NOW))
    assert {row["seed_batch"] for row in rows} == {"b1"}


def test_same_seed_same_users_and_prefix_stable():
    assert population.generate_users(300, seed=42) == population.generate_users(300, seed=42)
    # A larger count only appends: re-seeding with more users keeps the first ones identical.
    assert population.generate_users(300, seed=42)[:100] == population.generate_users(100, 42)


def test_different_seeds_give_disjoint_openids():
    first = population.generate_users(2000, seed=1)
    second = population.generate_users(2000, seed=2)
    ids_1, ids_2 = {u["openid"] for u in first}, {u["openid"] for u in second}
    assert len(ids_1) == len(ids_2) == 2000
    assert not ids_1 & ids_2
    assert [u["score"] for u in first[:50]] != [u["score"] for u in second[:50]]


def test_openids_look_real():
    for row in population.generate_users(500, seed=9):
        assert OPENID.match(row["openid"]), row["openid"]
        assert not row["openid"].startswith(population.MAGIC_PREFIX)
    assert population.make_openid(9, 0) == population.generate_users(1, seed=9)[0]["openid"]


def test_scores_are_the_rules_model_applied_to_the_inputs(crowd):
    assert all(rules.compute_score(u) == u["score"] for u in crowd)


def test_generated_users_start_without_risk_state(crowd):
    assert all(u["frozen_until_us"] is None and not u["blacklisted"] for u in crowd)
    assert all(u["magic"] is None and u["fail_next_deductions"] == 0 for u in crowd)
    assert all(0 <= u["overdue_fen"] <= rules.FREEZE_OVERDUE_THRESHOLD_FEN for u in crowd)
    assert all(u["overdue_fen"] == 0 or u["defaults_total"] > 0 for u in crowd)


def test_behaviour_fields_are_consistent(crowd):
    assert {u["balance_behaviour"] for u in crowd} == {"pays", "late", "cannot"}
    assert {u["confirm_behaviour"] for u in crowd} == {"confirms", "declines", "ignores"}
    assert all((u["pay_delay_days"] > 0) == (u["balance_behaviour"] == "late") for u in crowd)
    assert all(2 <= u["confirm_delay_s"] <= 600 for u in crowd)
    assert all(u["balance_behaviour"] == "cannot" for u in crowd if u["malicious"])
    assert all(not u["bank_card"] and not u["face_verified"] for u in crowd if not u["real_name"])


# --- distribution --------------------------------------------------------------------------

def test_score_distribution_matches_the_documented_one(crowd):
    scores = [u["score"] for u in crowd]
    assert statistics.mean(scores) == pytest.approx(641, abs=8)
    assert statistics.pstdev(scores) == pytest.approx(73, abs=8)
    assert 300 <= min(scores) and max(scores) <= 850
    in_band = sum(550 <= s <= 700 for s in scores) / len(scores)
    assert 0.65 <= in_band <= 0.80  # "most active users sit 550-700"
    low_tail = sum(s < 450 for s in scores) / len(scores)
    assert 0.01 <= low_tail <= 0.06  # the thin-file tail exists but stays small
    for figure in ("641", "73", "550-700"):
        assert figure in population.SCORE_DISTRIBUTION_DOC


def test_behaviour_correlates_with_score(crowd):
    def shares(group: list[dict]) -> tuple[float, float, float]:
        balance = Counter(u["balance_behaviour"] for u in group)
        confirms = sum(u["confirm_behaviour"] == "confirms" for u in group) / len(group)
        return balance["pays"] / len(group), balance["cannot"] / len(group), confirms

    high = shares([u for u in crowd if u["score"] >= 650])
    low = shares([u for u in crowd if u["score"] < 550])
    assert high[0] > low[0] + 0.15  # more payers at the top
    assert high[1] < low[1] / 5  # far fewer who cannot pay
    assert high[2] > low[2]  # confirm more often
    overall_confirm = shares(crowd)[2]
    assert 0.70 <= overall_confirm <= 0.85


def test_ineligible_shares_are_realistic(crowd):
    reasons = Counter(rules.eligibility(u)[1] for u in crowd)
    share = {reason: n / len(crowd) for reason, n in reasons.items()}
    assert 0.01 <= share["NOT_REAL_NAME"] <= 0.03
    assert 0.02 <= share["NO_BANK_CARD_OR_FACE"] <= 0.04
    assert 0.02 <= share["CLIENT_TOO_OLD"] <= 0.04
    ages = [u["age"] for u in crowd]
    assert min(ages) == 16 and max(ages) == 75
    outside = sum(not 18 <= a <= 65 for a in ages) / len(ages)
    assert 0.03 <= outside <= 0.05


# --- magic users ---------------------------------------------------------------------------

def magic(name: str) -> dict:
    return next(u for u in population.magic_users(NOW) if u["magic"] == name)


def test_magic_openids_are_readable_constants():
    rows = population.magic_users(NOW)
    assert [u["magic"] for u in rows] == list(population.MAGIC_USERS)
    for row in rows:
        assert row["openid"] == "o_magic_" + row["magic"]
        assert population.MAGIC_OPENIDS[row["magic"]] == row["openid"]
        assert f"`{row['openid']}`" in population.MAGIC_USERS_DOC
        assert row["score"] == rules.compute_score(row)
    required = {"always_confirms", "never_confirms", "declines", "insufficient_balance",
                "pays_after_3_days", "frozen", "blacklisted", "under_18", "over_65",
                "not_real_name", "client_too_old"}
    assert required <= set(population.MAGIC_USERS)


def test_magic_behaviours():
    assert (magic("always_confirms")["confirm_behaviour"],
            magic("always_confirms")["balance_behaviour"]) == ("confirms", "pays")
    assert magic("never_confirms")["confirm_behaviour"] == "ignores"
    assert magic("declines")["confirm_behaviour"] == "declines"
    assert magic("insufficient_balance")["balance_behaviour"] == "cannot"
    late = magic("pays_after_3_days")
    assert (late["balance_behaviour"], late["pay_delay_days"]) == ("late", 3)
    assert magic("malicious")["malicious"] is True


@pytest.mark.parametrize(("name", "reason"), [
    ("under_18", "UNDER_18"), ("over_65", "OVER_65"), ("not_real_name", "NOT_REAL_NAME"),
    ("no_bank_card", "NO_BANK_CARD_OR_FACE"), ("client_too_old", "CLIENT_TOO_OLD"),
    ("always_confirms", None), ("thin_file", None),
])
def test_magic_eligibility(name, reason):
    assert rules.eligibility(magic(name)) == (reason is None, reason)


def test_magic_risk_states():
    frozen = magic("frozen")
    assert rules.risk_tier(frozen, 0, NOW) == "FROZEN"
    assert rules.risk_tier(frozen, 0, NOW + 5 * 365 * rules.DAY_US) == "FROZEN"
    assert rules.risk_tier(magic("blacklisted"), 0, NOW) == "BLACKLISTED"
    assert rules.risk_tier(magic("always_confirms"), 0, NOW) == "NORMAL"
    thin = magic("thin_file")
    assert thin["score"] < 450
    assert rules.create_refusal(thin, 0, 29900, NOW) is None  # no score threshold


# --- seeding -------------------------------------------------------------------------------

def test_seed_inserts_users_and_magic_users(engine):
    with db.write_tx(engine) as conn:
        assert population.seed_users(conn, 1000, seed=5, now_us=NOW) == 1000
    assert count_users(engine, db.users.c.seed_batch == "seed-5") == 1000
    assert count_users(engine, db.users.c.magic.isnot(None)) == len(population.MAGIC_USERS)
    expected = population.generate_users(1000, seed=5, batch="seed-5")
    with db.read_tx(engine) as conn:
        stored = conn.execute(select(db.users).where(db.users.c.openid == expected[10]["openid"]))
        assert dict(stored.one()._mapping) == expected[10]
        # History starts with the first refresh, not at seed time.
        assert conn.execute(select(func.count()).select_from(db.score_history)).scalar_one() == 0


def test_reseeding_is_idempotent_and_keeps_simulated_state(engine):
    with db.write_tx(engine) as conn:
        population.seed_users(conn, 500, seed=5, now_us=NOW, batch="mine")
    victim = population.generate_users(1, seed=5)[0]["openid"]
    with db.write_tx(engine) as conn:
        conn.execute(update(db.users).where(db.users.c.openid == victim).values(score=333))
    with db.write_tx(engine) as conn:
        assert population.seed_users(conn, 500, seed=5, now_us=NOW, batch="mine") == 0
        assert population.seed_users(conn, 800, seed=5, now_us=NOW, batch="mine") == 300
        assert population.ensure_magic_users(conn, NOW) == 0
    assert count_users(engine, db.users.c.seed_batch == "mine") == 800
    assert count_users(engine) == 800 + len(population.MAGIC_USERS)
    assert count_users(engine, db.users.c.openid == victim, db.users.c.score == 333) == 1


def test_ensure_magic_users_alone(engine):
    with db.write_tx(engine) as conn:
        assert population.ensure_magic_users(conn, NOW) == len(population.MAGIC_USERS)
    with db.read_tx(engine) as conn:
        until = conn.execute(select(db.users.c.frozen_until_us).where(
            db.users.c.openid == "o_magic_frozen")).scalar_one()
    assert until == NOW + population.MAGIC_FREEZE_US


@pytest.mark.slow
def test_seeding_the_gray_release_population_inserts_every_user(engine):
    # The speed target (50,000 users in under 10 s) lives in benchmarks/bench_seed.py.
    with db.write_tx(engine) as conn:
        inserted = population.seed_users(conn, 50_000, seed=11, now_us=NOW)
    assert inserted == 50_000
    with db.read_tx(engine) as conn:
        stored = conn.execute(select(func.count()).select_from(db.users)
                              .where(db.users.c.seed_batch == "seed-11")).scalar_one()
    assert stored == 50_000
