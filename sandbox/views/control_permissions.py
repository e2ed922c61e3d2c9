"""Control API (test-only, under /sandbox/): simulated users accept or close the service.

Like the rest of the control API: not part of WeChat's API, unsigned, loopback only.
"""

from __future__ import annotations

from flask import Blueprint

from sandbox.schemas import permissions as s
from sandbox.service import current
from sandbox.views.common import load_body, render

bp = Blueprint("control_permissions", __name__, url_prefix="/sandbox")


@bp.post("/merchants/<mchid>/permissions/authorize")
def user_authorize_permission(mchid: str):
    """The user accepts: binds `authorization_code` to `openid`, or opens the service for the
    openid directly; PAYSCORE.USER_OPEN_SERVICE follows.
    ---
    post:
      operationId: user_authorize_permission
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: UserAuthorizeRequest}}
      responses:
        "200": {description: "the authorisation, now AVAILABLE",
                content: {application/json: {schema: PermissionByCode}}}
    """
    sb = current()
    body = load_body(s.UserAuthorizeRequest)
    return render(sb.permissions.user_authorize_permission(mchid, body, sb.clock.now_us()))


@bp.post("/merchants/<mchid>/permissions/revoke")
def user_revoke_permission(mchid: str):
    """The user closes the service; PAYSCORE.USER_CLOSE_SERVICE follows.
    ---
    post:
      operationId: user_revoke_permission
      tags: [sandbox]
      parameters:
      - {in: path, name: mchid, required: true, schema: {type: string}}
      requestBody:
        required: true
        content: {application/json: {schema: UserRevokeRequest}}
      responses:
        "200": {description: "the authorisation, now UNAVAILABLE",
                content: {application/json: {schema: PermissionByCode}}}
    """
    sb = current()
    body = load_body(s.UserRevokeRequest)
    return render(sb.permissions.user_revoke_permission(mchid, body, sb.clock.now_us()))
