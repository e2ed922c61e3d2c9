"""A seeded, reproducible population of simulated WeChat users, plus documented magic users.

`generate_users(count, seed)` draws every user from one `random.Random(seed)` stream, user by
user, so the same (count, seed) always yields the same list and a larger count only appends
users (the first N users of seed S never change). Openids are hashed from (seed, index): they
look like real ones ('o' + 27 URL-safe base64 characters) and two seeds never share one in
practice (162 random bits each).

Score model: the inputs are drawn first and the score is `rules.compute_score(inputs)`, so a
fresh user's score is exactly what the daily refresh would compute. A latent "credit quality"
z ~ N(0, 1) drives every input, which makes the dimensions correlate as they do in life. 5 % of
users are thin-file (new or barely active accounts) and form the low tail. Resulting
distribution (20,000 users, seed 1): mean 641, sd 73, 72 % in 550-700; the full description is
`SCORE_DISTRIBUTION_DOC`, which the README includes.

Behaviours follow the score: the higher it is, the likelier the user pays on time, and the more
often they confirm an order (about 70 % at the bottom, 85 % at the top).

Seeding writes `users` rows only. No `score_history` row is written at seed time (it would double
the insert cost); a user's history starts with the first refresh or major event that scores them.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sandbox import db
from sandbox.world import rules

COLUMNS = tuple(db.users.c.keys())

THIN_FILE_SHARE = 0.05
NOT_REAL_NAME_SHARE = 0.02
NO_BANK_CARD_SHARE = 0.015  # of real-name users
NO_FACE_SHARE = 0.015  # of real-name users
OLD_CLIENT_SHARE = 0.03
UNDER_18_SHARE = 0.015  # ages 16-17
OVER_65_SHARE = 0.025  # ages 66-75
MALICIOUS_SHARE_OF_CANNOT = 0.08

SCORE_DISTRIBUTION_DOC = """\
**Simulated Pay Score distribution.** Pay Score runs from 300 to 850 and WeChat says most active
users sit between 550 and 700; the seeded population is built to match. A latent credit quality
z ~ N(0, 1) drives each user's payment activity (median about 37 payments a month), on-time
orders (about 57), social and asset scores and past defaults, and the score is the rules model
(`sandbox.world.rules.compute_score`) applied to those inputs, never a separate random number.
95 % of users are established accounts; 5 % are thin-file accounts (few payments, few orders,
scores around 450) that form the low tail. Measured on 20,000 users (seed 1): mean **641**,
standard deviation **73**, median 658, 5th percentile 499, 95th percentile 730; 72 % of users
sit in 550-700, 3 % below 450 and fewer than 0.2 % above 780. Behaviour follows the score:
about 92 % pay on time, 6 % pay 1-10 days late and 2.4 % cannot pay, the late and non-paying
users concentrated below 550; about 80 % confirm an order (70 % at the bottom, 85 % at the top),
the rest ignore (60 %) or decline (40 %) it. About 11 % are ineligible: 2 % not real-name, 3 %
without bank card or face verification, 3 % on a client older than 7.0.9, 4 % aged 16-17 or
66-75."""


def make_openid(seed: int, index: int) -> str:
    """'o' + 27 URL-safe characters, a pure function of (seed, index)."""
    digest = hashlib.blake2b(f"payscore-sandbox:{seed}:{index}".encode(), digest_size=21).digest()
    return "o" + base64.urlsafe_b64encode(digest).decode()[:27]


def _clip(value: float, low: float, high: float) -> float:
    return max(low, min(value, high))


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _age(rng: random.Random) -> int:
    roll = rng.random()
    if roll < UNDER_18_SHARE:
        return rng.randint(16, 17)
    if roll < UNDER_18_SHARE + OVER_65_SHARE:
        return rng.randint(66, 75)
    # Skewed young, like WeChat Pay's user base: most users in their late 20s to 40s.
    return min(65, int(rng.triangular(18, 66, 28)))


def _client_version(rng: random.Random) -> str:
    roll = rng.random()
    if roll < OLD_CLIENT_SHARE:
        return rng.choice(("6.7.3", "7.0.0", "7.0.4", "7.0.5", "7.0.7", "7.0.8"))
    if roll < OLD_CLIENT_SHARE + 0.05:
        return f"7.0.{rng.randint(9, 22)}"
    return f"8.0.{rng.randint(30, 56)}"


def _credit_inputs(rng: random.Random) -> dict[str, Any]:
    """The score inputs, correlated through one latent quality z."""
    z = rng.gauss(0.0, 1.0)
    if rng.random() < THIN_FILE_SHARE:
        activity = int(rng.expovariate(1 / 18))
        on_time = int(rng.expovariate(1 / 20))
        social = _clip(rng.gauss(0.4, 0.15), 0.0, 1.0)
        assets = _clip(rng.betavariate(1.0, 10.0), 0.0, 1.0)
        z -= 1.0  # thin files also default a little more often
    else:
        activity = int(_clip(math.exp(rng.gauss(3.6 + 0.2 * z, 0.3)), 0, 400))
        on_time = int(_clip(rng.gauss(57 + 11 * z, 6), 0, 400))
        social = _clip(rng.gauss(0.62 + 0.06 * z, 0.1), 0.0, 1.0)
        assets = _clip(rng.betavariate(1.3, 3.5) * (1.0 + 0.25 * z), 0.0, 1.0)
    p_default = _clip(0.06 * math.exp(-0.8 * z), 0.0, 0.6)
    defaults = 0
    while defaults < 8 and rng.random() < p_default:
        defaults += 1
    overdue = 0
    if defaults and rng.random() < 0.3:
        # Some old defaults are still unpaid; kept at or below the freeze threshold because a
        # freshly seeded world has no running freezes.
        overdue = min(rules.FREEZE_OVERDUE_THRESHOLD_FEN, rng.randint(1, 120) * 250 * defaults)
    return {"payment_activity": activity, "on_time_orders": on_time, "social": round(social, 4),
            "assets": round(assets, 4), "defaults_total": defaults, "overdue_fen": overdue}


def _behaviours(rng: random.Random, score: int) -> dict[str, Any]:
    p_cannot = 0.005 + 0.25 * _logistic((500 - score) / 35)
    p_late = 0.02 + 0.2 * _logistic((560 - score) / 40)
    roll = rng.random()
    if roll < p_cannot:
        balance, delay = "cannot", 0
    elif roll < p_cannot + p_late:
        balance = "late"
        delay = rng.choices((1, 2, 3, 5, 7, 10), weights=(30, 25, 20, 15, 7, 3))[0]
    else:
        balance, delay = "pays", 0
    p_confirm = 0.70 + 0.15 * _clip((score - 450) / 300, 0.0, 1.0)
    roll = rng.random()
    if roll < p_confirm:
        confirm = "confirms"
    elif roll < p_confirm + (1 - p_confirm) * 0.4:
        confirm = "declines"
    else:
        confirm = "ignores"
    confirm_delay = int(_clip(math.exp(rng.gauss(3.0, 0.8)), 2, 600))  # median ~20 s
    malicious = balance == "cannot" and rng.random() < MALICIOUS_SHARE_OF_CANNOT
    return {"balance_behaviour": balance, "pay_delay_days": delay, "confirm_behaviour": confirm,
            "confirm_delay_s": confirm_delay, "malicious": malicious}


def _user(rng: random.Random, openid: str, batch: str) -> dict[str, Any]:
    real_name = rng.random() >= NOT_REAL_NAME_SHARE
    # Binding a card or verifying a face needs a real-name account in the first place.
    bank_card = real_name and rng.random() >= NO_BANK_CARD_SHARE
    face = real_name and rng.random() >= NO_FACE_SHARE
    row: dict[str, Any] = {"openid": openid, "age": _age(rng), "real_name": real_name,
                           "bank_card": bank_card, "face_verified": face,
                           "client_version": _client_version(rng)}
    row.update(_credit_inputs(rng))
    row["score"] = rules.compute_score(row)
    row.update(_behaviours(rng, row["score"]))
    row.update(frozen_until_us=None, blacklisted=False, magic=None, seed_batch=batch,
               fail_next_deductions=0)
    return {key: row[key] for key in COLUMNS}


def generate_users(count: int, seed: int, batch: str = "seed") -> list[dict[str, Any]]:
    """`count` user rows (keys = the `db.users` columns), identical for identical (count, seed)."""
    rng = random.Random(seed)
    return [_user(rng, make_openid(seed, index), batch) for index in range(count)]


# --- magic users ---------------------------------------------------------------------------

MAGIC_PREFIX = "o_magic_"
# A frozen magic user stays frozen for the life of any sandbox: a real timestamp (no special
# case in the rules), ten years past the instant the magic users were inserted.
MAGIC_FREEZE_US = 3650 * rules.DAY_US

_GOOD_USER: dict[str, Any] = {
    "age": 30, "real_name": True, "bank_card": True, "face_verified": True,
    "client_version": "8.0.50", "balance_behaviour": "pays", "pay_delay_days": 0,
    "confirm_behaviour": "confirms", "confirm_delay_s": 5, "payment_activity": 40,
    "social": 0.7, "assets": 0.3, "on_time_orders": 80, "defaults_total": 0, "overdue_fen": 0,
    "frozen_until_us": None, "blacklisted": False, "malicious": False,
    "fail_next_deductions": 0,
}

# name -> behaviour (for the docs) and the columns that differ from a good, eligible user.
MAGIC_USERS: dict[str, dict[str, Any]] = {
    "always_confirms": {"behaviour": "eligible; confirms every order within 5 s and pays at once",
                        "columns": {}},
    "never_confirms": {"behaviour": "eligible; ignores confirm requests (order stays CREATED)",
                       "columns": {"confirm_behaviour": "ignores"}},
    "declines": {"behaviour": "eligible; declines every confirm request",
                 "columns": {"confirm_behaviour": "declines"}},
    "insufficient_balance": {"behaviour": "confirms, but every deduction fails (cannot pay)",
                             "columns": {"balance_behaviour": "cannot"}},
    "pays_after_3_days": {"behaviour": "confirms; pays late: balance `late`, pay_delay_days=3",
                          "columns": {"balance_behaviour": "late", "pay_delay_days": 3}},
    "malicious": {"behaviour": "confirms, never pays; malicious=True (evasion -> blacklist)",
                  "columns": {"balance_behaviour": "cannot", "malicious": True}},
    "frozen": {"behaviour": "Pay Score frozen (frozen_until = seed time + 10 years)",
               "columns": {}},
    "blacklisted": {"behaviour": "on the Tencent credit blacklist", "columns": {"blacklisted": True}},
    "under_18": {"behaviour": "ineligible: aged 16 (UNDER_18)", "columns": {"age": 16}},
    "over_65": {"behaviour": "ineligible: aged 70 (OVER_65)", "columns": {"age": 70}},
    "not_real_name": {"behaviour": "ineligible: no real-name verification (NOT_REAL_NAME)",
                      "columns": {"real_name": False, "bank_card": False,
                                  "face_verified": False}},
    "no_bank_card": {"behaviour": "ineligible: no bank card bound (NO_BANK_CARD_OR_FACE)",
                     "columns": {"bank_card": False}},
    "client_too_old": {"behaviour": "ineligible: WeChat client 7.0.8 (CLIENT_TOO_OLD)",
                       "columns": {"client_version": "7.0.8"}},
    "thin_file": {"behaviour": "eligible with a low score: there is no score threshold",
                  "columns": {"payment_activity": 3, "on_time_orders": 0, "social": 0.2,
                              "assets": 0.0}},
}

MAGIC_OPENIDS: dict[str, str] = {name: MAGIC_PREFIX + name for name in MAGIC_USERS}

MAGIC_USERS_DOC = "\n".join(
    ["| openid | behaviour |", "|---|---|"]
    + [f"| `{MAGIC_OPENIDS[name]}` | {spec['behaviour']} |" for name, spec in MAGIC_USERS.items()]
)


def magic_users(now_us: int) -> list[dict[str, Any]]:
    """Full `db.users` rows for the magic users; now_us only dates the frozen user's freeze."""
    rows = []
    for name, spec in MAGIC_USERS.items():
        row = {**_GOOD_USER, **spec["columns"], "openid": MAGIC_OPENIDS[name], "magic": name,
               "seed_batch": "magic"}
        if name == "frozen":
            row["frozen_until_us"] = now_us + MAGIC_FREEZE_US
        row["score"] = rules.compute_score(row)
        rows.append({key: row[key] for key in COLUMNS})
    return rows


# --- seeding -------------------------------------------------------------------------------

CHUNK = 5000


def _insert_missing(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert rows whose openid is not there yet; returns how many were inserted."""
    before = conn.execute(select(func.count()).select_from(db.users)).scalar_one()
    dialect = conn.dialect.name
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
            stmt = insert(db.users).on_conflict_do_nothing(index_elements=["openid"])
        else:  # portable fallback: filter out existing openids first
            existing = set(conn.execute(select(db.users.c.openid).where(
                db.users.c.openid.in_([r["openid"] for r in chunk]))).scalars())
            chunk = [r for r in chunk if r["openid"] not in existing]
            stmt = db.users.insert()
        if chunk:
            conn.execute(stmt, chunk)
    # Counting beats rowcount, which executemany reports inconsistently across drivers.
    return conn.execute(select(func.count()).select_from(db.users)).scalar_one() - before


def ensure_magic_users(conn: Connection, now_us: int) -> int:
    """Insert the magic users that are missing (existing ones keep their current state)."""
    return _insert_missing(conn, magic_users(now_us))


def seed_users(conn: Connection, count: int, seed: int, now_us: int,
               batch: str | None = None) -> int:
    """Seed `count` generated users (and the magic users); returns generated users inserted.

    Idempotent: users whose openid already exists are left untouched (INSERT ... ON CONFLICT DO
    NOTHING), so re-seeding keeps whatever the simulation has done to them and a larger count
    only adds the new tail. Call inside a write transaction (`db.write_tx`).
    """
    inserted = _insert_missing(conn, generate_users(count, seed, batch or f"seed-{seed}"))
    ensure_magic_users(conn, now_us)
    return inserted
