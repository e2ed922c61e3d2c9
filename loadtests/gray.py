"""Gray release, model mode: a sampled population through the admission policy and the funnel.

Users come from the sandbox population (`sandbox.world.population.generate_users(count, seed)`,
the same users `payscore` seeds) or from a sandbox database, so the model and a live run see
the same people. Each user is assigned a product by the policy's shares and an order amount,
both from a stream seeded with the run seed. Then, per user:

* eligible   the sandbox's own create rules accept the user for that product's risk fund
             (`sandbox.world.rules.refusal`: real name, bank card and face, client >= 7.0.9,
             age 18-65, and the risk tiers: FROZEN and BLACKLISTED refused, LIMITED refused
             above 299 yuan);
* offered    the score reaches the product's threshold in the policy;
* confirmed  the user's confirm behaviour is "confirms" (the others decline or ignore);
* completed  every confirmed rental is used and completed with its amount;
* paid       balance behaviour "pays" (on time) or "late" (within `pay_delay_days`);
* overdue    "late" or "cannot"; defaulted = "cannot".

Conversion = users who completed a paid order / sampled users. It is judged against the 15 %
gate with a 95 % Wilson interval. Default rate = defaulted / completed; overdue rate = overdue
/ completed. The threshold sweep applies one threshold to every product.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from loadtests.gates_math import conversion_gate, wilson_interval
from loadtests.policy import SCORE_MAX, SCORE_MIN, Policy, Product
from sandbox.world import rules

STAGES = ("sampled", "eligible", "offered", "confirmed", "completed", "paid")
TIERS = (rules.FROZEN, rules.BLACKLISTED, rules.LIMITED)
SWEEP = tuple(range(450, 801, 10))


@dataclass(frozen=True)
class Assignment:
    """One sampled user, the product they ask for, and what the model says happens."""

    openid: str
    score: int
    product: str
    risk_fund: int
    amount: int
    refusal: str | None  # eligibility reason or risk tier, None when accepted
    confirm: str  # confirms | declines | ignores
    balance: str  # pays | late | cannot
    pay_delay_days: int

    @property
    def eligible(self) -> bool:
        return self.refusal is None

    def offered(self, threshold: int) -> bool:
        return self.eligible and self.score >= threshold

    @property
    def confirmed(self) -> bool:
        return self.confirm == "confirms"

    @property
    def paid(self) -> bool:
        return self.balance in ("pays", "late")


def sample_users(count: int, seed: int) -> list[dict[str, Any]]:
    from sandbox.world.population import generate_users

    return generate_users(count, seed)


def load_db_users(db_url: str, count: int, seed: int) -> tuple[list[dict[str, Any]],
                                                               dict[str, int], int]:
    """Up to `count` generated users of a sandbox database (a seeded sample if there are more),
    their defaults this calendar month, and the sandbox clock's now."""
    from sqlalchemy import select

    from sandbox import db
    from sandbox.clock import Clock

    engine = db.make_engine(db_url)
    try:
        now_us = Clock(engine).now_us()
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                select(db.users).where(db.users.c.magic.is_(None)).order_by(db.users.c.openid))]
            start, _end = rules.cst_month_range_us(now_us)
            defaults = Counter(r.openid for r in conn.execute(
                select(db.user_defaults.c.openid).where(db.user_defaults.c.at_us >= start,
                                                        db.user_defaults.c.at_us <= now_us)))
    finally:
        engine.dispose()
    if len(rows) > count:
        rows = random.Random(seed).sample(rows, count)
    return rows, dict(defaults), now_us


def assign(users: list[dict[str, Any]], policy: Policy, seed: int, now_us: int = 0,
           defaults: dict[str, int] | None = None) -> list[Assignment]:
    """Product, amount and the sandbox's create verdict for every user (deterministic)."""
    rng = random.Random(f"gray:{seed}")
    cumulative, total = [], 0.0
    for product in policy.products:
        total += product.share
        cumulative.append((total, product))
    defaults = defaults or {}
    out = []
    for user in users:
        roll = rng.random() * total
        product: Product = next(p for edge, p in cumulative if roll < edge) \
            if roll < total else cumulative[-1][1]
        amount = rng.randint(product.amount_min, product.amount_max)
        refusal = rules.refusal(user, defaults.get(user["openid"], 0), product.risk_fund, now_us)
        out.append(Assignment(user["openid"], int(user["score"]), product.id, product.risk_fund,
                              amount, refusal.reason if refusal else None,
                              user["confirm_behaviour"], user["balance_behaviour"],
                              int(user.get("pay_delay_days") or 0)))
    return out


@dataclass
class Funnel:
    counts: dict[str, int]
    completed_amount: int = 0
    defaulted: int = 0
    late: int = 0
    bad_debt_fen: int = 0
    ineligible: Counter = field(default_factory=Counter)
    frozen: Counter = field(default_factory=Counter)

    @property
    def default_rate(self) -> float:
        return self.defaulted / self.counts["completed"] if self.counts["completed"] else 0.0

    @property
    def overdue_rate(self) -> float:
        done = self.counts["completed"]
        return (self.defaulted + self.late) / done if done else 0.0

    def rows(self) -> list[dict[str, Any]]:
        sampled = self.counts["sampled"] or 1
        out, previous = [], None
        for stage in STAGES:
            count = self.counts[stage]
            out.append({"stage": stage, "count": count, "of_sampled": count / sampled,
                        "of_previous": count / previous if previous else 1.0})
            previous = count or None
        return out


def funnel(assignments: list[Assignment], thresholds: dict[str, int]) -> Funnel:
    """The funnel under per-product thresholds."""
    counts = dict.fromkeys(STAGES, 0)
    result = Funnel(counts)
    for a in assignments:
        counts["sampled"] += 1
        if not a.eligible:
            (result.frozen if a.refusal in TIERS else result.ineligible)[a.refusal] += 1
            continue
        counts["eligible"] += 1
        if a.score < thresholds[a.product]:
            continue
        counts["offered"] += 1
        if not a.confirmed:
            continue
        counts["confirmed"] += 1
        counts["completed"] += 1
        result.completed_amount += a.amount
        if a.paid:
            counts["paid"] += 1
        if a.balance == "late":
            result.late += 1
        elif a.balance == "cannot":
            result.defaulted += 1
            result.bad_debt_fen += a.amount
    return result


def sweep(assignments: list[Assignment], thresholds: tuple[int, ...] = SWEEP
          ) -> list[dict[str, Any]]:
    """Conversion and default rate for one threshold applied to every product.

    Score histograms of the confirmed users make each point a suffix sum: O(users + scores).
    """
    size = SCORE_MAX - SCORE_MIN + 2
    completed, paid, cannot, late = ([0] * size for _ in range(4))
    sampled = len(assignments)
    for a in assignments:
        if a.eligible and a.confirmed:
            index = min(max(a.score, SCORE_MIN), SCORE_MAX) - SCORE_MIN
            completed[index] += 1
            paid[index] += a.paid
            cannot[index] += a.balance == "cannot"
            late[index] += a.balance == "late"
    for series in (completed, paid, cannot, late):
        for index in range(size - 2, -1, -1):
            series[index] += series[index + 1]
    points = []
    for threshold in thresholds:
        index = min(max(threshold, SCORE_MIN), SCORE_MAX + 1) - SCORE_MIN
        done, converted = completed[index], paid[index]
        lower, upper = wilson_interval(converted, sampled) if sampled else (0.0, 1.0)
        points.append({"threshold": threshold, "completed": done, "paid": converted,
                       "conversion": converted / sampled if sampled else 0.0,
                       "conversion_lower": lower, "conversion_upper": upper,
                       "default_rate": cannot[index] / done if done else 0.0,
                       "overdue_rate": (cannot[index] + late[index]) / done if done else 0.0})
    return points


def highest_passing_threshold(points: list[dict[str, Any]], gate: float = 0.15) -> int | None:
    """The strictest swept threshold whose conversion still passes the gate (lower >= 15 %)."""
    passing = [p["threshold"] for p in points if p["conversion_lower"] >= gate]
    return max(passing) if passing else None


def per_product(assignments: list[Assignment], policy: Policy) -> list[dict[str, Any]]:
    rows = []
    for product in policy.products:
        mine = [a for a in assignments if a.product == product.id]
        f = funnel(mine, {product.id: product.min_score})
        rows.append({"product": product.id, "title": product.title,
                     "min_score": product.min_score, **f.counts,
                     "default_rate": f.default_rate, "overdue_rate": f.overdue_rate})
    return rows


def run_model(policy: Policy, users: int, seed: int, db_url: str | None = None
              ) -> dict[str, Any]:
    """The whole model-mode result (JSON-ready), with its timings."""
    t0 = time.perf_counter()
    if db_url:
        population, defaults, now_us = load_db_users(db_url, users, seed)
        source = "database"
    else:
        population, defaults, now_us = sample_users(users, seed), {}, 0
        source = "population"
    t1 = time.perf_counter()
    assignments = assign(population, policy, seed, now_us, defaults)
    return summarise(policy, assignments, seed, source,
                     {"sample_s": t1 - t0, "model_s": time.perf_counter() - t1})


def summarise(policy: Policy, assignments: list[Assignment], seed: int, source: str,
              timings: dict[str, float]) -> dict[str, Any]:
    t0 = time.perf_counter()
    thresholds = {p.id: p.min_score for p in policy.products}
    f = funnel(assignments, thresholds)
    gate = conversion_gate(f.counts["paid"], f.counts["sampled"])
    points = sweep(assignments)
    timings = {**timings, "summary_s": time.perf_counter() - t0}
    timings["total_s"] = sum(timings.values())
    return {
        "mode": "model", "source": source, "seed": seed, "policy": policy.to_dict(),
        "funnel": f.rows(), "conversion": gate.to_dict(),
        "conversion_definition": "users who completed a paid order / sampled users",
        "default_rate": f.default_rate, "overdue_rate": f.overdue_rate,
        "defaulted": f.defaulted, "late": f.late, "bad_debt_fen": f.bad_debt_fen,
        "completed_amount_fen": f.completed_amount,
        "ineligible": dict(f.ineligible), "frozen_by_risk_tier": dict(f.frozen),
        "products": per_product(assignments, policy), "sweep": points,
        "highest_passing_threshold": highest_passing_threshold(points),
        "timings": timings,
    }
