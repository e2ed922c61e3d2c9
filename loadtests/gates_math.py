"""Honest gates: confidence bounds for the onboarding thresholds, in pure Python.

WeChat's gates are a flow failure rate below 0.01 % and a gray-release conversion of at least
15 %. An observed rate proves neither: 0 failures in 1,000 flows is consistent with a true
failure rate of 0.3 %. So a gate passes only when a 95 % confidence bound clears the threshold,
fails when the opposite bound is on the wrong side, and is otherwise "inconclusive" with the
sample still needed.

* Failure rate: one-sided exact (Clopper-Pearson) bounds. Upper bound for k failures in n flows
  is the p with P(X <= k | n, p) = alpha, i.e. the Beta(k+1, n-k) quantile at 1 - alpha; for
  k = 0 that is 1 - alpha**(1/n), about 3/n (the "rule of three"), so about 29,956 clean flows
  are needed to show < 0.01 %.
* Conversion: two-sided 95 % Wilson score interval against 15 %.

No scipy: the regularized incomplete beta function is evaluated with Lentz's continued fraction
(math.lgamma for the prefactor) and inverted by bisection, which is monotone and exact to 1e-12.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
FAILURE_RATE_THRESHOLD = 0.0001  # 0.01 %
CONVERSION_THRESHOLD = 0.15
ALPHA = 0.05
Z95 = 1.959963984540054  # two-sided 95 % normal quantile
_MAX_N = 10**12


# ------------------------------------------------------------------ incomplete beta


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction for I_x(a, b) (modified Lentz), valid for x < (a+1)/(a+b+2)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError("a and b must be positive")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The x with I_x(a, b) = q, by bisection (I is increasing in x)."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be in [0, 1]")
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return (lo + hi) / 2


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), as 1 - I_p(k+1, n-k)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return 1.0 - betainc(k + 1, n - k, p)


# ------------------------------------------------------------------ bounds


def clopper_pearson_upper(k: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided (1 - alpha) exact upper bound of a binomial proportion."""
    _check(k, n)
    if n == 0 or k >= n:
        return 1.0
    if k == 0:
        return 1.0 - alpha ** (1.0 / n)
    return beta_ppf(1.0 - alpha, k + 1, n - k)


def clopper_pearson_lower(k: int, n: int, alpha: float = ALPHA) -> float:
    """One-sided (1 - alpha) exact lower bound of a binomial proportion."""
    _check(k, n)
    if n == 0 or k == 0:
        return 0.0
    if k >= n:
        return alpha ** (1.0 / n)
    return beta_ppf(alpha, k, n - k + 1)


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Two-sided Wilson score interval (95 % by default)."""
    _check(k, n)
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _check(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n (k={k}, n={n})")


def _smallest_n(ok, start: int) -> int | None:
    """Smallest n >= start with ok(n) true, assuming ok is monotone; None if beyond _MAX_N."""
    if ok(start):
        return start
    lo, hi = start, max(start * 2, 16)
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > _MAX_N:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


# ------------------------------------------------------------------ gates


@dataclass(frozen=True)
class GateResult:
    gate: str
    verdict: str  # pass | fail | inconclusive
    observed: float
    bound: float  # the bound the verdict rests on
    bound_kind: str  # "95% upper" / "95% lower" / "95% interval"
    lower: float
    upper: float
    successes_or_failures: int
    sample: int
    threshold: float
    more_needed: int | None  # extra sample for a decision, None when decided or undecidable
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failure_rate_gate(failures: int, flows: int, threshold: float = FAILURE_RATE_THRESHOLD,
                      alpha: float = ALPHA) -> GateResult:
    """Pass only when the one-sided 95 % upper bound is below the threshold.

    Fail when the one-sided 95 % lower bound is above it (the integration demonstrably fails
    too often). Otherwise inconclusive; `more_needed` is how many more flows would pass the gate
    if none of them failed (a floor: any further failure raises it).
    """
    _check(failures, flows)
    observed = failures / flows if flows else 0.0
    upper = clopper_pearson_upper(failures, flows, alpha)
    lower = clopper_pearson_lower(failures, flows, alpha)
    common = {"gate": "failure_rate", "observed": observed, "lower": lower, "upper": upper,
                  "successes_or_failures": failures, "sample": flows, "threshold": threshold}
    if flows and upper < threshold:
        return GateResult(verdict=PASS, bound=upper, bound_kind="95% upper", more_needed=None,
                          explanation=f"95% upper bound {_pct(upper)} < {_pct(threshold)}",
                          **common)
    if lower > threshold:
        return GateResult(verdict=FAIL, bound=lower, bound_kind="95% lower", more_needed=None,
                          explanation=f"even the 95% lower bound {_pct(lower)} is above "
                                      f"{_pct(threshold)}", **common)
    total = _smallest_n(lambda n: clopper_pearson_upper(failures, n, alpha) < threshold,
                        max(flows, failures + 1))
    more = None if total is None else total - flows
    return GateResult(verdict=INCONCLUSIVE, bound=upper, bound_kind="95% upper",
                      more_needed=more,
                      explanation=f"95% upper bound {_pct(upper)} is not below "
                                  f"{_pct(threshold)}; at least {more:,} more flows without a "
                                  f"failure are needed" if more is not None else
                                  "too many failures to ever pass at this rate", **common)


def conversion_gate(converted: int, sampled: int, threshold: float = CONVERSION_THRESHOLD,
                    z: float = Z95) -> GateResult:
    """Pass if the Wilson lower bound >= threshold, fail if the upper bound < threshold."""
    _check(converted, sampled)
    observed = converted / sampled if sampled else 0.0
    lower, upper = wilson_interval(converted, sampled, z)
    common = {"gate": "conversion", "observed": observed, "lower": lower, "upper": upper,
                  "successes_or_failures": converted, "sample": sampled, "threshold": threshold}
    if sampled and lower >= threshold:
        return GateResult(verdict=PASS, bound=lower, bound_kind="95% lower", more_needed=None,
                          explanation=f"95% lower bound {_pct(lower)} >= {_pct(threshold)}",
                          **common)
    if sampled and upper < threshold:
        return GateResult(verdict=FAIL, bound=upper, bound_kind="95% upper", more_needed=None,
                          explanation=f"95% upper bound {_pct(upper)} < {_pct(threshold)}",
                          **common)
    more = _conversion_sample_needed(observed, sampled, threshold, z)
    text = (f"95% interval [{_pct(lower)}, {_pct(upper)}] contains {_pct(threshold)}; "
            + (f"about {more:,} more users at the observed rate would decide it"
               if more is not None else "the observed rate sits on the threshold"))
    return GateResult(verdict=INCONCLUSIVE, bound=lower, bound_kind="95% interval",
                      more_needed=more, explanation=text, **common)


def _conversion_sample_needed(p: float, sampled: int, threshold: float, z: float) -> int | None:
    """Extra users needed, if the observed rate held, for the interval to exclude threshold."""
    if sampled == 0 or p == threshold:
        return None

    def decided(n: int) -> bool:
        lo, hi = wilson_interval(round(p * n), n, z)
        return lo >= threshold if p > threshold else hi < threshold

    total = _smallest_n(decided, sampled + 1)
    return None if total is None else total - sampled


def _pct(value: float) -> str:
    if value < 0.001:
        return f"{value * 100:.4f}%"
    return f"{value * 100:.2f}%"


def flows_needed_for_clean_pass(threshold: float = FAILURE_RATE_THRESHOLD,
                                alpha: float = ALPHA) -> int:
    """Flows without a single failure needed to pass (29,956 for 0.01 % at 95 %)."""
    return math.ceil(math.log(alpha) / math.log1p(-threshold) + 1e-9)
