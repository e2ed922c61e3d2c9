"""Callback retries (reference §6.5): the schedule, counted from the first attempt on the
sandbox clock; what counts as a failed attempt; the end of the schedule.

Business time is the frozen sandbox clock, moved with `shift` and followed by a synchronous
`drain`; only the timeout test waits, for a slow merchant on wall time.
"""

from __future__ import annotations

import json

import pytest
from callbacks_support import GENERIC, T0, Receiver, S, attempts_of, enqueue, row_of

from loadtests.runner import free_port
from sandbox.callbacks import outbox
from sandbox.callbacks.dispatcher import dispatcher_of
from sandbox.testing import add_merchant, make_sandbox


def test_retries_follow_the_schedule_and_stop_at_the_first_2xx(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver(script=[500, 404, 204], default=200) as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        d.drain()
        assert row_of(sb, nid).next_attempt_us == T0 + 15 * S
        sb.clock.shift(14 * S)
        assert d.drain()["attempts"] == 0  # not due yet: no real waiting, no early retry
        sb.clock.shift(1 * S)
        assert d.drain() == {"attempts": 1, "delivered": 0, "pending": 1, "failed": 0,
                             "held": 0, "still_due": 0}
        assert row_of(sb, nid).next_attempt_us == T0 + 30 * S
        sb.clock.shift(15 * S)
        assert d.drain()["delivered"] == 1
        sb.clock.shift(86400 * S)
        assert d.drain()["attempts"] == 0
    assert [r["status"] for r in rx.requests] == [500, 404, 204]
    assert {json.loads(r["body"])["id"] for r in rx.requests} == {nid}
    assert len({r["headers"]["Wechatpay-Nonce"] for r in rx.requests}) == 3  # fresh envelopes
    assert [r["headers"]["Wechatpay-Timestamp"] for r in rx.requests] == \
        [str(T0 // S), str(T0 // S + 15), str(T0 // S + 30)]
    rows = attempts_of(sb, nid)
    assert [(a.at_us, a.status_code) for a in rows] == \
        [(T0, 500), (T0 + 15 * S, 404), (T0 + 30 * S, 204)]
    assert row_of(sb, nid).status == "DELIVERED" and row_of(sb, nid).attempts == 3


def test_fifteen_retries_then_failed(cb):
    sb, m, d = cb.sb, cb.m, cb.d
    with Receiver(default=500) as rx:
        nid = enqueue(sb, m.mchid, rx.url)
        d.drain()
        for gap in GENERIC:
            assert row_of(sb, nid).status == "PENDING"
            sb.clock.shift(gap)
            assert d.drain()["attempts"] == 1
        sb.clock.shift(7 * 86400 * S)
        assert d.drain()["attempts"] == 0
    assert len(rx.requests) == 16
    row = row_of(sb, nid)
    assert (row.status, row.attempts, row.next_attempt_us) == ("FAILED", 16, None)
    expected, at = [T0], T0
    for gap in GENERIC:
        at += gap
        expected.append(at)
    assert [a.at_us for a in attempts_of(sb, nid)] == expected
    assert expected[-1] - T0 == (24 * 3600 + 4 * 60) * S  # 24 h 4 m in all (§6.5)


def test_payscore_schedule_is_configurable_and_counted_from_the_first_attempt(tmp_path):
    app = make_sandbox(tmp_path, CALLBACK_RETRY_SCHEDULE="payscore")
    sb = app.extensions["payscore"]
    sb.clock.freeze(T0)
    m = add_merchant(app)
    d = dispatcher_of(sb)
    try:
        with Receiver(default=503) as rx:
            nid = enqueue(sb, m.mchid, rx.url)
            d.drain()
            sb.clock.shift(4 * 3600 * S)  # one jump past every retry (3 h 4 m): all overdue
            counts = d.drain()
        assert counts["failed"] == 1 and counts["attempts"] == 9
        assert len(rx.requests) == 10 and row_of(sb, nid).status == "FAILED"
    finally:
        sb.extras["stop_services"]()


def test_parse_schedule_variants():
    assert outbox.parse_schedule(None) == GENERIC and len(GENERIC) == 15
    assert [g // S for g in outbox.parse_schedule("payscore")] == \
        [15, 15, 30, 180, 1800, 1800, 1800, 1800, 3600]
    assert outbox.parse_schedule("15s, 3m,1h") == (15 * S, 180 * S, 3600 * S)
    assert outbox.parse_schedule([1, "2m", 0.5]) == (S, 120 * S, S // 2)
    with pytest.raises(ValueError):
        outbox.parse_schedule([0])
    with pytest.raises(ValueError):
        outbox.parse_schedule("soon")


def test_timeout_and_connection_refused_are_failed_attempts(cb):
    sb, m, d = cb.sb, cb.m, cb.d  # CALLBACK_TIMEOUT_S=1.0 for this fixture
    with Receiver(delays=[1.3], default=200) as rx:
        slow = enqueue(sb, m.mchid, rx.url)
        refused = enqueue(sb, m.mchid, f"http://127.0.0.1:{free_port()}/notify")
        d.drain()
        first_slow, first_refused = attempts_of(sb, slow)[0], attempts_of(sb, refused)[0]
        assert first_slow.status_code is None and "timeout" in first_slow.error
        assert first_slow.latency_ms >= 1000
        assert first_refused.status_code is None and "ConnectionError" in first_refused.error
        for nid in (slow, refused):
            assert (row_of(sb, nid).status, row_of(sb, nid).next_attempt_us) == \
                ("PENDING", T0 + 15 * S)
        sb.clock.shift(15 * S)
        d.drain()
    assert row_of(sb, slow).status == "DELIVERED"
    assert row_of(sb, refused).status == "PENDING" and row_of(sb, refused).attempts == 2
