"""The `payscore_sandbox` fixture, used exactly as a merchant's own suite would use it."""

from __future__ import annotations

from merchant_kit import CompleteServiceOrderRequest, CreateServiceOrderRequest, Payment, RiskFund
from merchant_kit.models import TimeRange
from merchant_kit.protocol import payscore_time


def test_fixture_gives_a_ready_client_and_world_helpers(payscore_sandbox):
    client = payscore_sandbox.client
    payscore_sandbox.freeze()
    order = client.create_service_order(CreateServiceOrderRequest(
        out_order_no="PLUGIN1", service_introduction="充电宝租借",
        time_range=TimeRange(start_time="OnAccept"),
        risk_fund=RiskFund(name="ESTIMATE_ORDER_COST", amount=9900),
        notify_url=f"{payscore_sandbox.base_url}/nowhere", openid="o_plugin_user"))
    assert order.state == "CREATED"

    confirmed = payscore_sandbox.confirm("PLUGIN1")
    assert (confirmed["state"], confirmed["state_description"]) == ("DOING", "USER_CONFIRM")

    payscore_sandbox.advance("10m")
    end = payscore_time(payscore_sandbox.sandbox.clock.now())
    done = client.complete_service_order("PLUGIN1", CompleteServiceOrderRequest(
        post_payments=[Payment(name="租金", amount=300)], total_amount=300,
        time_range=TimeRange(end_time=end)))
    assert done.state_description == "MCH_COMPLETE"

    paid = payscore_sandbox.pay("PLUGIN1")
    assert paid["collection"]["state"] == "USER_PAID"
    sent = {n["event_type"] for n in payscore_sandbox.notifications()}
    assert {"PAYSCORE.USER_CONFIRM", "PAYSCORE.USER_PAID"} <= sent
