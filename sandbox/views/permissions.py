"""/v3/payscore/permissions and /v3/payscore/user-service-state (reference §2.10)."""

from __future__ import annotations

from flask import Blueprint

from sandbox.schemas import common as c
from sandbox.schemas import permissions as s
from sandbox.service import current
from sandbox.views.common import check_path, load_body, load_query, mchid, now_us, render

bp = Blueprint("permissions", __name__, url_prefix="/v3/payscore")

_CODE = "authorization_code"


@bp.post("/permissions")
def create_permission():
    """Pre-authorise (商户预授权): a token that opens the user's authorisation page.
    ---
    post:
      operationId: create_permission
      tags: [permissions]
      requestBody:
        required: true
        content: {application/json: {schema: CreatePermissionRequest}}
      responses:
        "200": {description: "valid for one hour",
                content: {application/json: {schema: CreatePermissionResponse}}}
    """
    body = load_body(s.CreatePermissionRequest)
    return render(current().permissions.create_permission(mchid(), body, now_us()))


@bp.get("/permissions/authorization-code/<authorization_code>")
def query_permission_by_code(authorization_code: str):
    """The authorisation behind a pre-authorisation code.
    ---
    get:
      operationId: query_permission_by_code
      tags: [permissions]
      parameters:
      - {in: path, name: authorization_code, required: true,
         schema: {type: string, maxLength: 32}}
      - {in: query, schema: PermissionByCodeQuery}
      responses:
        "200": {description: "UNBINDUSER until a user accepts, then AVAILABLE / UNAVAILABLE",
                content: {application/json: {schema: PermissionByCode}}}
    """
    check_path(authorization_code, c.AUTH_CODE, _CODE)
    query = load_query(s.PermissionByCodeQuery)
    return render(current().permissions.query_permission_by_code(mchid(), authorization_code,
                                                                 query))


@bp.post("/permissions/authorization-code/<authorization_code>/terminate")
def terminate_permission_by_code(authorization_code: str):
    """End the authorisation of a pre-authorisation code (PAYSCORE.USER_CLOSE_SERVICE follows).
    ---
    post:
      operationId: terminate_permission_by_code
      tags: [permissions]
      parameters:
      - {in: path, name: authorization_code, required: true,
         schema: {type: string, maxLength: 32}}
      requestBody:
        required: true
        content: {application/json: {schema: TerminatePermissionByCodeRequest}}
      responses:
        "204": {description: "terminated (or already ended)"}
    """
    check_path(authorization_code, c.AUTH_CODE, _CODE)
    body = load_body(s.TerminatePermissionByCodeRequest, (_CODE,))
    current().permissions.terminate_permission_by_code(mchid(), authorization_code, body,
                                                       now_us())
    return render(None, 204)


@bp.get("/permissions/openid/<openid>")
def query_permission_by_openid(openid: str):
    """A user's authorisation for this service (UNAVAILABLE if they never granted one).
    ---
    get:
      operationId: query_permission_by_openid
      tags: [permissions]
      parameters:
      - {in: path, name: openid, required: true, schema: {type: string, maxLength: 128}}
      - {in: query, schema: PermissionByOpenidQuery}
      responses:
        "200": {description: the authorisation,
                content: {application/json: {schema: PermissionByOpenid}}}
    """
    check_path(openid, c.OPENID, "openid")
    query = load_query(s.PermissionByOpenidQuery)
    return render(current().permissions.query_permission_by_openid(mchid(), openid, query))


@bp.post("/permissions/openid/<openid>/terminate")
def terminate_permission_by_openid(openid: str):
    """End a user's authorisation; refused while the user has unfinished orders.
    ---
    post:
      operationId: terminate_permission_by_openid
      tags: [permissions]
      parameters:
      - {in: path, name: openid, required: true, schema: {type: string, maxLength: 128}}
      requestBody:
        required: true
        content: {application/json: {schema: TerminatePermissionByOpenidRequest}}
      responses:
        "204": {description: "terminated (or already ended)"}
    """
    check_path(openid, c.OPENID, "openid")
    body = load_body(s.TerminatePermissionByOpenidRequest, ("openid",))
    current().permissions.terminate_permission_by_openid(mchid(), openid, body, now_us())
    return render(None, 204)


@bp.get("/user-service-state")
def query_user_service_state():
    """Whether the user has the service open (AVAILABLE) for this merchant.
    ---
    get:
      operationId: query_user_service_state
      tags: [permissions]
      parameters:
      - {in: query, schema: UserServiceStateQuery}
      responses:
        "200": {description: the state, content: {application/json: {schema: UserServiceState}}}
    """
    query = load_query(s.UserServiceStateQuery)
    return render(current().permissions.query_user_service_state(mchid(), query, now_us()))
