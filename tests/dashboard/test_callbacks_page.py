"""Callbacks on the dashboard: a failed delivery re-delivered from its button, the failing
list with the merchant's answer, and merchant text (order fields, answers) shown as text only."""

from __future__ import annotations

import pytest

from .support import a_user, confirm_as_user, expect, order_no, order_pk, shot

# ------------------------------------------------------------------------------ callbacks


@pytest.mark.browser
def test_a_failed_callback_is_redelivered_from_the_button(page, live, shop, receiver):
    out_order_no = order_no("CB")
    shop.create(out_order_no, notify_url=receiver.url)
    page.goto(page.base + f"#/orders/{order_pk(live, out_order_no)}")
    # the simulated user confirms from the order page: USER_CONFIRM goes to a receiver at 500
    page.locator("#order-actions input[name=openid]").fill(a_user(live))
    page.locator("#order-actions button.act-confirm").click()
    expect(page.locator("#order-detail")).to_contain_text("DOING")
    callback = page.locator("li.tl.notification", has_text="PAYSCORE.USER_CONFIRM")
    attempts = callback.locator("tr.attempt-row")
    expect(attempts).to_have_count(1)
    expect(attempts.first).to_contain_text("500")
    expect(attempts.first).to_contain_text('{"code":"FAIL","message":"boom"}')
    expect(callback).to_contain_text("PENDING")
    expect(callback).to_contain_text("next retry")
    assert len(receiver.hits) == 1

    receiver.answer(204, b"")
    callback.get_by_role("button", name="Re-deliver").click()
    expect(page.locator("#toast")).to_contain_text("re-delivery of PAYSCORE.USER_CONFIRM")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1)).to_contain_text("204")
    expect(callback).to_contain_text("DELIVERED")
    assert len(receiver.hits) == 2
    shot(page, "order-timeline")

    page.goto(page.base + "#/notifications")
    row = page.locator("tr.notification-row", has_text=out_order_no)
    expect(row).to_contain_text("DELIVERED")
    expect(row).to_contain_text("204")
    page.get_by_role("link", name="Failing").click()
    expect(page.locator("tr.notification-row", has_text=out_order_no)).to_have_count(0)


@pytest.mark.browser
def test_failing_callbacks_are_listed_with_their_answer(page, live, shop, receiver):
    out_order_no = order_no("FL")
    shop.create(out_order_no, notify_url=receiver.url)
    receiver.answer(503, b"maintenance")
    confirm_as_user(live, shop, out_order_no, a_user(live))
    page.goto(page.base + "#/notifications?status=failing")
    row = page.locator("tr.notification-row", has_text=out_order_no)
    expect(row).to_contain_text("503")
    expect(row).to_contain_text("maintenance")
    expect(row).to_contain_text("PENDING")
    shot(page, "notifications")


# ------------------------------------------------------------------------------ escaping


XSS_ATTACH = ('<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
              '"><svg onload="window.__xss=3">')
XSS_INTRO = "<svg onload=xss()>"  # service_introduction is at most 20 characters
XSS_ANSWER = b'<img src=x onerror="window.__xss=4"><script>window.__xss=5</script>'


@pytest.mark.browser
def test_merchant_text_is_shown_as_text_and_never_runs(page, live, shop, receiver):
    out_order_no = order_no("XSS")
    shop.create(out_order_no, attach=XSS_ATTACH, service_introduction=XSS_INTRO,
                    notify_url=receiver.url)
    receiver.answer(500, XSS_ANSWER)
    confirm_as_user(live, shop, out_order_no, a_user(live))
    injected = page.locator("main img, main svg, main script")
    page.goto(page.base + "#/orders")
    row = page.locator("tr.order-row", has_text=out_order_no)
    expect(row.locator("td.merchant-text")).to_have_text(XSS_INTRO)
    assert injected.count() == 0
    page.goto(page.base + f"#/orders/{order_pk(live, out_order_no)}")
    expect(page.locator("dd[data-field=attach]")).to_have_text(XSS_ATTACH)
    expect(page.locator("dd[data-field=service_introduction]")).to_have_text(XSS_INTRO)
    expect(page.locator("tr.attempt-row td.answer")).to_have_text(XSS_ANSWER.decode())
    assert injected.count() == 0
    page.goto(page.base + "#/notifications")
    expect(page.locator("tr.notification-row", has_text=out_order_no)).to_contain_text(
        "<img src=x")
    # nothing the merchant wrote became an element, and no handler ran on any page
    assert injected.count() == 0
    assert page.evaluate("window.__xss") is None
