"""The closed set of fault effects: each kind is implemented once, here, at its hook points.

Hook points (the engine calls the functions registered below from sandbox.service.Hooks):
- `before`: after the signature check, before the view: answer instead of the sandbox;
- `after`: the view's answer (its transaction committed), before it is signed;
- `build:plaintext` / `build:signed`: a callback before encryption / once encrypted and signed;
- `send`: just before a callback is POSTed (copies, holds);
- `action`: a change made once when the fault is armed and undone when it is disarmed.

Decisions where the brief left a choice:
- `truncated_body` / `garbage_body` are signed over the bytes actually sent by default
  (`signed: delivered`), so a merchant that verifies signatures still has to survive the parse
  error; `signed: none` sends them unsigned, as a proxy in the middle would.
- `bad_signature` keeps the real Wechatpay-Serial/Timestamp/Nonce and carries 256 random bytes
  as the signature: well-formed, and never valid. `claim_paid` also rewrites the body to say
  DONE / USER_PAID.
- `callback_tamper` flips one bit of the AEAD ciphertext (or of the tag) after signing and then
  signs the new body with the same platform key: the signature is valid, decryption fails.
- `callback_replay` records the first signed callback of its scope verbatim, and POSTs exactly
  those bytes and headers again just before a later callback of the scope is sent at least
  `after_s` later. The replay is an extra delivery (its own delivery_attempts row, fault
  `callback_replay`): replacing the later callback would lose it whenever the merchant
  correctly acknowledged the old one.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Response, current_app, g, request
from marshmallow import Schema
from sqlalchemy import func, select, update

from merchant_kit import protocol
from sandbox import db, errors, provision
from sandbox.callbacks import envelope
from sandbox.callbacks.delivery import Delivery
from sandbox.clock import to_datetime
from sandbox.faults import params as p
from sandbox.faults.transport import drop_connection

if TYPE_CHECKING:
    from sandbox.faults.engine import Armed, FaultEngine

S = 1_000_000
NO_ANSWER_STATUS = 444  # nginx's "closed without a response": the request log's status then
GARBAGE = b"\xff\xfe\x00<upstream>\x9c\x00 garbled \xc3(\x00"
GATEWAY_TITLES = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable",
                  504: "504 Gateway Time-out"}


@dataclass(frozen=True)
class Hit:
    """One fault taken at one hook call: what an effect function gets."""

    fault: Armed
    engine: FaultEngine
    now_us: int

    @property
    def params(self) -> dict[str, Any]:
        return self.fault.params

    @property
    def sb(self):
        return self.engine.sb


@dataclass(frozen=True)
class Effect:
    name: str
    summary: str
    params: type[Schema]
    hooks: tuple[str, ...]
    appliers: dict[str, Callable] = field(default_factory=dict)  # hook -> fn(hit, target)
    observers: dict[str, Callable] = field(default_factory=dict)  # sees targets, takes nothing
    phased: bool = False  # params.phase picks `before` or `after`
    only_2xx: bool = False
    sticky: str | None = None  # "every" / "once": attempts of a notification it was taken on
    holds: bool = False  # postpones callbacks: disarming makes the ones it holds due at once
    scopes_operation: bool = True  # False: it must see every event of its scope
    ready: Callable | None = None  # (fault, target, now_us) -> bool, before the trigger counts
    arm: Callable | None = None  # action: (sb, conn, now_us, mchid, params) -> state
    undo: Callable | None = None  # action: (sb, conn, fault row)
    order: int = 0  # after-hook order: effects that sign run last

    def hooks_for(self, params: dict, mchid: str | None) -> tuple[str, ...]:
        if self.phased:
            return (params["phase"],)
        if self.name == "outage" and not params["hold_callbacks"]:
            return ("before",)
        if self.name == "rotated_serial" and mchid is None:
            return ("action",)  # sandbox-wide: the new certificate simply becomes the default
        return self.hooks

    @property
    def is_action(self) -> bool:
        return "action" in self.hooks

    def load_params(self, raw: dict | None) -> dict:
        """The parameters with their defaults; ValidationError when they are not valid."""
        return self.params().load(raw or {})


KINDS: dict[str, Effect] = {}


def kind(name: str, summary: str, params: type[Schema] = p.NoParams,
         hooks: tuple[str, ...] = (), **meta: Any) -> Effect:
    KINDS[name] = Effect(name, summary, params, hooks, **meta)
    return KINDS[name]


def applies(effect: Effect, *hooks: str) -> Callable:
    def register(fn: Callable) -> Callable:
        for hook in hooks:
            effect.appliers[hook] = fn
        return fn
    return register


# ---------------------------------------------------------------- API answers

def error_of(params: dict) -> errors.PayScoreError:
    cls = errors.BY_CODE.get(params["code"], errors.PayScoreError)
    exc = cls(params.get("message") or (None if cls is not errors.PayScoreError
                                         else params["code"]))
    if cls is errors.PayScoreError:
        exc.code = params["code"]
    if params.get("status"):
        exc.status = params["status"]
    return exc


def _render(exc: errors.PayScoreError) -> Response:
    """The app's one error handler renders it, exactly like a raised WeChat error."""
    return current_app.handle_user_exception(exc)  # type: ignore[return-value]


HTTP_ERROR = kind("http_error", "A WeChat error answer (unsigned), before or after processing",
                  p.HttpErrorParams, ("before", "after"), phased=True)


@applies(HTTP_ERROR, "before", "after")
def http_error(hit: Hit, response: Response | None) -> Response:
    return _render(error_of(hit.params))


DELAY = kind("delay", "Answer only after `seconds` of wall time (≤ 30 s): past a client's read "
             "timeout", p.DelayParams, ("before", "after"), phased=True)


@applies(DELAY, "before", "after")
def delay(hit: Hit, response: Response | None) -> None:
    time.sleep(min(hit.params["seconds"], p.MAX_DELAY_S))


RESET_BEFORE = kind("reset_before_commit", "Drop the connection without an answer; nothing "
                    "is processed", hooks=("before",))


@applies(RESET_BEFORE, "before")
def reset_before_commit(hit: Hit, response: None) -> Response:
    drop_connection(request.environ)
    return Response(b"", status=NO_ANSWER_STATUS)


RESET_AFTER = kind("reset_after_commit", "Process and commit, then drop the connection "
                   "without an answer: a lost reply", hooks=("after",))


@applies(RESET_AFTER, "after")
def reset_after_commit(hit: Hit, response: Response) -> None:
    drop_connection(request.environ)
    g.skip_signing = True  # nobody will read the signature


def _unsigned_if(params: dict) -> None:
    if params["signed"] == "none":
        g.skip_signing = True


TRUNCATED = kind("truncated_body", "A 2xx whose JSON body is cut off", p.TruncatedBodyParams,
                 ("after",), only_2xx=True,
                 ready=lambda fault, response, now: bool(response.get_data()))


@applies(TRUNCATED, "after")
def truncated_body(hit: Hit, response: Response) -> None:
    body = response.get_data()
    keep = min(max(1, int(len(body) * hit.params["keep"])), len(body) - 1)
    response.set_data(body[:keep])
    _unsigned_if(hit.params)


GARBAGE_BODY = kind("garbage_body", "A 2xx whose body is not JSON", p.GarbageBodyParams,
                    ("after",), only_2xx=True)


@applies(GARBAGE_BODY, "after")
def garbage_body(hit: Hit, response: Response) -> None:
    body = hit.params["body"]
    response.set_data(body.encode("utf-8") if body else GARBAGE)
    if response.status_code == 204:  # a 204 cannot carry the garbage
        response.status_code = 200
    _unsigned_if(hit.params)


HTML_GATEWAY = kind("html_gateway", "An nginx HTML error page (502 by default) instead of "
                    "WeChat's JSON", p.HtmlGatewayParams, ("before", "after"), phased=True)


@applies(HTML_GATEWAY, "before", "after")
def html_gateway(hit: Hit, response: Response | None) -> Response:
    title = GATEWAY_TITLES[hit.params["status"]]
    page = (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}"
            "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    return Response(page.encode(), status=hit.params["status"],
                    content_type="text/html", headers={"Server": "nginx"})


# ---------------------------------------------------------------- API signatures

BAD_SIGNATURE = kind("bad_signature", "A 2xx with an invalid signature (optionally claiming "
                     "the order is paid)", p.BadSignatureParams, ("after",), only_2xx=True)


@applies(BAD_SIGNATURE, "after")
def bad_signature(hit: Hit, response: Response) -> None:
    if hit.params["claim_paid"]:
        response.set_data(claim_paid(response.get_data(), hit.now_us))
    # the pipeline's signing fills the other Wechatpay-* headers and keeps this one
    response.headers["Wechatpay-Signature"] = base64.b64encode(
        secrets.token_bytes(256)).decode("ascii")


def claim_paid(body: bytes, now_us: int) -> bytes:
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    total = doc.get("total_amount") or (doc.get("risk_fund") or {}).get("amount") or 1
    doc.pop("state_description", None)
    doc.update(state="DONE", total_amount=total, need_collection=True, collection={
        "state": "USER_PAID", "total_amount": total, "paying_amount": 0, "paid_amount": total,
        "details": [{"seq": 1, "amount": total, "paid_type": "NEWTON",
                     "paid_time": protocol.payscore_time(to_datetime(now_us)),
                     "transaction_id": "42" + str(secrets.randbelow(10**26)).zfill(26)}]})
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


PROBE = kind("probe_signature", "A 2xx signed WECHATPAY/SIGNTEST/... (reference §5.5)",
             hooks=("after",), only_2xx=True)


@applies(PROBE, "after")
def probe_signature(hit: Hit, response: Response) -> None:
    response.headers["Wechatpay-Signature"] = protocol.make_probe_signature()


UNSIGNED = kind("unsigned", "A 2xx without Wechatpay-* headers", hooks=("after",), only_2xx=True)


@applies(UNSIGNED, "after")
def unsigned(hit: Hit, response: Response) -> None:
    g.skip_signing = True


# ---------------------------------------------------------------- platform keys (actions)

def merchant_signing(sb, mchid: str) -> tuple[str, float]:
    with sb.engine.connect() as conn:
        row = provision.merchant_row(conn, mchid)
    return (row.signing_mode, row.migration_ratio or 0.0) if row else ("certificate", 0.0)


def _rotate(sb, conn, now_us: int, mchid: str | None, params: dict) -> dict:
    newest = conn.execute(select(func.max(db.platform_keys.c.effective_us))
                          .where(db.platform_keys.c.kind == "certificate")).scalar()
    keygen = sb.config.get("KEYGEN") or protocol.generate_private_key
    # effective after every existing certificate, so it is the newest even after a clock reset
    serial = provision.create_platform_certificate(conn, max(now_us, (newest or 0) + 1), keygen)
    return {"serial": serial}


def _retire(sb, conn, row) -> None:
    conn.execute(update(db.platform_keys).where(db.platform_keys.c.serial == row.state["serial"])
                 .values(active=False))


ROTATED = kind("rotated_serial", "A new platform certificate signs answers and callbacks (of "
               "`mchid`, else everyone's); /v3/certificates lists both; disarm retires it",
               hooks=("action", "after", "build:plaintext"), only_2xx=True, arm=_rotate,
               undo=_retire, order=1)


@applies(ROTATED, "after")
def rotated_serial(hit: Hit, response: Response) -> None:
    key = hit.sb.signer.by_serial.get(hit.fault.state["serial"].upper())
    default = hit.sb.signer.choose(request.headers.get("Wechatpay-Serial"),
                                   merchant_signing(hit.sb, g.mchid)[0])
    if key is None or default.kind != "certificate":
        return  # the public key signs this one (reference §5.4): rotation does not apply
    g.skip_signing = True
    for name, value in hit.sb.signer.headers(key, response.get_data(),
                                             hit.now_us // S).items():
        response.headers.setdefault(name, value)
    return


@applies(ROTATED, "build:plaintext")
def rotated_serial_callback(hit: Hit, delivery: Delivery) -> None:
    mode, ratio = merchant_signing(hit.sb, delivery.mchid)
    default = envelope.choose_key(hit.sb.signer, mode, ratio, delivery.notification_id)
    if default.kind == "certificate" and delivery.sign_serial is None:
        delivery.sign_serial = hit.fault.state["serial"]


def _switch_signing(sb, conn, now_us: int, mchid: str | None, params: dict) -> dict:
    merchant = provision.merchant_row(conn, mchid) if mchid else None
    if merchant is None:
        raise errors.MchNotExists("商户号不存在" + (f": {mchid}" if mchid else ""))
    previous = {"mode": merchant.signing_mode, "ratio": merchant.migration_ratio or 0.0}
    f = db.faults
    earlier = conn.execute(select(f.c.id, f.c.state).where(
        f.c.effect == "public_key_signing", f.c.mchid == mchid, f.c.active.is_(True))
        .order_by(f.c.id)).first()
    if earlier is not None:  # stacked switches: disarming the newest restores the original
        previous = earlier.state["previous"]
        conn.execute(update(f).where(f.c.effect == "public_key_signing", f.c.mchid == mchid,
                                     f.c.active.is_(True))
                     .values(active=False, disarmed_us=now_us))
    conn.execute(update(db.merchants).where(db.merchants.c.mchid == mchid).values(
        signing_mode=params["mode"], migration_ratio=params["ratio"]))
    return {"previous": previous}


def _restore_signing(sb, conn, row) -> None:
    previous = row.state["previous"]
    conn.execute(update(db.merchants).where(db.merchants.c.mchid == row.mchid).values(
        signing_mode=previous["mode"], migration_ratio=previous["ratio"]))


kind("public_key_signing", "The merchant's answers and callbacks are signed with the WeChat "
     "Pay public key (mode public_key), or a share of callbacks (migrating)",
     p.PublicKeySigningParams, ("action",), arm=_switch_signing, undo=_restore_signing)

from sandbox.faults import callback_effects  # noqa: F401  (registers the callback kinds)
