"""The world's Pay Score rules (sandbox.world.rules): pure functions, so no sandbox needed."""

from __future__ import annotations

import datetime as dt

import pytest

from sandbox import errors
from sandbox.world import rules

CST = dt.timezone(dt.timedelta(hours=8))
UTC = dt.UTC
DAY = rules.DAY_US
HOUR = rules.HOUR_US


def us(*args: int, tz: dt.tzinfo = CST) -> int:
    return int(dt.datetime(*args, tzinfo=tz).timestamp()) * 1_000_000


def user(**overrides) -> dict:
    base = {"openid": "oTest", "score": 650, "age": 30, "real_name": True, "bank_card": True,
            "face_verified": True, "client_version": "8.0.50", "payment_activity": 0,
            "on_time_orders": 0, "social": 0.0, "assets": 0.0, "defaults_total": 0,
            "overdue_fen": 0, "frozen_until_us": None, "blacklisted": False, "malicious": False}
    return {**base, **overrides}


NOW = us(2024, 3, 15, 12, 0, 0)


# --- eligibility -----------------------------------------------------------------------------

@pytest.mark.parametrize(("age", "expected"), [
    (16, (False, "UNDER_18")), (17, (False, "UNDER_18")), (18, (True, None)),
    (65, (True, None)), (66, (False, "OVER_65")), (75, (False, "OVER_65")),
])
def test_age_limits_are_inclusive_18_to_65(age, expected):
    assert rules.eligibility(user(age=age)) == expected


@pytest.mark.parametrize(("version", "ok"), [
    ("7.0.8", False), ("7.0.9", True), ("7.0.10", True), ("8.0.1", True), ("7.1", True),
    ("6.9.99", False), ("7", False), ("garbage", False), ("", False),
])
def test_client_version_compared_numerically(version, ok):
    eligible, reason = rules.eligibility(user(client_version=version))
    assert eligible is ok
    assert reason == (None if ok else "CLIENT_TOO_OLD")


@pytest.mark.parametrize("missing", ["bank_card", "face_verified"])
def test_bank_card_and_face_are_both_required(missing):
    assert rules.eligibility(user(**{missing: False})) == (False, "NO_BANK_CARD_OR_FACE")


def test_reason_follows_the_article_order():
    worst = user(real_name=False, bank_card=False, face_verified=False,
                 client_version="7.0.8", age=16)
    assert rules.eligibility(worst) == (False, "NOT_REAL_NAME")
    assert rules.eligibility({**worst, "real_name": True}) == (False, "NO_BANK_CARD_OR_FACE")
    fixed = {**worst, "real_name": True, "bank_card": True, "face_verified": True}
    assert rules.eligibility(fixed) == (False, "CLIENT_TOO_OLD")
    assert set(rules.REASON_TEXT) == {"NOT_REAL_NAME", "NO_BANK_CARD_OR_FACE", "CLIENT_TOO_OLD",
                                      "UNDER_18", "OVER_65"}


def test_no_score_threshold():
    assert rules.eligibility(user(score=300)) == (True, None)


# --- risk tiers ----------------------------------------------------------------------------

def test_tier_precedence_and_thresholds():
    assert rules.risk_tier(user(), 0, NOW) == "NORMAL"
    assert rules.risk_tier(user(), 1, NOW) == "NORMAL"
    assert rules.risk_tier(user(), 2, NOW) == "LIMITED"
    assert rules.risk_tier(user(frozen_until_us=NOW + 1), 2, NOW) == "FROZEN"
    assert rules.risk_tier(user(frozen_until_us=NOW + 1, blacklisted=True), 2, NOW) == \
        "BLACKLISTED"


def test_freeze_ends_exactly_at_frozen_until():
    frozen = user(frozen_until_us=NOW)
    assert rules.risk_tier(frozen, 0, NOW - 1) == "FROZEN"
    assert rules.risk_tier(frozen, 0, NOW) == "NORMAL"


def test_calendar_month_is_china_standard_time():
    late_jan_31 = us(2024, 1, 31, 23, 30)  # 15:30 UTC, January either way
    early_feb_1 = us(2024, 2, 1, 0, 10)  # still January 31 in UTC, but February in China
    jan_10 = us(2024, 1, 10, 9, 0)
    assert rules.defaults_this_month([jan_10, late_jan_31], us(2024, 1, 31, 23, 59)) == 2
    # Ten minutes past midnight CST a new month has started, though UTC is still in January.
    feb_now = us(2024, 2, 1, 0, 30)
    assert dt.datetime.fromtimestamp(feb_now / 1e6, tz=UTC).month == 1
    assert rules.defaults_this_month([jan_10, late_jan_31], feb_now) == 0
    assert rules.defaults_this_month([late_jan_31, early_feb_1], feb_now) == 1
    january = rules.defaults_this_month([jan_10, late_jan_31], us(2024, 1, 31, 23, 59))
    assert rules.risk_tier(user(), january, us(2024, 1, 31, 23, 59)) == "LIMITED"
    february = rules.defaults_this_month([jan_10, late_jan_31], feb_now)
    assert rules.risk_tier(user(), february, feb_now) == "NORMAL"


def test_month_range_rolls_over_the_year():
    start, end = rules.cst_month_range_us(us(2023, 12, 31, 23, 59))
    assert start == us(2023, 12, 1)
    assert end == us(2024, 1, 1)
    assert rules.cst_month_range_us(us(2024, 2, 29, 12)) == (us(2024, 2, 1), us(2024, 3, 1))


def test_future_defaults_do_not_count():
    assert rules.defaults_this_month([NOW + 1], NOW) == 0


# --- create refusals ---------------------------------------------------------------------

def test_good_user_is_not_refused():
    assert rules.create_refusal(user(), 0, 100_000, NOW) is None


def test_ineligible_users_fail_the_assessment():
    assert rules.create_refusal(user(age=17), 0, 100, NOW) == ("InvalidRequest", "综合评估未通过")
    found = rules.refusal(user(client_version="7.0.8"), 0, 100, NOW)
    assert found is not None
    assert (found.internal_code, found.reason) == ("271300099", "CLIENT_TOO_OLD")


def test_limited_users_keep_orders_up_to_299_yuan():
    assert rules.HIGH_VALUE_LIMIT_FEN == 29900
    assert rules.create_refusal(user(), 2, 29900, NOW) is None
    assert rules.create_refusal(user(), 2, 29901, NOW) == ("InvalidRequest", "综合评估未通过")
    assert rules.create_refusal(user(), 1, 1_000_000, NOW) is None


def test_frozen_and_blacklisted_users_are_refused_at_any_amount():
    assert rules.create_refusal(user(blacklisted=True), 0, 1, NOW) == \
        ("InvalidRequest", "综合评估未通过")
    assert rules.create_refusal(user(frozen_until_us=NOW + DAY), 0, 1, NOW) == \
        ("InvalidRequest", "综合评估未通过")
    owing = rules.refusal(user(frozen_until_us=NOW + DAY, overdue_fen=60000), 0, 1, NOW)
    assert owing is not None
    assert (owing.message, owing.internal_code, owing.reason) == \
        ("存在待处理的超时未支付订单", "271299627", "FROZEN")


def test_refusal_classes_exist_in_the_error_module():
    cases = [user(age=70), user(blacklisted=True), user(frozen_until_us=NOW + 1, overdue_fen=1)]
    for case in cases:
        found = rules.create_refusal(case, 0, 100, NOW)
        assert found is not None
        cls = getattr(errors, found[0])
        assert issubclass(cls, errors.PayScoreError)
        assert (cls.status, cls.code) == (400, "INVALID_REQUEST")


# --- freezing and events -----------------------------------------------------------------

def test_freeze_needs_strictly_more_than_500_yuan():
    assert not rules.should_freeze(50000)
    assert rules.should_freeze(50001)
    assert "frozen_until_us" not in rules.on_default(user(), 50000, NOW)
    updates = rules.on_default(user(), 50001, NOW)
    assert updates == {"defaults_total": 1, "overdue_fen": 50001,
                       "frozen_until_us": NOW + 30 * DAY}


def test_defaults_accumulate_towards_the_freeze():
    first = rules.on_default(user(), 30000, NOW)
    assert first == {"defaults_total": 1, "overdue_fen": 30000}
    second = rules.on_default(user(**first), 20001, NOW + DAY)
    assert second["defaults_total"] == 2
    assert second["frozen_until_us"] == NOW + DAY + rules.FREEZE_DAYS * DAY


def test_a_new_default_never_shortens_a_freeze():
    long_freeze = NOW + 365 * DAY
    updates = rules.on_default(user(overdue_fen=60000, frozen_until_us=long_freeze), 100, NOW)
    assert updates["frozen_until_us"] == long_freeze


def test_event_updates():
    assert rules.on_paid_on_time(user(on_time_orders=4)) == {"on_time_orders": 5}
    assert rules.on_malicious(user()) == {"blacklisted": True}
    assert rules.on_overdue_settled(user(overdue_fen=5000), 2000) == {"overdue_fen": 3000}
    assert rules.on_overdue_settled(user(overdue_fen=5000), 9000) == {"overdue_fen": 0}


def test_overdue_escalation_stages():
    failed = NOW
    assert rules.OVERDUE_STAGES == [(1, "NOTICE", "逾期首日发送微信消息通知"),
                                    (3, "NEGOTIATION", "第三日人工客服介入协商"),
                                    (7, "LEGAL", "第七日启动法律程序")]
    assert rules.overdue_stage(failed, failed + DAY - 1) is None
    assert rules.overdue_stage(failed, failed + DAY)[1] == "NOTICE"
    assert rules.overdue_stage(failed, failed + 3 * DAY - 1)[1] == "NOTICE"
    assert rules.overdue_stage(failed, failed + 3 * DAY)[1] == "NEGOTIATION"
    assert rules.overdue_stage(failed, failed + 30 * DAY)[1] == "LEGAL"
    assert [due for due, _, _ in rules.overdue_schedule(failed)] == \
        [failed + DAY, failed + 3 * DAY, failed + 7 * DAY]


# --- score model ---------------------------------------------------------------------------

def test_score_bounds():
    assert rules.compute_score(user()) == 300
    best = user(payment_activity=30, on_time_orders=110, social=1.0, assets=1.0)
    assert rules.compute_score(best) == 850
    beyond = user(payment_activity=500, on_time_orders=9999, social=7.0, assets=3.0)
    assert rules.compute_score(beyond) == 850
    assert rules.compute_score(user(defaults_total=50, overdue_fen=10**9)) == 300


def test_dimension_maxima_follow_the_article_weights():
    best = rules.score_components(
        user(payment_activity=30, on_time_orders=110, social=1.0, assets=1.0))
    span = 550
    assert best["payment"] == pytest.approx(0.35 * span)
    assert best["on_time"] == pytest.approx(0.40 * span)
    assert best["social"] == pytest.approx(0.15 * span)
    assert best["assets"] == pytest.approx(0.10 * span)


def test_two_points_per_on_time_order_up_to_the_cap():
    assert rules.compute_score(user(on_time_orders=1)) == 302
    assert rules.compute_score(user(on_time_orders=10)) == 320
    assert rules.compute_score(user(on_time_orders=110)) == 520
    assert rules.compute_score(user(on_time_orders=111)) == 520


def test_payment_activity_bonus_from_30_a_month():
    at_15 = rules.compute_score(user(payment_activity=15))
    at_29 = rules.compute_score(user(payment_activity=29))
    at_30 = rules.compute_score(user(payment_activity=30))
    assert at_15 == 300 + round(192.5 * 0.85 / 2)  # linear part, half way
    # One more payment per month is worth ~5.5 points below 30, but reaching 30 adds the bonus.
    assert at_30 - at_29 == pytest.approx(192.5 * (0.85 / 30 + 0.15), abs=1)
    assert rules.compute_score(user(payment_activity=300)) == at_30


def test_social_and_assets_scale_linearly():
    assert rules.compute_score(user(social=1.0)) == 383  # 82.5 rounds half up
    assert rules.compute_score(user(social=0.5)) == 341
    assert rules.compute_score(user(assets=1.0)) == 355
    assert rules.compute_score(user(assets=0.2)) == 311


def test_penalties_lower_the_score():
    good = user(payment_activity=40, on_time_orders=80, social=0.7, assets=0.3)
    base = rules.compute_score(good)
    assert rules.compute_score({**good, "defaults_total": 1}) == base - 25
    assert rules.compute_score({**good, "defaults_total": 20}) == base - 200  # capped
    assert rules.compute_score({**good, "overdue_fen": 10000}) == base - 10  # 1 point / 10 yuan
    assert rules.compute_score({**good, "overdue_fen": 10**8}) == base - 150  # capped


def test_each_dimension_moves_the_score_up():
    base = user(payment_activity=10, on_time_orders=20, social=0.3, assets=0.1)
    score = rules.compute_score(base)
    for field, better in [("payment_activity", 20), ("on_time_orders", 40), ("social", 0.6),
                          ("assets", 0.5)]:
        assert rules.compute_score({**base, field: better}) > score, field


# --- timing --------------------------------------------------------------------------------

def test_next_refresh_is_the_next_3am_cst():
    assert rules.next_refresh_us(us(2024, 3, 15, 2, 59, 59)) == us(2024, 3, 15, 3)
    assert rules.next_refresh_us(us(2024, 3, 15, 3)) == us(2024, 3, 16, 3)  # strictly after
    assert rules.next_refresh_us(us(2024, 3, 15, 3) + 1) == us(2024, 3, 16, 3)
    # Midnight UTC is 08:00 in Beijing: the next refresh is 19:00 UTC the same UTC day.
    assert rules.next_refresh_us(us(2024, 3, 15, tz=UTC)) == us(2024, 3, 15, 19, tz=UTC)
    assert rules.next_refresh_us(us(2024, 12, 31, 23, 59)) == us(2025, 1, 1, 3)


def test_refreshes_are_24h_apart_all_year_without_dst():
    at = rules.next_refresh_us(us(2024, 1, 1))
    for _ in range(400):  # crosses every European and American DST switch of 2024
        following = rules.next_refresh_us(at)
        assert following - at == DAY
        assert dt.datetime.fromtimestamp(following / 1e6, tz=UTC).hour == 19
        at = following


def test_major_events_are_reevaluated_within_two_hours():
    assert 0 < rules.MAJOR_EVENT_DELAY_US < rules.MAJOR_EVENT_WINDOW_US == 2 * HOUR
    assert rules.major_event_due_us(NOW) == NOW + rules.MAJOR_EVENT_DELAY_US
