"""The honest gates' statistics, checked against closed forms and published values."""

from __future__ import annotations

import math

import pytest

from loadtests.gates_math import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    beta_ppf,
    betainc,
    binom_cdf,
    clopper_pearson_lower,
    clopper_pearson_upper,
    conversion_gate,
    failure_rate_gate,
    flows_needed_for_clean_pass,
    wilson_interval,
)


def binom_cdf_by_sum(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("a", "b", "x"), [(1, 1, 0.3), (2, 5, 0.1), (0.5, 0.5, 0.5),
                                           (10, 3, 0.9), (3, 200, 0.004)])
def test_incomplete_beta_matches_binomial_identity(a, b, x):
    # For integer a, b: I_x(a, b) = P(Binomial(a+b-1, x) >= a).
    if a == int(a) and b == int(b):
        n = int(a + b - 1)
        expected = 1 - binom_cdf_by_sum(int(a) - 1, n, x)
        assert betainc(a, b, x) == pytest.approx(expected, rel=1e-10, abs=1e-14)
    else:  # I_x(1/2, 1/2) is the arcsine law: 2/pi * asin(sqrt(x))
        assert betainc(a, b, x) == pytest.approx(2 / math.pi * math.asin(math.sqrt(x)))


def test_beta_ppf_inverts_betainc():
    for a, b, q in [(2, 998, 0.95), (1, 30000, 0.05), (7, 3, 0.5)]:
        assert betainc(a, b, beta_ppf(q, a, b)) == pytest.approx(q, abs=1e-9)


def test_rule_of_three_for_zero_failures():
    assert clopper_pearson_upper(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert clopper_pearson_upper(0, 1000) == pytest.approx(3 / 1000, rel=0.01)
    assert flows_needed_for_clean_pass() == 29956  # "about 30,000 flows with no failure"
    assert clopper_pearson_upper(0, 29956) < 1e-4 <= clopper_pearson_upper(0, 29955)


def test_clopper_pearson_published_values():
    # 1 success in 10, two-sided 95 % exact interval: (0.0025, 0.4450) (Clopper & Pearson 1934).
    assert clopper_pearson_lower(1, 10, alpha=0.025) == pytest.approx(0.002529, abs=1e-6)
    assert clopper_pearson_upper(1, 10, alpha=0.025) == pytest.approx(0.445016, abs=1e-6)
    # The defining property of the upper bound: P(X <= k | n, upper) = alpha.
    for k, n in [(1, 1000), (5, 50_000), (30, 100)]:
        upper = clopper_pearson_upper(k, n)
        assert binom_cdf(k, n, upper) == pytest.approx(0.05, abs=1e-9)
        assert binom_cdf_by_sum(k, n, upper) == pytest.approx(0.05, abs=1e-7)


def test_wilson_published_value():
    # Wilson score interval for 81/263 (a textbook example): 0.2553 - 0.3662.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_failure_gate_never_passes_on_too_few_flows():
    gate = failure_rate_gate(0, 1000)
    assert gate.verdict == INCONCLUSIVE
    assert gate.more_needed == 29956 - 1000
    assert gate.bound == pytest.approx(0.002991, rel=1e-3)
    assert "more flows" in gate.explanation


def test_failure_gate_pass_and_fail():
    passed = failure_rate_gate(0, 40_000)
    assert passed.verdict == PASS and passed.bound < 1e-4 and passed.more_needed is None
    assert failure_rate_gate(3, 100).verdict == FAIL  # lower bound 0.8 % > 0.01 %
    one = failure_rate_gate(1, 1000)  # one failure: needs more clean flows than zero would
    assert one.verdict == INCONCLUSIVE and one.more_needed > failure_rate_gate(0, 1000).more_needed
    assert failure_rate_gate(1, 1000 + one.more_needed).verdict == PASS


def test_failure_gate_on_an_empty_run():
    gate = failure_rate_gate(0, 0)
    assert gate.verdict == INCONCLUSIVE and gate.upper == 1.0 and gate.more_needed == 29956


def test_conversion_gate_three_ways():
    assert conversion_gate(200, 1000).verdict == PASS
    assert conversion_gate(100, 1000).verdict == FAIL
    close = conversion_gate(155, 1000)
    assert close.verdict == INCONCLUSIVE and close.more_needed > 0
    grown = 1000 + close.more_needed
    assert conversion_gate(round(0.155 * grown), grown).verdict == PASS
    on_the_line = conversion_gate(150, 1000)
    assert on_the_line.verdict == INCONCLUSIVE and on_the_line.more_needed is None


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        failure_rate_gate(5, 3)
    with pytest.raises(ValueError):
        conversion_gate(-1, 10)
