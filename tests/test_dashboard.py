"""The dashboard at /sandbox/ui/, driven as a person would: headless Chromium over real HTTP.

One live sandbox (frozen clock, so callback retries never fall due behind a test's back) and one
browser serve the module; every test makes its own orders. Screenshots land in docs/screenshots/.
The read API under the pages (/sandbox/api/) is tested in test_dashboard_api.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from merchant_kit import protocol
from sandbox import db
from sandbox.live import LiveSandbox
from sandbox.testing import TestMerchant, add_merchant

try:
    from playwright.sync_api import expect, sync_playwright
except ModuleNotFoundError:  # the browser fixture says so, loudly; the API tests still run
    expect = sync_playwright = None

ROOT = Path(__file__).resolve().parents[1]
# README screenshots are refreshed on request (PAYSCORE_SCREENSHOTS=1), so a test run never
# dirties the checkout; otherwise they still get taken, into the test's temp dir.
SHOTS = ROOT / "docs" / "screenshots" if os.environ.get("PAYSCORE_SCREENSHOTS") else None
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000  # the page polls every 2 s; a few polls at most


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    script = ROOT / "scripts" / "install-browser.sh"
    result = subprocess.run(["bash", str(script)], check=False, capture_output=True, text=True,
                            timeout=900)
    found = shutil.which("chromium")
    if not found:
        pytest.skip("BROWSER TESTS SKIPPED: chromium is missing and scripts/install-browser.sh "
                    f"could not install it (exit {result.returncode}): "
                    f"{(result.stderr or result.stdout)[-500:]}")
    return found


@pytest.fixture(scope="session")
def browser():
    if sync_playwright is None:
        pytest.skip("BROWSER TESTS SKIPPED: playwright is missing; pip install -e '.[test]'")
    executable = _chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Receiver:
    """A merchant's notify_url on loopback whose answer the test sets (status, body)."""

    def __init__(self) -> None:
        self.status, self.body = 500, b'{"code":"FAIL","message":"boom"}'
        self.hits: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.hits.append(self.rfile.read(int(self.headers["Content-Length"] or 0)))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HttpMerchant:
    """SignedClient's signing over real HTTP: what a merchant's integration sends."""

    def __init__(self, live: LiveSandbox, merchant: TestMerchant):
        self.live, self.m = live, merchant

    def request(self, method: str, path: str, body: dict | None = None,
                query: dict | None = None, timestamp: int | None = None) -> requests.Response:
        target = path + ("?" + urlencode(query) if query else "")
        data = b"" if body is None else json.dumps(body, ensure_ascii=False,
                                                   separators=(",", ":")).encode()
        now = self.live.sandbox.clock.now_s() if timestamp is None else timestamp
        auth = protocol.build_authorization(self.m.mchid, self.m.serial_no, self.m.private_key,
                                            method, target, data, now, protocol.make_nonce())
        headers = {"Authorization": auth, "Accept": "application/json",
                   "User-Agent": "dashboard-tests/1", "Content-Type": "application/json"}
        return requests.request(method, self.live.base_url + target, data=data,
                                headers=headers, timeout=10)

    def create(self, out_order_no: str, **overrides: object) -> requests.Response:
        body = {"out_order_no": out_order_no, "appid": self.m.appid,
                "service_id": self.m.service_id, "service_introduction": "充电宝租借",
                "time_range": {"start_time": "OnAccept"},
                "risk_fund": {"name": "ESTIMATE_ORDER_COST", "amount": 9900},
                "notify_url": "https://merchant.example/notify", "need_user_confirm": True,
                **overrides}
        answer = self.request("POST", "/v3/payscore/serviceorder", body)
        assert answer.status_code == 200, answer.text
        return answer


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = LiveSandbox(tmp_path_factory.mktemp("dashboard")).start()
    server.sandbox.clock.freeze()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shop(live) -> HttpMerchant:
    return HttpMerchant(live, add_merchant(live.app, base_url=live.base_url))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def page(browser, live):
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-US")
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.base = f"{live.base_url}/sandbox/ui/"  # type: ignore[attr-defined]
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _no(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def shot(page, name: str) -> None:
    folder = SHOTS or Path(tempfile.gettempdir()) / "payscore-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def order_pk(live: LiveSandbox, out_order_no: str) -> int:
    with live.sandbox.engine.connect() as conn:
        return conn.execute(db.orders.select().where(
            db.orders.c.out_order_no == out_order_no)).one().pk


def a_user(live: LiveSandbox) -> str:
    answer = requests.get(f"{live.base_url}/sandbox/api/users", params={"limit": 1}, timeout=10)
    users = answer.json()["users"]
    if not users:
        requests.post(f"{live.base_url}/sandbox/users/seed", json={"count": 5}, timeout=30)
        users = requests.get(f"{live.base_url}/sandbox/api/users", timeout=10).json()["users"]
    return users[0]["openid"]


# ------------------------------------------------------------------------------ orders


@pytest.mark.browser
def test_orders_page_shows_a_new_order_live_and_opens_its_timeline(page, live, shop):
    page.goto(page.base + "#/orders")
    expect(page.locator("#orders-table, .empty").first).to_be_visible()
    out_order_no = _no("DASH")
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
    prefix = _no("PG")
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


# ------------------------------------------------------------------------------ callbacks


def confirm_as_user(live: LiveSandbox, shop: HttpMerchant, out_order_no: str,
                    openid: str) -> None:
    answer = requests.post(f"{live.base_url}/sandbox/users/{openid}/act", timeout=10, json={
        "action": "confirm", "mchid": shop.m.mchid, "out_order_no": out_order_no})
    assert answer.status_code == 200, answer.text


@pytest.mark.browser
def test_a_failed_callback_is_redelivered_from_the_button(page, live, shop, receiver):
    out_order_no = _no("CB")
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
    out_order_no = _no("FL")
    shop.create(out_order_no, notify_url=receiver.url)
    receiver.answer(503, b"maintenance")
    confirm_as_user(live, shop, out_order_no, a_user(live))
    page.goto(page.base + "#/notifications?status=failing")
    row = page.locator("tr.notification-row", has_text=out_order_no)
    expect(row).to_contain_text("503")
    expect(row).to_contain_text("maintenance")
    expect(row).to_contain_text("PENDING")
    shot(page, "notifications")


# ------------------------------------------------------------------------------ requests


@pytest.mark.browser
def test_rejected_signatures_are_explained(page, live, shop):
    out_order_no = _no("SK")
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


# ------------------------------------------------------------------------------ users


@pytest.mark.browser
def test_looking_up_a_user_and_making_them_act(page, live, shop):
    openid = a_user(live)
    out_order_no = _no("US")
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


# ------------------------------------------------------------------------------ escaping


XSS_ATTACH = ('<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
              '"><svg onload="window.__xss=3">')
XSS_INTRO = "<svg onload=xss()>"  # service_introduction is at most 20 characters
XSS_ANSWER = b'<img src=x onerror="window.__xss=4"><script>window.__xss=5</script>'


@pytest.mark.browser
def test_merchant_text_is_shown_as_text_and_never_runs(page, live, shop, receiver):
    out_order_no = _no("XSS")
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


# ------------------------------------------------------------------------------ faults


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
    served = {(rule.rule, method) for rule in live.app.url_map.iter_rules()
              for method in rule.methods or ()}
    if ("/sandbox/faults", "POST") not in served:
        pytest.skip("the faults control API (POST/DELETE /sandbox/faults) is not served yet")
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
