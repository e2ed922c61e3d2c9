"""The simulated world's Pay Score rules, as pure functions.

Source: the seed article (/work/shared/reference/seed-payscore-article.txt); its rules are the
world's rules. Nothing here touches the database or reads a clock: callers pass the user row
(any mapping with the `db.users` columns) and `now_us` (sandbox-clock microseconds), and apply
the returned column updates themselves. That keeps every rule unit-testable and lets the job
runner replay them at any simulated instant.

* Eligibility (开通条件): real-name account with a bank card and face verification, client
  7.0.9 or later, age 18-65. There is no score threshold.
* Score (评估维度): payment behaviour 35 %, on-time record 40 % (2 points per on-time order),
  social 15 %, assets 10 %; see `compute_score`. Refreshed daily at 03:00 China Standard Time
  (`next_refresh_us`); major events (default, complaint) are re-evaluated "within 2 hours"
  (`MAJOR_EVENT_DELAY_US`).
* Risk tiers (三级风险防护): >= 2 defaults in one calendar month (CST) -> LIMITED (no high-value
  orders); > 500 yuan overdue -> FROZEN for 30 days; malicious evasion -> BLACKLISTED.
* Overdue escalation (提醒-协商-追偿): notice on day 1, negotiation on day 3, legal on day 7.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

SECOND_US = 1_000_000
HOUR_US = 3600 * SECOND_US
DAY_US = 24 * HOUR_US

# China Standard Time has had no daylight saving since 1991, so a fixed offset is exact.
CST = dt.timezone(dt.timedelta(hours=8), "CST")
_CST_OFFSET_US = 8 * HOUR_US

SCORE_MIN, SCORE_MAX = 300, 850
MIN_CLIENT_VERSION = (7, 0, 9)
MIN_AGE, MAX_AGE = 18, 65

# --- eligibility ---------------------------------------------------------------------------

NOT_REAL_NAME = "NOT_REAL_NAME"
NO_BANK_CARD_OR_FACE = "NO_BANK_CARD_OR_FACE"
CLIENT_TOO_OLD = "CLIENT_TOO_OLD"
UNDER_18 = "UNDER_18"
OVER_65 = "OVER_65"

REASON_TEXT = {
    NOT_REAL_NAME: "微信账号未完成实名认证",
    NO_BANK_CARD_OR_FACE: "未绑定银行卡或未通过人脸识别验证",
    CLIENT_TOO_OLD: "微信客户端版本低于7.0.9，需升级后使用",
    UNDER_18: "未满18周岁",
    OVER_65: "超过65周岁",
}


def parse_version(version: str) -> tuple[int, ...] | None:
    """'7.0.10' -> (7, 0, 10); None when unparseable (compared numerically, not as text)."""
    try:
        return tuple(int(part) for part in str(version).strip().split("."))
    except ValueError:
        return None


def client_supported(version: str) -> bool:
    parsed = parse_version(version)
    # An unreadable version string is treated as an old client: the safe direction to fail.
    return parsed is not None and parsed >= MIN_CLIENT_VERSION


def eligibility(user: Mapping[str, Any]) -> tuple[bool, str | None]:
    """(eligible, reason). Reasons are checked in the article's table order: account, client, age."""
    if not user["real_name"]:
        return False, NOT_REAL_NAME
    if not (user["bank_card"] and user["face_verified"]):
        return False, NO_BANK_CARD_OR_FACE
    if not client_supported(user["client_version"]):
        return False, CLIENT_TOO_OLD
    if user["age"] < MIN_AGE:
        return False, UNDER_18
    if user["age"] > MAX_AGE:
        return False, OVER_65
    return True, None


# --- risk tiers ----------------------------------------------------------------------------

NORMAL, LIMITED, FROZEN, BLACKLISTED = "NORMAL", "LIMITED", "FROZEN", "BLACKLISTED"

LIMIT_DEFAULTS_PER_MONTH = 2
# "限制高额信用订单": the article never says what "high" is. Its own example of a deposit the
# score waives tops out at 299 yuan (共享充电宝 "免除单笔最高299元的押金"), so a LIMITED user keeps
# orders up to exactly 299.00 yuan and is refused anything above.
HIGH_VALUE_LIMIT_FEN = 29900
FREEZE_OVERDUE_THRESHOLD_FEN = 50000  # strictly more than 500 yuan freezes (">500元")
FREEZE_DAYS = 30
FREEZE_US = FREEZE_DAYS * DAY_US


def cst_month_range_us(now_us: int) -> tuple[int, int]:
    """[start, end) of the CST calendar month containing now_us, in sandbox microseconds."""
    local = dt.datetime.fromtimestamp(now_us // SECOND_US, tz=CST)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else \
        start.replace(month=start.month + 1)
    return int(start.timestamp()) * SECOND_US, int(end.timestamp()) * SECOND_US


def defaults_this_month(default_times_us: Iterable[int], now_us: int) -> int:
    """How many of the given default instants fall in now's CST calendar month (up to now)."""
    start, _ = cst_month_range_us(now_us)
    return sum(1 for at in default_times_us if start <= at <= now_us)


def risk_tier(user: Mapping[str, Any], defaults_this_month: int, now_us: int) -> str:
    """The user's tier; the harshest applicable one wins."""
    if user["blacklisted"]:
        return BLACKLISTED
    frozen_until = user.get("frozen_until_us")
    if frozen_until is not None and frozen_until > now_us:
        return FROZEN
    if defaults_this_month >= LIMIT_DEFAULTS_PER_MONTH:
        return LIMITED
    return NORMAL


def should_freeze(user_overdue_fen: int) -> bool:
    return user_overdue_fen > FREEZE_OVERDUE_THRESHOLD_FEN


# --- create refusals -----------------------------------------------------------------------

# Wording and internal codes from the reference §3.3 (risk-control rejection at create). The
# HTTP status is undocumented there; the reference suggests 400 INVALID_REQUEST, which §4.3 also
# defines as "符合参数格式，但不符合业务规则". NO_AUTH (403) is not used: §4.3 defines it as
# "商户信息不合法", a merchant-side permission problem, while every refusal here is about the user.
MSG_RISK_REJECTED = "综合评估未通过"
MSG_OVERDUE_PENDING = "存在待处理的超时未支付订单"
INTERNAL_CODES = {MSG_RISK_REJECTED: "271300099", MSG_OVERDUE_PENDING: "271299627"}


class Refusal(NamedTuple):
    error_class: str  # a class name in sandbox.errors
    message: str
    internal_code: str  # the Request-ID suffix (§5.6)
    reason: str  # an eligibility reason or a risk tier, for logs and the dashboard


def refusal(user: Mapping[str, Any], defaults_this_month: int, amount_fen: int,
            now_us: int) -> Refusal | None:
    """Why this user may not get a new service order of amount_fen (risk_fund amount), if so."""
    ok, reason = eligibility(user)
    if not ok:
        # The real service tells the merchant nothing more specific than a failed assessment.
        return Refusal("InvalidRequest", MSG_RISK_REJECTED, INTERNAL_CODES[MSG_RISK_REJECTED],
                       str(reason))
    tier = risk_tier(user, defaults_this_month, now_us)
    if tier == FROZEN and user.get("overdue_fen", 0) > 0:
        # Frozen because of unpaid overdue money: WeChat names that cause explicitly.
        return Refusal("InvalidRequest", MSG_OVERDUE_PENDING, INTERNAL_CODES[MSG_OVERDUE_PENDING],
                       tier)
    if tier in (FROZEN, BLACKLISTED) or (tier == LIMITED and amount_fen > HIGH_VALUE_LIMIT_FEN):
        return Refusal("InvalidRequest", MSG_RISK_REJECTED, INTERNAL_CODES[MSG_RISK_REJECTED],
                       tier)
    return None


def create_refusal(user: Mapping[str, Any], defaults_this_month: int, amount_fen: int,
                   now_us: int) -> tuple[str, str] | None:
    """None if a new service order is allowed, else (sandbox.errors class name, message)."""
    found = refusal(user, defaults_this_month, amount_fen, now_us)
    return None if found is None else (found.error_class, found.message)


# --- score ---------------------------------------------------------------------------------

_SPAN = SCORE_MAX - SCORE_MIN  # 550 points shared by the four weighted dimensions
PAYMENT_MAX = 0.35 * _SPAN  # 192.5
ON_TIME_MAX = 0.40 * _SPAN  # 220
SOCIAL_MAX = 0.15 * _SPAN  # 82.5
ASSETS_MAX = 0.10 * _SPAN  # 55
PAYMENT_BONUS_ACTIVITY = 30  # "月均支付笔数≥30笔可获加分"
PAYMENT_BONUS_SHARE = 0.15  # the part of the payment dimension only reached at >= 30/month
POINTS_PER_ON_TIME_ORDER = 2  # "每笔信用订单按时还款积2分"
ON_TIME_CAP = int(ON_TIME_MAX // POINTS_PER_ON_TIME_ORDER)  # 110 orders fill the dimension
DEFAULT_PENALTY = 25
DEFAULT_PENALTY_MAX = 200
OVERDUE_FEN_PER_POINT = 1000  # one point per 10 yuan outstanding
OVERDUE_PENALTY_MAX = 150


def score_components(user: Mapping[str, Any]) -> dict[str, float]:
    """The signed contribution of each dimension, in score points (see compute_score)."""
    activity = max(0, int(user["payment_activity"]))
    base_share = 1.0 - PAYMENT_BONUS_SHARE
    payment = PAYMENT_MAX * (base_share * min(activity, PAYMENT_BONUS_ACTIVITY)
                             / PAYMENT_BONUS_ACTIVITY
                             + (PAYMENT_BONUS_SHARE if activity >= PAYMENT_BONUS_ACTIVITY else 0))
    on_time = POINTS_PER_ON_TIME_ORDER * min(max(0, int(user["on_time_orders"])), ON_TIME_CAP)
    social = SOCIAL_MAX * min(max(float(user["social"]), 0.0), 1.0)
    assets = ASSETS_MAX * min(max(float(user["assets"]), 0.0), 1.0)
    defaults = min(DEFAULT_PENALTY * max(0, int(user["defaults_total"])), DEFAULT_PENALTY_MAX)
    overdue = min(max(0, int(user["overdue_fen"])) / OVERDUE_FEN_PER_POINT, OVERDUE_PENALTY_MAX)
    return {"payment": payment, "on_time": on_time, "social": social, "assets": assets,
            "defaults": -float(defaults), "overdue": -overdue}


def compute_score(user: Mapping[str, Any]) -> int:
    """The weighted Pay Score model, deterministic and clamped to 300-850.

    The four weighted dimensions share the 550 points above the 300 floor in the article's
    proportions, so a user maxing all four scores exactly 850::

        payment  = 192.5 * (0.85 * min(payment_activity, 30) / 30 + 0.15 * [payment_activity >= 30])
        on_time  = 2 * min(on_time_orders, 110)            # 2 points per order paid on time, <= 220
        social   = 82.5 * social                           # social in 0..1
        assets   = 55 * assets                             # assets in 0..1; 1.0 = >= 50,000 yuan 零钱通
        penalty  = min(25 * defaults_total, 200) + min(overdue_fen / 1000, 150)
        score    = clamp(round_half_up(300 + payment + on_time + social + assets - penalty), 300, 850)
    """
    raw = SCORE_MIN + sum(score_components(user).values())
    return max(SCORE_MIN, min(SCORE_MAX, int(raw + 0.5)))


# --- timing --------------------------------------------------------------------------------

REFRESH_HOUR_CST = 3  # "每日凌晨3点的数据更新"
MAJOR_EVENT_WINDOW_US = 2 * HOUR_US  # "重大信用事件...会在2小时内触发评估"
# The simulated re-evaluation lands inside that window, late enough that a client which polls
# straight after a default still sees the old score, as it would in production.
MAJOR_EVENT_DELAY_US = HOUR_US + 45 * 60 * SECOND_US


def next_refresh_us(now_us: int) -> int:
    """The first 03:00 China Standard Time strictly after now_us."""
    refresh_offset = REFRESH_HOUR_CST * HOUR_US
    local = now_us + _CST_OFFSET_US
    latest = (local - refresh_offset) // DAY_US * DAY_US + refresh_offset  # <= local
    return latest + DAY_US - _CST_OFFSET_US


def major_event_due_us(event_us: int) -> int:
    """When a default or complaint at event_us gets its score re-evaluated."""
    return event_us + MAJOR_EVENT_DELAY_US


# --- events -> column updates ----------------------------------------------------------------

def on_paid_on_time(user: Mapping[str, Any]) -> dict[str, Any]:
    return {"on_time_orders": int(user["on_time_orders"]) + 1}


def on_default(user: Mapping[str, Any], amount_fen: int, now_us: int) -> dict[str, Any]:
    """A failed collection of amount_fen; freezes for 30 days once overdue passes 500 yuan."""
    overdue = int(user["overdue_fen"]) + amount_fen
    updates: dict[str, Any] = {"defaults_total": int(user["defaults_total"]) + 1,
                               "overdue_fen": overdue}
    if should_freeze(overdue):
        current = user.get("frozen_until_us")
        # Never shorten an existing freeze (e.g. a longer one set by an operator).
        updates["frozen_until_us"] = max(now_us + FREEZE_US, current or 0)
    return updates


def on_overdue_settled(user: Mapping[str, Any], amount_fen: int) -> dict[str, Any]:
    """The user paid amount_fen of overdue money; a running freeze still lasts its 30 days."""
    return {"overdue_fen": max(0, int(user["overdue_fen"]) - amount_fen)}


def on_malicious(user: Mapping[str, Any]) -> dict[str, Any]:
    return {"blacklisted": True}


# (days after the deduction first failed, stage, what happens) — "提醒-协商-追偿".
OVERDUE_STAGES = [
    (1, "NOTICE", "逾期首日发送微信消息通知"),
    (3, "NEGOTIATION", "第三日人工客服介入协商"),
    (7, "LEGAL", "第七日启动法律程序"),
]


def overdue_schedule(first_failed_us: int) -> list[tuple[int, str, str]]:
    """(due_us, stage, description) for every escalation stage of one failed deduction."""
    return [(first_failed_us + days * DAY_US, stage, text) for days, stage, text in OVERDUE_STAGES]


def overdue_stage(first_failed_us: int, now_us: int) -> tuple[int, str, str] | None:
    """The latest stage reached by now_us, or None before the first one."""
    reached = [s for s in OVERDUE_STAGES if now_us >= first_failed_us + s[0] * DAY_US]
    return reached[-1] if reached else None
