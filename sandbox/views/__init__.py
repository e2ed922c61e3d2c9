"""Blueprints per area: the /v3/ surface and the /sandbox/ control API."""

from __future__ import annotations

from flask import Flask


def blueprints() -> list:
    from sandbox.views import certificates, control, serviceorders

    return [serviceorders.bp, certificates.bp, control.bp]


def register_blueprints(app: Flask) -> None:
    for bp in blueprints():
        app.register_blueprint(bp)
