"""Shared fixtures: a fresh sandbox per test on a temporary SQLite file (or, with
--payscore-db=postgres or the `postgres` marker, an isolated PostgreSQL schema); live sandboxes
over HTTP with reference merchants in front of them."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from callbacks_support import T0, Env
from reference_support import Driver

from sandbox.callbacks.dispatcher import dispatcher_of
from sandbox.live import LiveSandbox
from sandbox.testing import SignedClient, add_merchant, make_sandbox

POSTGRES_ENV = "PAYSCORE_TEST_POSTGRES_URL"
NO_POSTGRES = f"set {POSTGRES_ENV} to run PostgreSQL tests"


def pytest_addoption(parser):
    parser.addoption("--payscore-db", choices=("sqlite", "postgres"), default="sqlite",
                     help="database behind the `app` fixture; postgres needs "
                          f"{POSTGRES_ENV} (each test gets its own schema)")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards; yields a URL whose connections
    see only that schema (search_path), so tests never see each other's rows."""
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(NO_POSTGRES)
    import psycopg

    schema = "payscore_test_" + secrets.token_hex(6)
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    parts = urlsplit(base)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    try:
        yield urlunsplit(parts._replace(query=urlencode(query)))
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(scope="session")
def postgres_schemas():
    """The `postgres_schema` context manager, for fixtures of wider scope."""
    return postgres_schema


@pytest.fixture
def db_url(request) -> Iterator[str | None]:
    """None (SQLite in tmp_path) or an isolated PostgreSQL schema: when parametrized
    indirectly with "postgres", when the test is marked `postgres`, or --payscore-db=postgres."""
    wanted = getattr(request, "param", None)
    if wanted is None:
        marked = request.node.get_closest_marker("postgres") is not None
        wanted = "postgres" if marked else request.config.getoption("--payscore-db")
    if wanted != "postgres":
        yield None
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def app(tmp_path, db_url):
    app = make_sandbox(tmp_path, db_url=db_url)
    yield app
    app.extensions["payscore"].engine.dispose()  # PostgreSQL: release before DROP SCHEMA


@pytest.fixture
def sandbox(app):
    return app.extensions["payscore"]


@pytest.fixture
def merchant(app):
    return add_merchant(app)


@pytest.fixture
def client(app, merchant):
    return SignedClient(app, merchant)


@pytest.fixture
def other(app) -> SignedClient:
    """A second merchant on the same sandbox: what a fault's scope must leave alone."""
    return SignedClient(app, add_merchant(app))


@pytest.fixture
def cb(tmp_path) -> Iterator[Env]:
    """A sandbox on a frozen clock (at T0), one merchant, and its (not started) dispatcher."""
    app = make_sandbox(tmp_path, CALLBACK_TIMEOUT_S=1.0)
    sb = app.extensions["payscore"]
    sb.clock.freeze(T0)
    yield Env(app, sb, add_merchant(app), dispatcher_of(sb))
    sb.extras["stop_services"]()
    sb.engine.dispose()


# ---------------------------------------------------------------------- live, over HTTP


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveSandbox]:
    """A live sandbox with default settings, one per module (a module needing other settings
    defines its own `live`)."""
    sandbox = LiveSandbox(tmp_path_factory.mktemp("sandbox")).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def make_driver(live: LiveSandbox, tmp_path: Path) -> Iterator[Callable[..., Driver]]:
    """A fresh sandbox merchant and a reference merchant for it (optionally with bugs)."""
    from merchant_kit.reference import LiveMerchant

    started: list[LiveMerchant] = []

    def make(bugs: tuple[str, ...] = (), **config: Any) -> Driver:
        account = add_merchant(live.app, base_url=live.base_url)
        merchant = LiveMerchant({
            "MERCHANT_JSON": str(account.json_path), "DATA_DIR": str(tmp_path / f"m{len(started)}"),
            "ENABLE_DRIVER": True, "RECONCILE_INTERVAL": 0, "CLOCK_URL": live.base_url,
            "RETRY_BASE_DELAY": 0.01, "BUGS": bugs, **config}).start()
        started.append(merchant)
        return Driver(merchant, live, account.mchid)

    yield make
    for merchant in started:
        merchant.stop()


@pytest.fixture
def hooks(live: LiveSandbox) -> Iterator[Any]:
    """Sandbox hook lists a test may append to; emptied of the test's hooks afterwards."""
    sb = live.sandbox.hooks
    kept = {name: list(getattr(sb, name)) for name in ("before", "after", "build", "send")}
    yield sb
    for name, hooks in kept.items():
        getattr(sb, name)[:] = hooks


@pytest.fixture(scope="module")
def merchant_world(request, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A live sandbox with the demo merchant, and the reference merchant (driver on) in front
    of it, one per module: {"sandbox", "merchant_json", "driver", "root"}."""
    from merchant_kit.reference import LiveMerchant
    from sandbox.cli import ensure_demo_merchant

    root = tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_"))
    live = LiveSandbox(root / "sandbox").start()
    merchant = None
    try:
        merchant_json = ensure_demo_merchant(live.app, live.base_url)
        merchant = LiveMerchant({"MERCHANT_JSON": str(merchant_json), "ENABLE_DRIVER": True,
                                 "DATA_DIR": str(root / "merchant"), "CLOCK_URL": live.base_url,
                                 "RECONCILE_INTERVAL": 0}).start()
        yield {"sandbox": live.base_url, "merchant_json": merchant_json,
               "driver": merchant.driver_url, "root": root}
    finally:
        if merchant is not None:
            merchant.stop()
        live.stop()
