"""Request verification and response signing, over the raw bytes on the wire (reference §5).

Verification runs before any JSON parsing: the canonical URL is rebuilt from the raw request
target (RAW_URI / REQUEST_URI), never from Flask's decoded path, and the body is the exact
bytes received. Failures raise SignError with the official messages of §4.4.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from urllib.parse import quote

from flask import Request
from sqlalchemy.engine import Engine

from merchant_kit import protocol
from sandbox import errors, provision

AUTH_MESSAGES = {
    "missing": "HTTP头Authorization值格式错误",
    "format": "HTTP头Authorization值格式错误",
    "scheme": "HTTP头Authorization认证类型不正确",
    "mchid": "商户号不存在或未开通API v3",
    "serial": "商户证书序列号有误",
    "stale": "HTTP头Authorization中的timestamp与发起请求的时间不得超过5分钟",
    "signature": "错误的签名，验签失败",
}


@dataclass(frozen=True)
class MerchantKeys:
    mchid: str
    serial_no: str
    public_key: protocol.PublicKey
    apiv3_key: bytes


class MerchantCache:
    """Merchant verification keys by mchid; PEM parsing is too slow to repeat per request.
    A merchant's keys never change once provisioned, so entries are never invalidated."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._by_mchid: dict[str, MerchantKeys] = {}
        self._lock = threading.Lock()

    def get(self, mchid: str) -> MerchantKeys | None:
        hit = self._by_mchid.get(mchid)
        if hit is not None:
            return hit
        with self.engine.connect() as conn:
            row = provision.merchant_row(conn, mchid)
        if row is None:
            return None
        cert = protocol.load_certificate(row.certificate_pem)
        keys = MerchantKeys(row.mchid, row.serial_no, protocol.public_key_of(cert),
                            row.apiv3_key.encode())
        with self._lock:
            self._by_mchid[mchid] = keys
        return keys


def canonical_url(request: Request) -> bytes:
    """The request target exactly as sent: raw path plus '?' and the raw query string."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if raw.startswith(("http://", "https://")):  # absolute-form target
            raw = "/" + raw.split("/", 3)[3] if raw.count("/") >= 3 else "/"
        query = environ.get("QUERY_STRING", "")
        if query and "?" not in raw:  # werkzeug's test environ keeps the query apart
            raw = f"{raw}?{query}"
        return raw.encode("latin-1", errors="replace")
    path = quote(environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace"))
    query = environ.get("QUERY_STRING", "")
    return (path + ("?" + query if query else "")).encode("latin-1", errors="replace")


def sign_error(reason: str, request: Request, message: bytes | None = None) -> errors.SignError:
    detail: dict = {"field": "signature" if reason == "signature" else "authorization",
                    "location": "authorization", "detail": {"issue": reason}}
    if message is not None:
        detail["sign_information"] = {
            "method": request.method,
            "sign_message_length": len(message),
            "truncated_sign_message": message[:120].decode("utf-8", "replace"),
            "url": canonical_url(request).decode("latin-1"),
        }
    return errors.SignError(AUTH_MESSAGES[reason], detail=detail)


def parse_authorization(request: Request) -> protocol.Authorization:
    """The Authorization header's fields, or SignError (missing, malformed, wrong scheme)."""
    try:
        return protocol.parse_authorization(request.headers.get("Authorization"))
    except protocol.AuthorizationFormatError as exc:
        raise sign_error(str(exc), request) from None


def verify_request(request: Request, auth: protocol.Authorization, merchants: MerchantCache,
                   now_s: int, window: int = protocol.MAX_CLOCK_SKEW) -> MerchantKeys:
    """Return the merchant whose signature the request carries, or raise SignError."""
    merchant = merchants.get(auth.mchid)
    if merchant is None:
        raise sign_error("mchid", request)
    if auth.serial_no.upper() != merchant.serial_no.upper():
        raise sign_error("serial", request)
    if abs(now_s - int(auth.timestamp)) > window:
        raise sign_error("stale", request)
    message = protocol.request_message(request.method, canonical_url(request), auth.timestamp,
                                       auth.nonce_str, request.get_data(cache=True))
    if not protocol.verify(merchant.public_key, message, auth.signature):
        raise sign_error("signature", request, message)
    return merchant


def new_request_id() -> str:
    return secrets.token_hex(22).upper()


class ResponseSigner:
    """Signs 2xx answers with the platform certificate key or the WeChat Pay public key."""

    def __init__(self, keys: list[provision.PlatformKey]):
        # Certificates of a rotation scoped to one merchant (sandbox.faults sets them): listed
        # and usable by serial, never the default signer of everyone else.
        self.reserved: frozenset[str] = frozenset()
        self.replace(keys)

    def replace(self, keys: list[provision.PlatformKey]) -> None:
        self.keys = keys
        self.by_serial = {k.serial.upper(): k for k in keys}
        certs = [k for k in keys if k.kind == "certificate" and k.serial.upper() not in
                 self.reserved]
        self.certificate = certs[-1] if certs else None
        self.public_key = next((k for k in reversed(keys) if k.kind == "public_key"), None)

    def choose(self, requested_serial: str | None, merchant_mode: str) -> provision.PlatformKey:
        """§5.4: the public key signs iff the request named it or the merchant has only it."""
        if requested_serial and requested_serial.upper().startswith(protocol.PUBLIC_KEY_ID_PREFIX):
            key = self.by_serial.get(requested_serial.upper())
            if key is not None:
                return key
        if merchant_mode == "public_key" or self.certificate is None:
            assert self.public_key is not None
            return self.public_key
        return self.certificate

    def headers(self, key: provision.PlatformKey, body: bytes, timestamp: int) -> dict[str, str]:
        return protocol.sign_response(key.private_key, key.serial, body, timestamp,
                                      protocol.make_hex_nonce())
