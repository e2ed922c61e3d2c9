"""The --faults mix: parsing, reproducible seeds, and the arming calls it makes."""

from __future__ import annotations

import pytest

from loadtests.faults import FaultArmer, FaultMixError, fault_seed, parse_fault_mix
from merchant_kit import WechatPayError


def test_the_documented_mix():
    specs = parse_fault_mix("http_error:500@1%,reset_after_commit@0.5%,callback_duplicate@2%")
    assert [(s.effect, s.probability, s.params) for s in specs] == [
        ("http_error", pytest.approx(0.01), {"status": 500}),
        ("reset_after_commit", pytest.approx(0.005), {}),
        ("callback_duplicate", pytest.approx(0.02), {}),
    ]


def test_shorthands_key_values_and_fractions():
    specs = parse_fault_mix(" http_error:429:FREQUENCY_LIMITED@0.02 , delay:phase=before:"
                            "seconds=12.5@3%,callback_duplicate:3@10%")
    assert specs[0].params == {"status": 429, "code": "FREQUENCY_LIMITED"}
    assert specs[0].probability == pytest.approx(0.02)
    assert specs[1].params == {"phase": "before", "seconds": 12.5}
    assert specs[2].params == {"copies": 3}


@pytest.mark.parametrize("text", [
    "http_error:500", "http_error@", "@1%", "http_error@0%", "http_error@150%", "http_error@x%",
    "Http-Error@1%", "reset_after_commit:5@1%", "http_error:500@1%,,", "delay:Bad=1@1%",
])
def test_bad_mixes_are_refused_with_the_item(text):
    with pytest.raises(FaultMixError):
        parse_fault_mix(text)


def test_no_mix():
    assert parse_fault_mix(None) == [] and parse_fault_mix("  ") == []


def test_arming_body_is_scoped_and_seeded():
    spec = parse_fault_mix("http_error:500@1%")[0]
    body = spec.arming_body("1900000001", "load1234abcd", fault_seed(7, 0, spec))
    assert body == {"effect": "http_error", "params": {"status": 500}, "probability": 0.01,
                    "seed": fault_seed(7, 0, spec), "mchid": "1900000001",
                    "scenario_id": "load1234abcd"}
    assert fault_seed(7, 0, spec) == fault_seed(7, 0, spec) != fault_seed(8, 0, spec)


def test_armer_against_a_live_sandbox(payscore_sandbox):
    """Arms through POST /sandbox/faults, reports what was taken, and disarms the run only."""
    base, mchid = payscore_sandbox.base_url, payscore_sandbox.mchid
    armer = FaultArmer(base)
    other = armer.http.post(f"{base}/sandbox/faults", json={
        "effect": "http_error", "mchid": mchid, "scenario_id": "someone-else",
        "probability": 0.5}, timeout=10).json()
    armed = armer.arm(parse_fault_mix("http_error:500@100%,callback_duplicate@2%"), mchid,
                      "loadtest0001", run_seed=3)
    assert [a["answer"]["scope"]["mchid"] for a in armed] == [mchid, mchid]
    assert armed[0]["answer"]["params"]["status"] == 500
    # The armed 500 is taken by the merchant's next call.
    with pytest.raises(WechatPayError):
        payscore_sandbox.client.query_service_order(out_order_no="nope")
    taken = {f["effect"]: f["taken"] for f in armer.taken("loadtest0001")}
    assert taken["http_error"] >= 1
    assert armer.disarm("loadtest0001") == 2
    left = armer.http.get(f"{base}/sandbox/faults", params={"active": "true"}, timeout=10).json()
    assert [f["id"] for f in left["faults"]] == [other["id"]]


def test_arming_an_unknown_effect_fails_before_the_run(payscore_sandbox):
    armer = FaultArmer(payscore_sandbox.base_url)
    with pytest.raises(FaultMixError, match="refused"):
        armer.arm(parse_fault_mix("http_error@1%,no_such_effect@1%"), payscore_sandbox.mchid,
                  "loadtest0002", 1)
    assert armer.armed == []  # the first, valid one was disarmed again
