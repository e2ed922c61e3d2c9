"""Blueprints per area: the /v3/ surface and the /sandbox/ control API."""

from __future__ import annotations

from flask import Flask


def blueprints() -> list:
    from sandbox import ui
    from sandbox.views import (
        certificates,
        control,
        control_callbacks,
        control_faults,
        control_permissions,
        control_world,
        dashboard_api,
        permissions,
        refunds,
        serviceorders,
    )

    return [serviceorders.bp, certificates.bp, control.bp, dashboard_api.bp, ui.bp,
            control_world.bp, control_callbacks.bp, permissions.bp, refunds.bp,
            refunds.control_bp, control_permissions.bp, control_faults.bp]


def register_blueprints(app: Flask) -> None:
    for bp in blueprints():
        app.register_blueprint(bp)
