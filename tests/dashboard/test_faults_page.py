"""The faults page: armed faults with their scope, and arming and disarming one from the
catalogue."""

from __future__ import annotations

import pytest

from sandbox import db

from .support import expect, shot


@pytest.mark.browser
def test_armed_faults_are_listed_with_their_scope(page, live, shop):
    with db.write_tx(live.sandbox.engine) as conn:
        fault_id = conn.execute(db.faults.insert().values(
            effect="http_error", hook="before", params={"status": 500},
            mchid=shop.m.mchid, operation="query_service_order", remaining=3, taken=1,
            active=True, created_us=live.sandbox.clock.now_us(conn))).inserted_primary_key[0]
    page.goto(page.base + "#/faults")
    row = page.locator("tr.fault-row", has_text="http_error")
    expect(row).to_contain_text(f"mchid={shop.m.mchid}")
    expect(row).to_contain_text("operation=query_service_order")
    expect(row).to_contain_text("next 3 call(s)")
    expect(row).to_contain_text("armed")
    expect(row.locator("td").first).to_have_text(str(fault_id))
    shot(page, "faults")


@pytest.mark.browser
def test_arming_and_disarming_a_fault_from_the_catalogue(page, live, shop):
    page.goto(page.base + "#/faults")
    form = page.locator("#arm-form")
    form.locator("select[name=effect]").select_option("http_error")
    form.locator("select[name=operation]").select_option("query_service_order")
    form.locator("input[name=mchid]").fill(shop.m.mchid)
    form.locator("input[name=remaining]").fill("2")
    form.locator("#arm-fault").click()
    expect(page.locator("#toast")).to_contain_text("armed http_error")
    row = page.locator("tr.fault-row", has_text="operation=query_service_order").filter(
        has_text="next 2 call(s)")
    expect(row).to_contain_text("armed")
    fault_id = int(row.locator("td").first.text_content())
    with live.sandbox.engine.connect() as conn:
        armed = conn.execute(db.faults.select().where(db.faults.c.id == fault_id)).one()
    assert (armed.effect, armed.mchid, armed.remaining, armed.active) == (
        "http_error", shop.m.mchid, 2, True)
    row.get_by_role("button", name="Disarm").click()
    expect(page.locator("#toast")).to_contain_text(f"disarmed fault #{fault_id}")
    expect(row).to_contain_text("disarmed")
