"""The `payscore` command: start the sandbox, provision merchants, move the clock, and more.

Command groups of other packages (scenarios, loadtest, gray, gates, demo) register in
`COMMAND_MODULES`; each module exposes `register(cli)`.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click
from rich.console import Console

console = Console()

COMMAND_MODULES = (
    "sandbox.cli_world",
    "merchant_kit.cli",
    "sandbox.demo",
    "fault_scenarios.cli",
    "loadtests.cli",
)


def _db_url(data_dir: Path, db: str | None) -> str:
    return db or f"sqlite:///{(data_dir / 'sandbox.db').resolve()}"


def open_sandbox(data_dir: str, db: str | None, **config):
    """An app over the given data dir and database, for commands that act on its state."""
    from sandbox.app import create_app

    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    return create_app({"DATABASE_URL": _db_url(path, db), "DATA_DIR": str(path), **config})


def ensure_demo_merchant(app, base_url: str) -> Path:
    """The demo merchant of the data dir: created on first start, reused later."""
    from sandbox import db, provision

    sb = app.extensions["payscore"]
    out = sb.data_dir / "merchant.json"
    if out.exists():
        info = json.loads(out.read_text())
        with sb.engine.connect() as conn:
            if provision.merchant_row(conn, info["mchid"]) is not None:
                if info.get("base_url") != base_url:
                    info["base_url"] = base_url
                    out.write_text(json.dumps(info, indent=2) + "\n")
                return out
    with db.write_tx(sb.engine) as conn:
        merchant = provision.add_merchant(conn, sb.clock.now_us(conn), name="demo merchant")
        keys = provision.load_platform_keys(conn)
    return provision.write_merchant_files(sb.data_dir, merchant, base_url, keys)


data_dir_option = click.option("--data-dir", default=".payscore", show_default=True,
                               help="Where keys, merchant.json and the SQLite file live.")
db_option = click.option("--db", default=None,
                         help="Database URL (default: SQLite in the data dir; "
                              "postgresql://... to scale out).")


@click.group()
@click.version_option(package_name="payscore-sandbox")
def cli() -> None:
    """payscore: a local WeChat Pay Pay Score (微信支付分) API v3 sandbox."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@data_dir_option
@db_option
@click.option("--workers", default=1, show_default=True, type=int,
              help="Server processes (gunicorn); use PostgreSQL for several hosts.")
@click.option("--threads", default=4, show_default=True, type=int)
@click.option("--with-demo-merchant", "merchant_port", type=int, default=None,
              metavar="PORT", help="Also run the reference merchant (power-bank rental, driver "
                                   "API on) for the demo merchant on this port.")
@click.option("--quiet", is_flag=True,
              help="No access log line per request (load runs: the dashboard's request log "
                   "keeps every exchange anyway).")
def up(host: str, port: int, data_dir: str, db: str | None, workers: int, threads: int,
       merchant_port: int | None, quiet: bool) -> None:
    """Provision (first start) and serve the sandbox."""
    from sandbox import server

    base_url = f"http://{host}:{port}"
    app = open_sandbox(data_dir, db)
    merchant_json = ensure_demo_merchant(app, base_url)
    info = json.loads(merchant_json.read_text())
    console.print(f"[bold green]payscore sandbox[/] on {base_url}  (data: {data_dir})")
    console.print(f"demo merchant mchid={info['mchid']} appid={info['appid']} "
                  f"service_id={info['service_id']}")
    console.print(f"credentials: {merchant_json}  — point your client's gateway at {base_url}; "
                  "e.g. MerchantConfig.from_file('" + str(merchant_json) + "')")
    console.print(f"contract: {base_url}/sandbox/openapi.yaml   control API: {base_url}/sandbox/"
                  f"   dashboard: {base_url}/sandbox/ui/")
    child = None
    if merchant_port is not None:
        child = _start_demo_merchant(merchant_json, data_dir, host, merchant_port)
        console.print(f"reference merchant on http://{host}:{merchant_port} (driver API: "
                      f"/driver/, callbacks: /payscore/notify) — try: payscore scenarios run "
                      f"--driver http://{host}:{merchant_port}/driver")
    try:
        server.serve(app.config, host=host, port=port, workers=workers, threads=threads,
                     quiet=quiet)
    finally:
        if child is not None:
            child.terminate()
            child.wait(timeout=10)


def _start_demo_merchant(merchant_json: Path, data_dir: str, host: str, port: int):
    """The reference merchant as a child process, so both stop together."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "sandbox.cli", "merchant-demo",
                             "--merchant-json", str(merchant_json), "--host", host,
                             "--port", str(port),
                             "--data-dir", str(Path(data_dir) / "merchant")])


@cli.group()
def merchant() -> None:
    """Provision merchants."""


@merchant.command("add")
@data_dir_option
@db_option
@click.option("--name", default="merchant")
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--notify-url", default=None)
@click.option("--signing-mode", type=click.Choice(["certificate", "public_key", "migrating"]),
              default="certificate", show_default=True)
def merchant_add(data_dir, db, name, base_url, notify_url, signing_mode) -> None:
    """Provision another merchant (isolated from the others); writes <name>_<mchid>.json."""
    from sandbox import db as dbm
    from sandbox import provision

    app = open_sandbox(data_dir, db)
    sb = app.extensions["payscore"]
    with dbm.write_tx(sb.engine) as conn:
        m = provision.add_merchant(conn, sb.clock.now_us(conn), name=name,
                                   notify_url=notify_url, signing_mode=signing_mode)
        keys = provision.load_platform_keys(conn)
    path = provision.write_merchant_files(sb.data_dir, m, base_url, keys,
                                          name=f"{name}_{m.mchid}")
    console.print(f"merchant {m.mchid} provisioned: {path}")


@cli.command()
@data_dir_option
@db_option
@click.option("--output", "-o", default="-", help="File to write (default: stdout).")
def openapi(data_dir: str, db: str | None, output: str) -> None:
    """Print the contract (openapi.yaml) generated from the schemas."""
    from sandbox.openapi import spec_yaml

    text = spec_yaml()
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)


def _register_plugins() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the product is not installed
            raise
        module.register(cli)


def main() -> None:
    _register_plugins()
    cli()


if __name__ == "__main__":
    main()
