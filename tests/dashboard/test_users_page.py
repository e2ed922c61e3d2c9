"""The users page: looking a simulated user up and making them act on an order."""

from __future__ import annotations

import re

import pytest

from merchant_kit import protocol
from sandbox import db
from sandbox.live import LiveSandbox

from .support import a_user, confirm_as_user, expect, order_no, shot


@pytest.mark.browser
def test_looking_up_a_user_and_making_them_act(page, live, shop):
    openid = a_user(live)
    out_order_no = order_no("US")
    shop.create(out_order_no)
    confirm_as_user(live, shop, out_order_no, openid)
    page.goto(page.base + "#/users")
    page.locator("#user-lookup input[name=openid]").fill(openid)
    page.locator("#user-lookup button").click()
    detail = page.locator("#user-detail")
    expect(detail).to_contain_text(openid)
    expect(detail.locator("[data-field=risk_tier]")).to_contain_text(
        re.compile("NORMAL|LIMITED|FROZEN|BLACKLISTED"))
    expect(detail.locator("[data-field=eligible]")).to_contain_text("eligible")
    expect(detail.locator("tr", has_text=out_order_no)).to_contain_text("DOING")
    before = _user_column(live, openid, "fail_next_deductions")
    detail.locator("button.act-fail_next_deduction").click()
    expect(page.locator("#toast")).to_contain_text("fail_next_deduction done")
    expect(detail).to_contain_text(f"deductions set to fail: {before + 1}")
    assert _user_column(live, openid, "fail_next_deductions") == before + 1

    # the merchant completes; WeChat's deduction fails as armed; the user then pays by hand
    done = shop.request("POST", f"/v3/payscore/serviceorder/{out_order_no}/complete", {
        "appid": shop.m.appid, "service_id": shop.m.service_id, "total_amount": 3000,
        "post_payments": [{"name": "充电宝租借", "amount": 3000}],
        "time_range": {"end_time": protocol.payscore_time(live.sandbox.clock.now())}})
    assert done.status_code == 200, done.text
    row = detail.locator("tr", has_text=out_order_no)
    expect(row).to_contain_text("MCH_COMPLETE")
    row.locator("button.act-pay").click()
    expect(page.locator("#toast")).to_contain_text(f"pay on {out_order_no} done")
    expect(row).to_contain_text("DONE")
    shot(page, "users")


def _user_column(live: LiveSandbox, openid: str, column: str):
    with live.sandbox.engine.connect() as conn:
        row = conn.execute(db.users.select().where(db.users.c.openid == openid)).one()
    return getattr(row, column)
