"""`payscore demo`: a first look. A sandbox and the reference merchant, four rentals through
their whole life, and the timeline of each, printed.

Everything runs in this process on free loopback ports with a temporary data dir: the sandbox
(sandbox.live.LiveSandbox, with its callback dispatcher and simulated world) and the reference
merchant (merchant_kit.reference.LiveMerchant, following the sandbox clock). The rentals are
driven exactly as the scenario runner drives any merchant: through the merchant's driver API,
with the sandbox's control API playing the users and moving time. The timelines merge the
sandbox's view of each order (requests with verdicts, state changes, callbacks with the
merchant's answers) with the merchant's own audit log.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import requests
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

CST = dt.timezone(dt.timedelta(hours=8))
WAIT_S = 15.0  # wall-time bound on waiting for a callback's effect (delivery is asynchronous)
DEPOSIT = 9900


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary data dir (databases, keys).")
def demo(keep: bool) -> None:
    """Start a sandbox and the reference merchant, run four rentals, print their timelines."""
    console = Console()
    started = time.monotonic()
    stories = run_demo(console, keep=keep)
    console.print(summary_table(stories))
    console.print(f"[dim]done in {time.monotonic() - started:.1f} s[/]")


@dataclass
class Story:
    label: str
    title: str
    rental_id: str
    expect: str
    rows: list[tuple[float, str, str]] = field(default_factory=list)
    view: dict[str, Any] = field(default_factory=dict)


class Demo:
    """HTTP only, like any driver: the merchant's driver API and the sandbox's control API."""

    def __init__(self, sandbox_url: str, driver_url: str, mchid: str):
        self.sandbox_url, self.driver_url, self.mchid = sandbox_url, driver_url, mchid
        self.http = requests.Session()

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        r = self.http.request(method, url, json=body, timeout=60)
        if r.status_code >= 400:
            raise click.ClickException(f"{method} {url}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def driver(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, self.driver_url + path, body)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"{self.sandbox_url}/sandbox{path}", body)

    def order(self, out_order_no: str, action: str, body: Any = None) -> Any:
        return self.control("POST", f"/merchants/{self.mchid}/orders/{out_order_no}/{action}",
                            body or {})

    def wait(self, rental_id: str, states: set[str], check: Any = None) -> dict[str, Any]:
        """Poll the merchant's view until a callback's effect shows (bounded wall time)."""
        deadline = time.monotonic() + WAIT_S
        view = self.driver("GET", f"/rentals/{rental_id}")
        while time.monotonic() < deadline:
            if view["merchant_state"] in states and (check is None or check(view)):
                return view
            time.sleep(0.1)
            view = self.driver("GET", f"/rentals/{rental_id}")
        raise click.ClickException(f"rental {rental_id} stuck in {view['merchant_state']}, "
                                   f"expected {sorted(states)}")

    def rent(self, openid: str, mode: str = "need_confirm") -> dict[str, Any]:
        return self.driver("POST", "/rentals", {"openid": openid, "mode": mode,
                                                "deposit": DEPOSIT})


def need_confirm_story(d: Demo) -> Story:
    user = "o_magic_never_confirms"  # waits for us to confirm for them
    rental = d.rent(user)
    story = Story("need-confirm", "need-confirm rental: confirm, finish, deduction, one refund",
                  rental["rental_id"], "PAID, 350 fen charged, 100 fen refunded")
    d.order(rental["out_order_no"], "confirm", {"openid": user})
    d.wait(story.rental_id, {"IN_SERVICE"})
    d.driver("POST", f"/rentals/{story.rental_id}/finish", {"amount": 350})
    d.wait(story.rental_id, {"PAID"})  # WeChat's automatic deduction, then USER_PAID
    view = d.driver("POST", f"/rentals/{story.rental_id}/refund", {"amount": 100})
    number = view["refunds"][-1]["out_refund_no"]
    d.control("POST", f"/merchants/{d.mchid}/refunds/{number}/settle", {"status": "SUCCESS"})
    d.wait(story.rental_id, {"PAID"},
           check=lambda v: v["refunds"] and v["refunds"][-1]["status"] == "SUCCESS")
    return story


def pre_authorised_story(d: Demo) -> Story:
    user = "o_demo_preauthorised"
    d.control("POST", f"/merchants/{d.mchid}/permissions/authorize", {"openid": user})
    rental = d.rent(user, mode="pre_authorised")
    story = Story("pre-authorised", "pre-authorised rental (免确认): in service at once, finish, paid",
                  rental["rental_id"], "PAID, 200 fen charged")
    d.driver("POST", f"/rentals/{story.rental_id}/finish", {"amount": 200})
    d.wait(story.rental_id, {"PAID"})
    return story


def fallback_story(d: Demo) -> Story:
    rental = d.rent("o_magic_not_real_name")
    return Story("not eligible", "user not eligible (综合评估未通过): deposit fallback, no order",
                 rental["rental_id"], "DEPOSIT_FALLBACK, out_order_no null")


def expiry_story(d: Demo) -> Story:
    rental = d.rent("o_magic_never_confirms")
    story = Story("expiry", "never confirmed: the order expires after 30 days, the device is released",
                  rental["rental_id"], "EXPIRED, device released")
    d.control("POST", "/clock/advance", {"by": "31d"})
    d.driver("POST", "/reconcile")  # no callback announces an expiry: the merchant queries
    return story


def run_demo(console: Console, keep: bool = False) -> list[Story]:
    from merchant_kit.reference import LiveMerchant
    from sandbox.cli import ensure_demo_merchant
    from sandbox.live import LiveSandbox

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log in the printout
    tmp = Path(tempfile.mkdtemp(prefix="payscore-demo-"))
    console.print(f"[bold]payscore demo[/]  (data: {tmp})")
    live = LiveSandbox(tmp / "sandbox").start()
    merchant = None
    try:
        merchant_json = ensure_demo_merchant(live.app, live.base_url)
        merchant = LiveMerchant({"MERCHANT_JSON": str(merchant_json),
                                 "DATA_DIR": str(tmp / "merchant"), "ENABLE_DRIVER": True,
                                 "CLOCK_URL": live.base_url, "RECONCILE_INTERVAL": 0}).start()
        mchid = merchant.merchant.config.mchid
        console.print(f"sandbox {live.base_url}   merchant {merchant.url} (mchid {mchid})\n")
        d = Demo(live.base_url, merchant.driver_url, mchid)
        stories = []
        for step in (need_confirm_story, pre_authorised_story, fallback_story, expiry_story):
            stories.append(step(d))
        for story in stories:
            story.view = d.driver("GET", f"/rentals/{story.rental_id}")
            story.rows = timeline(d, story.view)
            console.print(story_panel(story))
        return stories
    finally:
        if merchant is not None:
            merchant.stop()
        live.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- timelines


def timeline(d: Demo, view: dict[str, Any]) -> list[tuple[float, str, str]]:
    """(time, who, what): the sandbox's view of the order merged with the merchant's audit."""
    rows: list[tuple[float, str, str]] = []
    number = view.get("out_order_no")
    if number:
        listed = d.control("GET", f"/api/orders?mchid={d.mchid}&limit=200")["orders"]
        pk = next((o["pk"] for o in listed if o["out_order_no"] == number), None)
        if pk is not None:
            for item in d.control("GET", f"/api/orders/{pk}")["timeline"]:
                rows.extend(_sandbox_rows(item))
    for event in d.driver("GET", f"/rentals/{view['rental_id']}/timeline")["events"]:
        rows.append((event["at"], "merchant", _merchant_text(event)))
    rows.sort(key=lambda row: row[0])
    return rows


def _sandbox_rows(item: dict[str, Any]) -> list[tuple[float, str, str]]:
    at = item["at_us"] / 1e6
    if item["kind"] == "request":
        verdict = f" {item['code']}" if item.get("code") else ""
        path = item["path"].split("?")[0]
        if item.get("out_order_no"):
            path = path.replace(item["out_order_no"], "{no}")
        who = "user (control API)" if path.startswith("/sandbox/") else "merchant → WeChat"
        return [(at, who, f"{item['method']} {path} → {item['status']}{verdict}")]
    if item["kind"] == "state":
        change = f"{item.get('from_state') or '-'} → {item.get('to_state') or '-'}"
        return [(at, "WeChat order", f"{item['event']}: {change}")]
    rows = []
    for attempt in item.get("attempt_log") or [{}]:
        answer = attempt.get("status_code") or attempt.get("error") or "pending"
        rows.append((at, "WeChat → merchant",
                     f"callback {item['event_type']}: merchant answered {answer}"))
    return rows


def _merchant_text(event: dict[str, Any]) -> str:
    detail, kind = event.get("detail") or {}, event["kind"]
    if kind == "state":
        return f"rental {detail.get('from_state')} → {detail.get('to_state')} " \
               f"(from {detail.get('source')})"
    if kind in ("callback_applied", "callback_ignored"):
        return f"{kind.replace('_', ' ')}: {detail.get('event_type')}" + (
            f" ({detail['reason']})" if detail.get("reason") else "")
    shown = ", ".join(f"{k}={v}" for k, v in detail.items()
                      if k not in ("notification_id", "provider") and v is not None)
    return kind.replace("_", " ") + (f": {shown}" if shown else "")


def _when(at: float) -> str:
    return dt.datetime.fromtimestamp(at, CST).strftime("%m-%d %H:%M:%S.%f")[:-3]


def story_panel(story: Story) -> Panel:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("time (CST)", style="dim", no_wrap=True)
    table.add_column("who", no_wrap=True)
    table.add_column("what")
    colours = {"merchant": "cyan", "WeChat order": "magenta", "merchant → WeChat": "yellow",
               "WeChat → merchant": "green", "user (control API)": "blue"}
    for at, who, what in story.rows:
        table.add_row(_when(at), f"[{colours.get(who, 'white')}]{who}[/]", what)
    v = story.view
    title = (f"rental {story.rental_id}: {story.title}\n"
             f"→ {v.get('merchant_state')}, charged {v.get('charged')} fen, refunded "
             f"{v.get('refunded')} fen, device released {v.get('device_released')} "
             f"(expected: {story.expect})")
    return Panel(table, title=title, title_align="left")


def summary_table(stories: list[Story]) -> Table:
    table = Table("rental", "story", "merchant_state", "charged", "refunded", "device released",
                  "callbacks", title="the merchant's view (GET /driver/rentals/{id})")
    for s in stories:
        v = s.view
        table.add_row(s.rental_id, s.label, str(v.get("merchant_state")), str(v.get("charged")),
                      str(v.get("refunded")), str(v.get("device_released")),
                      str(v.get("callbacks")))
    return table
