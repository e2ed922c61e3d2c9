"""The flow judge: one pure function decides what a failed flow is, for every run kind."""

from __future__ import annotations

import pytest

from loadtests import judge
from loadtests.judge import FlowEvidence, FlowRecord, MerchantView, ProviderOrder

PAID_ORDER = ProviderOrder("R1", "DONE", None, "USER_PAID", 500, 500, 1)
AWAITING = ProviderOrder("R1", "DOING", "MCH_COMPLETE", "USER_PAYING", 500, 0, 0)


def flow(**kw) -> FlowRecord:
    base = {"flow_id": "f1", "target": "driver", "amount": 500, "rental_id": "1",
            "out_order_no": "R1"}
    return FlowRecord(**{**base, **kw})


def view(state: str, **kw) -> MerchantView:
    return MerchantView(state, **{"out_order_no": "R1", "charged": 500, **kw})


def test_a_clean_paid_rental_passes():
    verdict = judge.judge_flow(flow(), FlowEvidence(view("PAID"), (PAID_ORDER,)))
    assert verdict.ok and verdict.category is None and verdict.final_state == "PAID"


@pytest.mark.parametrize(("evidence", "category"), [
    (FlowEvidence(view("PAID"), (), missing_order=True), "lost"),
    (FlowEvidence(view("PAID"), (PAID_ORDER, ProviderOrder("R2", "CREATED"))), "duplicated"),
    (FlowEvidence(view("PAID", charged=1000),
                  (ProviderOrder("R1", "DONE", None, "USER_PAID", 500, 1000, 2),)),
     "billed_twice"),
    (FlowEvidence(view("PAID"), (AWAITING,)), "wrong_state"),  # merchant believes a lie
    (FlowEvidence(view("AWAITING_PAYMENT", charged=0), (PAID_ORDER,)), "stuck"),
    (FlowEvidence(view("UNKNOWN", charged=0), (AWAITING,)), "stuck"),
    (FlowEvidence(view("CANCELLED", charged=0, device_released=False),
                  (ProviderOrder("R1", "REVOKED"),)), "wrong_state"),
    (FlowEvidence(view("SOMETHING_ELSE"), (PAID_ORDER,)), "stuck"),
])
def test_each_failure_category(evidence, category):
    verdict = judge.judge_flow(flow(), evidence)
    assert not verdict.ok
    assert category in {reason.split(":")[0] for reason in verdict.reasons}


def test_the_first_category_in_severity_order_is_reported():
    verdict = judge.judge_flow(flow(errors=["driver_finish: 500"]),
                               FlowEvidence(view("PAID"), (PAID_ORDER, PAID_ORDER)))
    assert verdict.category == "error"
    assert [r.split(":")[0] for r in verdict.reasons][:3] == ["error", "duplicated",
                                                              "billed_twice"]


def test_http_failures_survived_are_not_flow_failures():
    verdict = judge.judge_flow(flow(http_failures=3), FlowEvidence(view("PAID"), (PAID_ORDER,)))
    assert verdict.ok


def test_expected_states_follow_the_user():
    cannot = flow(expected=("AWAITING_PAYMENT",))
    assert judge.judge_flow(cannot, FlowEvidence(view("AWAITING_PAYMENT", charged=0),
                                                 (AWAITING,))).ok
    # The same end for a user who pays is a stuck flow, not a success.
    assert judge.judge_flow(flow(), FlowEvidence(view("AWAITING_PAYMENT", charged=0),
                                                 (AWAITING,))).category == "stuck"
    fallback = flow(expected=("DEPOSIT_FALLBACK",), out_order_no=None)
    assert judge.judge_flow(fallback, FlowEvidence(view("DEPOSIT_FALLBACK", out_order_no=None,
                                                        charged=0))).ok
    assert judge.judge_flow(fallback, FlowEvidence(view("PAID"), (PAID_ORDER,))).category \
        == "wrong_state"


def test_deposit_fallback_must_not_leave_an_open_order():
    verdict = judge.judge_flow(
        flow(expected=("DEPOSIT_FALLBACK",)),
        FlowEvidence(view("DEPOSIT_FALLBACK", out_order_no=None, charged=0),
                     (ProviderOrder("R1", "CREATED"),)))
    assert verdict.category == "wrong_state" and "still open" in verdict.reasons[0]


def test_sandbox_target_judges_the_provider_order_and_callbacks():
    mine = flow(target="sandbox", rental_id=None)
    assert judge.judge_flow(mine, FlowEvidence(None, (PAID_ORDER,), callbacks=frozenset(
        {"PAYSCORE.USER_CONFIRM", "PAYSCORE.USER_PAID"}))).ok
    missing = judge.judge_flow(mine, FlowEvidence(None, (PAID_ORDER,), callbacks=frozenset(
        {"PAYSCORE.USER_CONFIRM"})))
    assert missing.category == "wrong_state" and "USER_PAID" in missing.reasons[0]
    assert judge.judge_flow(mine, FlowEvidence(None, (), missing_order=True)).category == "lost"


def test_provider_triples_map_to_the_driver_vocabulary():
    assert judge.merchant_state_for("CREATED") == "PENDING_CONFIRM"
    assert judge.merchant_state_for("DOING", "USER_CONFIRM") == "IN_SERVICE"
    assert judge.merchant_state_for("DOING", "MCH_COMPLETE", "USER_PAYING") == "AWAITING_PAYMENT"
    assert judge.merchant_state_for("DONE", "MCH_COMPLETE", "USER_PAID") == "PAID"
    assert judge.merchant_state_for("REVOKED") == "CANCELLED"
    assert judge.merchant_state_for("DOING", "SOMETHING_NEW") == "UNKNOWN"
    assert set(judge.FINAL_STATES) < set(judge.MERCHANT_STATES)


def test_tally_keeps_interrupted_flows_apart():
    flows = [flow(flow_id="a"), flow(flow_id="b", interrupted=True), flow(flow_id="c",
                                                                          http_failures=2)]
    verdicts = {"a": judge.judge_flow(flows[0], FlowEvidence(view("PAID"), (PAID_ORDER,))),
                "c": judge.judge_flow(flows[2], FlowEvidence(view("UNKNOWN"), ()))}
    tally = judge.tally(flows, verdicts)
    assert (tally.flows, tally.failed, tally.interrupted, tally.http_failures) == (2, 1, 1, 2)
    assert tally.by_category == {"stuck": 1} and tally.examples[0]["flow_id"] == "c"


def test_records_round_trip_and_orphans():
    record = flow(seen_states=["PENDING_CONFIRM"], expected=("PAID", "AWAITING_PAYMENT"))
    assert FlowRecord.from_dict(record.to_dict()) == record
    assert judge.orphan_orders(["R1", "R2"], ["R1", "R2", "R9"]) == ["R9"]
