"""Shared fixtures: a fresh sandbox per test on a temporary SQLite file."""

from __future__ import annotations

import pytest

from sandbox.testing import SignedClient, add_merchant, make_sandbox


@pytest.fixture
def app(tmp_path):
    return make_sandbox(tmp_path)


@pytest.fixture
def sandbox(app):
    return app.extensions["payscore"]


@pytest.fixture
def merchant(app):
    return add_merchant(app)


@pytest.fixture
def client(app, merchant):
    return SignedClient(app, merchant)
