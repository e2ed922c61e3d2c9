"""Which realistic bug each scenario catches: the reference merchant with one bug switch on
(`payscore merchant-demo --bug NAME`, merchant_kit/reference/bugs.py) fails the scenario.

A scenario that no broken merchant fails proves nothing; tests/test_scenarios_proof.py runs
each pair below and checks that every scenario id appears. Many bugs fail more scenarios than
the one listed here (no_reconciliation fails nine of them): this table names one bug per
scenario, the one the scenario exists to catch.
"""

from __future__ import annotations

EXPECTED_FAILURES: dict[int, str] = {
    1: "blind_retry_new_order_no",
    2: "blind_retry_new_order_no",
    3: "blind_retry_new_order_no",
    4: "trust_unsigned_replies",
    5: "no_backoff",
    6: "no_backoff",
    7: "no_backoff",
    8: "retry_business_errors",
    9: "strict_parsing",
    10: "trust_unsigned_replies",
    11: "trust_unsigned_replies",
    12: "no_callback_signature_check",
    13: "no_key_refresh",
    14: "certificate_only",
    15: "ack_unprocessable_callbacks",
    16: "no_callback_timestamp_check",
    17: "no_callback_timestamp_check",
    18: "no_dedupe",
    19: "in_memory_dedupe",
    20: "accept_out_of_order",
    21: "no_pay_sync_path",
    22: "no_reconciliation",
    23: "ignore_amount_mismatch",
    24: "complete_retry_loop",
    25: "no_expiry_release",
    26: "recomplete_on_lost_reply",
    27: "no_pay_sync_path",
    28: "no_deposit_fallback",
    29: "retry_business_errors",
    30: "no_breaker",
}

# Pairs whose failure depends on a race (concurrent copies meeting an in-memory "seen" set):
# the proof gives them a few runs and requires one failure.
RACY: dict[int, int] = {19: 3}
