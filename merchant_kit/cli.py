"""`payscore merchant-demo`: run the reference merchant (with its driver API) against a sandbox.

Registered by sandbox.cli through COMMAND_MODULES (`register(cli)`); this module imports click
and rich, never the sandbox: the merchant reaches the sandbox over HTTP only.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

console = Console()


def register(cli: click.Group) -> None:
    cli.add_command(merchant_demo)


def _bug_names() -> list[str]:
    from merchant_kit.reference.bugs import BUGS

    return sorted(BUGS)


def _print_bugs() -> None:
    from merchant_kit.reference.bugs import BUGS

    table = Table("bug switch", "what the merchant then does wrong", show_lines=True)
    for name, text in BUGS.items():
        table.add_row(name, text)
    console.print(table)


@click.command("merchant-demo")
@click.option("--sandbox", "sandbox_url", default=None,
              help="Sandbox base URL (default: base_url of the merchant JSON).")
@click.option("--merchant-json", default=".payscore/merchant.json", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Credentials written by `payscore up` (or `payscore merchant add`).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--data-dir", default=".payscore-merchant", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the merchant's own SQLite database lives.")
@click.option("--bug", "bugs", multiple=True, type=click.Choice(_bug_names()), metavar="NAME",
              help="Switch on a realistic integration bug (repeatable; see --list-bugs).")
@click.option("--list-bugs", is_flag=True, help="Describe the bug switches and exit.")
@click.option("--reconcile-interval", default=30.0, show_default=True, type=float,
              help="Seconds between reconciliation runs (0: only on POST /driver/reconcile).")
@click.option("--follow-clock/--wall-clock", default=True, show_default=True,
              help="Use the sandbox's controllable clock (GET /sandbox/clock) as 'now'.")
def merchant_demo(sandbox_url: str | None, merchant_json: Path, host: str, port: int,
                  data_dir: Path, bugs: tuple[str, ...], list_bugs: bool,
                  reconcile_interval: float, follow_clock: bool) -> None:
    """Start the reference merchant (power-bank rental) with its driver API on."""
    if list_bugs:
        _print_bugs()
        return
    if not merchant_json.exists():
        raise click.UsageError(f"{merchant_json} not found: start `payscore up` first, or pass "
                               "--merchant-json")
    from merchant_kit.reference import LiveMerchant

    gateway = (sandbox_url or json.loads(merchant_json.read_text())["base_url"]).rstrip("/")
    live = LiveMerchant({
        "MERCHANT_JSON": str(merchant_json), "SANDBOX_URL": gateway, "DATA_DIR": str(data_dir),
        "ENABLE_DRIVER": True, "BUGS": bugs, "RECONCILE_INTERVAL": reconcile_interval,
        "CLOCK_URL": gateway if follow_clock else None}, host=host, port=port)
    merchant = live.merchant
    console.print(f"[bold green]reference merchant[/] on {live.url}  (data: {data_dir})")
    console.print(f"  mchid {merchant.config.mchid} -> gateway {gateway}")
    console.print(f"  driver API: {live.driver_url}   callbacks: {live.url}/payscore/notify")
    if bugs:
        console.print(f"  [bold red]bug switches on:[/] {', '.join(sorted(bugs))}")
    console.print("  try: curl -s -XPOST " + live.driver_url + "/rentals -H 'Content-Type: "
                  "application/json' -d '{\"openid\": \"o_alice\", \"deposit\": 9900}'")
    try:
        live.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
