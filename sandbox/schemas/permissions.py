"""Pre-authorisation (免确认预授权) request and response schemas (reference §2.10, §6.4)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from sandbox.schemas.common import AUTH_CODE, OPENID, Strict, notify_url, pattern, text

AUTHORIZATION_STATES = ["UNAVAILABLE", "AVAILABLE", "UNBINDUSER"]


class _Service(Strict):
    """Every pre-authorisation call names the service first."""

    service_id = text(32, required=True)


class _ServiceApp(_Service):
    """... and, where the user is known by openid, the app that openid belongs to."""

    appid = text(32, required=True)


class PermissionByCodeQuery(_Service):
    """The query string of §2.10 by authorization_code (the code is in the path)."""


class PermissionByOpenidQuery(_ServiceApp):
    """The query string of §2.10 by openid (the openid is in the path)."""


class CreatePermissionRequest(_ServiceApp):
    authorization_code = pattern(AUTH_CODE, 32, required=True)
    notify_url = notify_url()


class CreatePermissionResponse(Schema):
    apply_permissions_token = fields.String(required=True, metadata={"maxLength": 300})


class TerminatePermissionByCodeRequest(_Service):
    reason = text(50, required=True)


class TerminatePermissionByOpenidRequest(_ServiceApp):
    reason = text(50, required=True)


class PermissionByOpenid(Schema):
    """§2.10 query by openid: the user's authorisation for this service."""

    service_id = fields.String(required=True)
    appid = fields.String(required=True)
    mchid = fields.String(required=True)
    openid = fields.String(required=True, metadata={"maxLength": 128})
    authorization_code = fields.String(metadata={"maxLength": 32})
    authorization_state = fields.String(required=True,
                                        validate=validate.OneOf(AUTHORIZATION_STATES))
    cancel_authorization_time = fields.String(metadata={"format": "date-time"})
    authorization_success_time = fields.String(metadata={"format": "date-time"})


class PermissionByCode(PermissionByOpenid):
    """§2.10 query by authorization_code; no user is bound yet while UNBINDUSER."""

    openid = fields.String(metadata={"maxLength": 128})
    notify_url = fields.String()


class UserServiceStateQuery(_ServiceApp):
    openid = text(128, required=True)


class UserServiceState(Schema):
    appid = fields.String(required=True)
    service_id = fields.String(required=True)
    openid = fields.String(required=True)
    use_service_state = fields.String(required=True,
                                      validate=validate.OneOf(["AVAILABLE", "UNAVAILABLE"]))


class UserAuthorizeRequest(Strict):
    """Control API: the simulated user accepts (a code, or the service for an openid)."""

    openid = pattern(OPENID, 128, required=True)
    authorization_code = pattern(AUTH_CODE, 32)


class UserRevokeRequest(Strict):
    """Control API: the simulated user closes the service in the Pay Score app."""

    openid = pattern(OPENID, 128, required=True)
