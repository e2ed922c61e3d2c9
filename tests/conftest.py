"""Shared fixtures: a fresh sandbox per test on a temporary SQLite file (or, with
--payscore-db=postgres or the `postgres` marker, an isolated PostgreSQL schema)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

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
