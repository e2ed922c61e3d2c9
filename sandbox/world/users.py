"""Users in a running sandbox: the first-start population, any openid, profiles.

The population itself (distributions, magic users) lives in sandbox.world.population and the
rules in sandbox.world.rules; this module reads and writes `users` rows for the rest of the
world. An openid nobody seeded still works: the first time a merchant uses it, it becomes a
user drawn deterministically from the population model, seeded by a hash of the openid, so
the same openid behaves the same in every sandbox.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from sandbox import db
from sandbox.world import population, rules, scores

DEFAULT_COUNT = 200
DEFAULT_SEED = 42
DEFAULT_BATCH = "default"
ADHOC_BATCH = "adhoc"
# How many draws an ad-hoc user gets to come out eligible; 11 % of draws are not, so twenty
# draws fail together with probability about 1e-19.
ADHOC_DRAWS = 20

ADHOC_DOC = """\
An openid that was never seeded becomes a user the first time it is used (create, permissions,
the control API): drawn from the same model as the seeded population with a seed derived from
a SHA-256 of the openid, so it is the same user in every sandbox. Unlike the seeded population
such a user is always eligible (a merchant's own test openids should not be refused at random;
the magic openids are the way to get a refusal); its balance and confirm behaviour follow the
population (about 92 % pay at once)."""


def ensure_world(conn: Connection, now_us: int) -> None:
    """First start: the default population, the magic users and the daily score refresh.

    Cheap when already done (two indexed lookups), so every app start may call it.
    """
    last = population.make_openid(DEFAULT_SEED, DEFAULT_COUNT - 1)
    if _find(conn, last) is None:
        population.seed_users(conn, DEFAULT_COUNT, DEFAULT_SEED, now_us, batch=DEFAULT_BATCH)
    elif _find(conn, population.MAGIC_OPENIDS["always_confirms"]) is None:
        population.ensure_magic_users(conn, now_us)
    scores.ensure_refresh_scheduled(conn, now_us)


def _find(conn: Connection, openid: str) -> Row | None:
    return conn.execute(select(db.users).where(db.users.c.openid == openid)).first()


# Built once (values as parameters): the world reads and updates users on most operations.
_USER = select(db.users).where(db.users.c.openid == bindparam("user_openid"))
_SET_USER = update(db.users).where(db.users.c.openid == bindparam("user_openid"))  # SET: keys
_OVERDUE_ORDER = (
    select(db.orders.c.pk, db.orders.c.mchid, db.orders.c.out_order_no)
    .select_from(db.user_defaults.join(db.orders,
                                       db.orders.c.pk == db.user_defaults.c.order_pk))
    .where(db.user_defaults.c.openid == bindparam("user_openid"),
           db.user_defaults.c.settled.is_(False), db.orders.c.state == "DOING",
           db.orders.c.collection_state == "USER_PAYING").limit(1))


def find_user(conn: Connection, openid: str, lock: bool = False) -> Row | None:
    stmt = db.for_update(_USER, conn) if lock else _USER
    return conn.execute(stmt, {"user_openid": openid}).first()


def adhoc_user(openid: str) -> dict[str, Any]:
    """The deterministic, eligible user an unseeded openid stands for (see ADHOC_DOC)."""
    base = int.from_bytes(hashlib.sha256(openid.encode("utf-8")).digest()[:8], "big")
    row: dict[str, Any] = {}
    for draw in range(ADHOC_DRAWS):
        row = population.generate_users(1, base + draw, batch=ADHOC_BATCH)[0]
        if rules.eligibility(row)[0]:
            break
    row.update(openid=openid, malicious=False)
    return row


def get_or_create_user(conn: Connection, openid: str, now_us: int, lock: bool = False) -> Row:
    """The user row for openid, creating the ad-hoc user on first use."""
    found = find_user(conn, openid, lock)
    if found is not None:
        return found
    row = adhoc_user(openid)
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        # Two workers may meet the same new openid at once: the second insert is a no-op.
        conn.execute(insert(db.users).values(**row).on_conflict_do_nothing(
            index_elements=["openid"]))
    else:
        conn.execute(db.users.insert().values(**row))
    return find_user(conn, openid, lock)  # type: ignore[return-value]


def peek(conn: Connection, openid: str) -> Mapping[str, Any]:
    """The user's columns without writing: the stored row, or the ad-hoc user it would be."""
    found = find_user(conn, openid)
    return found._mapping if found is not None else adhoc_user(openid)


def can_use_service(conn: Connection, openid: str, now_us: int) -> bool:
    """Whether Pay Score is usable for this user now (eligible, not frozen or blacklisted).

    For user-service-state and permissions; read-only, so it fits a read transaction.
    """
    return rules.refusal(peek(conn, openid), 0, 0, now_us) is None


def set_columns(conn: Connection, openid: str, values: dict[str, Any]) -> None:
    """New values (not SQL expressions) for a user's columns."""
    if values:
        conn.execute(_SET_USER, {"user_openid": openid, **values})


_DEFAULT_TIMES = select(db.user_defaults.c.at_us).where(
    db.user_defaults.c.openid == bindparam("user_openid"),
    db.user_defaults.c.at_us >= bindparam("since_us"))


def default_times(conn: Connection, openid: str, since_us: int) -> list[int]:
    return list(conn.execute(_DEFAULT_TIMES, {"user_openid": openid,
                                              "since_us": since_us}).scalars())


def defaults_this_month(conn: Connection, openid: str, now_us: int) -> int:
    start, _ = rules.cst_month_range_us(now_us)
    return rules.defaults_this_month(default_times(conn, openid, start), now_us)


def pending_overdue_order(conn: Connection, openid: str) -> Row | None:
    """An order of this user that went overdue (a default was recorded) and is still unpaid."""
    return conn.execute(_OVERDUE_ORDER, {"user_openid": openid}).first()


def assess(conn: Connection, user: Row, now_us: int) -> dict[str, Any]:
    """Eligibility and risk tier as the world sees them now."""
    eligible, reason = rules.eligibility(user._mapping)
    month = defaults_this_month(conn, user.openid, now_us)
    return {"eligible": eligible, "reason": reason,
            "reason_text": rules.REASON_TEXT.get(reason) if reason else None,
            "risk_tier": rules.risk_tier(user._mapping, month, now_us),
            "defaults_this_month": month}


def profile(conn: Connection, openid: str, now_us: int, history_limit: int = 100
            ) -> dict[str, Any]:
    """Everything the control API shows about a user."""
    user = get_or_create_user(conn, openid, now_us)
    out: dict[str, Any] = dict(user._mapping)
    out.update(assess(conn, user, now_us))
    frozen = user.frozen_until_us is not None and user.frozen_until_us > now_us
    out["frozen"] = frozen
    pending = pending_overdue_order(conn, openid)
    out["pending_overdue_order"] = (None if pending is None else
                                    {"mchid": pending.mchid,
                                     "out_order_no": pending.out_order_no})
    out["score_history"] = scores.history(conn, openid, history_limit)
    return out


def count_users(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(db.users)).scalar_one()
