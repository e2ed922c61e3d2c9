"""The orders page (live list, filters, paging, the timeline), the requests page explaining a
rejected signature, and the clock in the header."""

from __future__ import annotations

import re

import pytest

from sandbox.testing import add_merchant

from .support import HttpMerchant, expect, order_no, order_pk, shot

# ------------------------------------------------------------------------------ orders


@pytest.mark.browser
def test_orders_page_shows_a_new_order_live_and_opens_its_timeline(page, live, shop):
    page.goto(page.base + "#/orders")
    expect(page.locator("#orders-table, .empty").first).to_be_visible()
    out_order_no = order_no("DASH")
    shop.create(out_order_no)  # after the page loaded: it must appear without a reload
    row = page.locator("tr.order-row", has_text=out_order_no)
    expect(row).to_be_visible()
    expect(row).to_contain_text("CREATED")
    expect(row).to_contain_text("充电宝租借")
    expect(page.locator("#clock-now")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:"))

    row.get_by_role("link", name=out_order_no).click()
    expect(page).to_have_url(re.compile(rf"#/orders/{order_pk(live, out_order_no)}$"))
    expect(page.locator("#order-detail")).to_contain_text(out_order_no)
    create = page.locator("li.tl.request", has_text="POST /v3/payscore/serviceorder")
    expect(create).to_contain_text("200")
    expect(create).to_contain_text("signature ok")
    expect(page.locator("li.tl.state").first).to_contain_text("CREATED")


@pytest.mark.browser
def test_filters_narrow_the_list_and_pages_walk_through_it(page, live):
    own = HttpMerchant(live, add_merchant(live.app, base_url=live.base_url))  # alone in its list
    prefix = order_no("PG")
    for i in range(3):
        own.create(f"{prefix}{i}")
    page.goto(page.base + f"#/orders?mchid={own.m.mchid}&state=EXPIRED")
    expect(page.locator("#orders-table")).to_contain_text("No orders match")
    expect(page.locator(".summary")).to_have_text("0 orders match")

    page.goto(page.base + f"#/orders?mchid={own.m.mchid}&limit=1")
    rows = page.locator("tr.order-row")
    expect(page.locator(".summary")).to_have_text("3 orders match")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(f"{prefix}2")  # newest first
    older, newer = page.locator("button.older"), page.locator("button.newer")
    expect(newer).to_be_disabled()
    older.click()
    expect(rows).to_contain_text(f"{prefix}1")
    older.click()
    expect(rows).to_contain_text(f"{prefix}0")
    expect(older).to_be_disabled()
    newer.click()
    expect(rows).to_contain_text(f"{prefix}1")

    page.locator("#order-filters select[name=state]").select_option("CREATED")
    expect(page).to_have_url(re.compile(r"state=CREATED"))
    expect(rows.first).to_contain_text("CREATED")


# ------------------------------------------------------------------------------ requests


@pytest.mark.browser
def test_rejected_signatures_are_explained(page, live, shop):
    out_order_no = order_no("SK")
    stale = live.sandbox.clock.now_s() - 900
    body = {"out_order_no": out_order_no, "appid": shop.m.appid,
            "service_id": shop.m.service_id}
    assert shop.request("POST", "/v3/payscore/serviceorder", body,
                            timestamp=stale).status_code == 401
    page.goto(page.base + "#/requests?failed=true")
    row = page.locator("tr.request-row", has_text=out_order_no)
    expect(row).to_contain_text("401")
    expect(row).to_contain_text("signature rejected: stale")
    expect(row.locator(".explanation")).to_contain_text("900 s behind the sandbox clock")
    expect(row.locator(".explanation")).to_contain_text("GET /sandbox/clock")
    expect(row).to_contain_text(shop.m.mchid)  # the merchant the request claimed to be
    shot(page, "requests")


# ------------------------------------------------------------------------------ clock


@pytest.mark.browser
def test_advancing_the_clock_from_the_header(page, live):
    page.goto(page.base + "#/orders")
    shown = page.locator("#clock-now")
    expect(shown).not_to_have_text("—")
    before_us = live.sandbox.clock.now_us()
    before_text = shown.text_content()
    page.locator("#clock-by").fill("2h")
    page.locator("#clock-advance").click()
    expect(page.locator("#toast")).to_contain_text("clock advanced by 2h")
    assert live.sandbox.clock.now_us() - before_us == 2 * 3600 * 1_000_000
    expect(shown).not_to_have_text(before_text)
    hour = int(before_text[11:13])
    expect(shown).to_contain_text(f" {(hour + 2) % 24:02d}:")
    expect(page.locator("#clock-note")).to_contain_text("frozen")
    shot(page, "orders")  # by now earlier tests left orders in several states
    page.locator("#clock-by").fill("soon")
    page.locator("#clock-advance").click()
    expect(page.locator("#toast")).to_contain_text("not a duration")
