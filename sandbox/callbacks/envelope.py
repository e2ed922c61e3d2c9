"""One callback on the wire: the envelope of reference §6.2, encrypted (§6.3), signed (§6.1,
§5.2-§5.4), and POSTed with WeChat's deadline (§6.5).

Pure over its inputs: a Delivery, the merchant's APIv3 key and signing mode, and the platform
keys. No database, no clock; the dispatcher passes times in. All crypto is merchant_kit.protocol.

Decisions where the reference is uncertain:
- `associated_data` is "payscore" for Pay Score events and "refund" for refund notices. §6.2
  saw "payscore" in the Go SDK's Pay Score vector and "" in the official JSON samples; we send
  the non-empty value so that a receiver which ignores the field (or hard-codes "") fails loudly
  here rather than in production. A fault hook may set `Delivery.associated_data` to "" to
  exercise the other variant.
- In `migrating` mode a share `migration_ratio` of callbacks is signed with the public key,
  chosen by a hash of the notification id: every re-delivery of one notification is signed by
  the same key, and the share over many notifications converges on the ratio (§5.4).
- A forced `sign_serial` naming no known key keeps that serial in `Wechatpay-Serial` while the
  merchant's usual key signs: the "unknown serial" case a receiver must reject.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import requests

from merchant_kit import protocol
from sandbox.callbacks.delivery import Delivery
from sandbox.clock import to_datetime
from sandbox.provision import PlatformKey
from sandbox.security import ResponseSigner, new_request_id

RESOURCE_TYPE = "encrypt-resource"
CONTENT_TYPE = "application/json"
ANSWER_LIMIT = 500  # characters of the merchant's answer kept in the attempt log
READ_LIMIT = 64 * 1024  # bytes of an answer read at most


def associated_data_of(delivery: Delivery) -> str:
    if delivery.associated_data is not None:
        return delivery.associated_data
    return "refund" if delivery.original_type == "refund" else "payscore"


def public_key_share(notification_id: str) -> float:
    """A stable number in [0, 1) per notification: which side of the migration ratio it is on."""
    digest = hashlib.sha256(notification_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_key(signer: ResponseSigner, signing_mode: str, migration_ratio: float,
               notification_id: str, sign_serial: str | None = None) -> PlatformKey:
    """The platform key that signs this callback (§5.3-§5.4)."""
    if sign_serial:
        forced = signer.by_serial.get(sign_serial.upper())
        if forced is not None:
            return forced
    use_public = signing_mode == "public_key" or (
        signing_mode == "migrating" and public_key_share(notification_id) < migration_ratio)
    if use_public and signer.public_key is not None:
        return signer.public_key
    fallback = signer.certificate or signer.public_key
    if fallback is None:
        raise RuntimeError("the sandbox has no platform key: provisioning did not run")
    return fallback


def envelope_body(delivery: Delivery, apiv3_key: bytes, nonce: str | None = None) -> bytes:
    """The exact request body: the §6.2 envelope with the plaintext AES-256-GCM encrypted."""
    plaintext = json.dumps(delivery.plaintext, ensure_ascii=False,
                           separators=(",", ":")).encode("utf-8")
    resource = protocol.encrypt_resource(apiv3_key, plaintext, associated_data_of(delivery),
                                         nonce or protocol.make_aead_nonce(),
                                         delivery.original_type)
    envelope = {
        "id": delivery.notification_id,
        "create_time": protocol.rfc3339(to_datetime(delivery.create_time_us)),
        "resource_type": RESOURCE_TYPE,
        "event_type": delivery.event_type,
        "summary": delivery.summary,
        "resource": resource,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def signed_headers(delivery: Delivery, key: PlatformKey) -> dict[str, str]:
    """Request-ID, the Wechatpay-* headers over exactly `delivery.body`, and Content-Type."""
    headers = {"Request-ID": f"{new_request_id()}-0"}
    headers.update(protocol.sign_response(key.private_key, key.serial, delivery.body,
                                          delivery.timestamp_s, protocol.make_hex_nonce()))
    if delivery.sign_serial and delivery.sign_serial.upper() != key.serial.upper():
        headers["Wechatpay-Serial"] = delivery.sign_serial
    headers["Content-Type"] = CONTENT_TYPE
    return headers


def build(delivery: Delivery, *, apiv3_key: bytes, signing_mode: str, migration_ratio: float,
          signer: ResponseSigner, build_hooks: Iterable[Callable] = ()) -> Delivery:
    """Run the build hooks around encryption and signing; fills `body` and `headers` in place."""
    hooks = list(build_hooks)
    for hook in hooks:
        hook(delivery, stage="plaintext")
    key = choose_key(signer, signing_mode, migration_ratio, delivery.notification_id,
                     delivery.sign_serial)
    delivery.body = envelope_body(delivery, apiv3_key)
    delivery.headers = signed_headers(delivery, key)
    for hook in hooks:
        hook(delivery, stage="signed")
    return delivery


@dataclass
class Attempt:
    status_code: int | None = None
    latency_ms: float | None = None
    answer: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and \
            200 <= self.status_code < 300


def post(session: requests.Session, delivery: Delivery, deadline_s: float) -> Attempt:
    """POST the built delivery once. Success is a 2xx within the deadline (wall time: network)."""
    started = time.perf_counter()
    try:
        with session.post(delivery.url, data=delivery.body, headers=delivery.headers,
                          timeout=(deadline_s, deadline_s), stream=True,
                          allow_redirects=False) as response:
            raw = b""
            for chunk in response.iter_content(8192):
                raw += chunk
                if len(raw) >= READ_LIMIT or time.perf_counter() - started > deadline_s:
                    break
            status = response.status_code
    except requests.Timeout:
        return Attempt(latency_ms=(time.perf_counter() - started) * 1000,
                       error=f"timeout: no answer within {deadline_s:g} s")
    except requests.RequestException as exc:
        return Attempt(latency_ms=(time.perf_counter() - started) * 1000,
                       error=f"{type(exc).__name__}: {exc}"[:255])
    latency_ms = (time.perf_counter() - started) * 1000
    answer = raw.decode("utf-8", "replace")[:ANSWER_LIMIT]
    if latency_ms > deadline_s * 1000:
        return Attempt(status, latency_ms, answer, f"answered after the {deadline_s:g} s deadline")
    return Attempt(status, latency_ms, answer)
