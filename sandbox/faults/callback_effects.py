"""The callback effect kinds (and `outage`, which also holds callbacks), registered into
sandbox.faults.effects.KINDS. Each bends a `Delivery` at the dispatcher's hook points
(sandbox/callbacks/delivery.py): `build:plaintext`, `build:signed`, `send`."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import requests
from flask import Response
from sqlalchemy import select

from merchant_kit import protocol
from sandbox import db, errors
from sandbox.callbacks.delivery import Delivery
from sandbox.faults import params as p
from sandbox.faults.effects import Hit, S, _render, applies, kind

REPLAY_TIMEOUT_S = 5.0  # WeChat's callback deadline (reference §6.5)

DUPLICATE = kind("callback_duplicate", "The callback is delivered `copies` times in a row",
                 p.CopiesParams, ("send",))


@applies(DUPLICATE, "send")
def callback_duplicate(hit: Hit, delivery: Delivery) -> None:
    delivery.copies = max(delivery.copies, hit.params["copies"])


CONCURRENT = kind("callback_concurrent_duplicates", "`copies` identical deliveries at the "
                  "same moment", p.ConcurrentCopiesParams, ("send",))


@applies(CONCURRENT, "send")
def callback_concurrent_duplicates(hit: Hit, delivery: Delivery) -> None:
    delivery.copies = max(delivery.copies, hit.params["copies"])
    delivery.concurrent = True


def _holds_this_event(fault, delivery: Delivery, now_us: int) -> bool:
    return delivery.event_type == fault.params["hold_event"]


def _release_on_until_event(engine, fault, delivery: Delivery) -> None:
    """`until_event` of an order is being sent: its held callback falls due right after."""
    if delivery.event_type == fault.params["until_event"] and delivery.order_pk is not None:
        engine.release(fault.id, fault.params["release_after_s"] * S, delivery.order_pk)


REORDER = kind("callback_reorder", "Hold `hold_event` (USER_CONFIRM) of an order until its "
               "`until_event` (USER_PAID) was sent: they arrive the other way round",
               p.ReorderParams, ("send",), sticky="every", holds=True, scopes_operation=False,
               ready=_holds_this_event, observers={"send": _release_on_until_event})


@applies(REORDER, "send")
def callback_reorder(hit: Hit, delivery: Delivery) -> None:
    left = hit.params["max_hold_s"] * S - (hit.now_us - delivery.create_time_us)
    if left <= 0 or delivery.order_pk is None or _event_sent(hit, delivery.order_pk):
        return  # bounded: a flow that never reaches until_event gets the callback eventually
    delivery.hold_us = left  # one long hold; sending until_event shortens it


def _event_sent(hit: Hit, order_pk: int) -> bool:
    """Was a delivery of `until_event` for this order POSTed (whatever the answer)? Held and
    dropped attempts have no latency: they never left the sandbox."""
    a, n = db.delivery_attempts, db.notifications
    with hit.sb.engine.connect() as conn:
        return conn.execute(select(a.c.id).join(n, n.c.id == a.c.notification_id).where(
            n.c.order_pk == order_pk, n.c.event_type == hit.params["until_event"],
            a.c.latency_ms.is_not(None)).limit(1)).first() is not None


DELAY = kind("callback_delay", "The first attempt is held `hold_s` (hours) on the sandbox clock",
             p.CallbackDelayParams, ("send",), sticky="once", holds=True)


@applies(DELAY, "send")
def callback_delay(hit: Hit, delivery: Delivery) -> None:
    delivery.hold_us = hit.params["hold_s"] * S


DROP = kind("callback_drop", "Every attempt of the callback is dropped: never delivered",
            hooks=("send",), sticky="every")


@applies(DROP, "send")
def callback_drop(hit: Hit, delivery: Delivery) -> None:
    delivery.copies = 0


TAMPER = kind("callback_tamper", "Validly signed, but the AEAD ciphertext (or tag) is altered: "
              "decryption fails", p.TamperParams, ("build:signed",))


@applies(TAMPER, "build:signed")
def callback_tamper(hit: Hit, delivery: Delivery) -> None:
    try:
        doc = json.loads(delivery.body)
        raw = bytearray(base64.b64decode(doc["resource"]["ciphertext"]))
    except (ValueError, KeyError, TypeError):
        return
    raw[-1 if hit.params["target"] == "tag" else 0] ^= 0x01  # the GCM tag is the last 16 bytes
    doc["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode("ascii")
    delivery.body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    key = hit.sb.signer.by_serial.get(delivery.headers.get("Wechatpay-Serial", "").upper())
    if key is not None:  # same key, timestamp and nonce: only the body changed
        delivery.headers.update(protocol.sign_response(
            key.private_key, key.serial, delivery.body, delivery.headers["Wechatpay-Timestamp"],
            delivery.headers["Wechatpay-Nonce"]))


STALE = kind("callback_stale_timestamp", "Validly signed with a Wechatpay-Timestamp `age_s` "
             "(10 minutes) old", p.StaleTimestampParams, ("build:plaintext",))


@applies(STALE, "build:plaintext")
def callback_stale_timestamp(hit: Hit, delivery: Delivery) -> None:
    delivery.timestamp_s -= hit.params["age_s"]


PROBE = kind("callback_probe_signature", "A callback signed WECHATPAY/SIGNTEST/...",
             hooks=("build:signed",))


@applies(PROBE, "build:signed")
def callback_probe_signature(hit: Hit, delivery: Delivery) -> None:
    delivery.headers["Wechatpay-Signature"] = protocol.make_probe_signature()


MISMATCH = kind("callback_mismatched_content", "Validly signed and encrypted, but the amount, "
                "mchid or appid inside does not match the merchant's order", p.MismatchParams,
                ("build:plaintext",))


@applies(MISMATCH, "build:plaintext")
def callback_mismatched_content(hit: Hit, delivery: Delivery) -> None:
    name, value = hit.params["field"], hit.params["value"]
    doc = delivery.plaintext
    if name != "amount":
        doc[name] = value if value is not None else another(doc.get(name))
        return
    slots = _amount_slots(doc)
    if not slots:
        risk = doc.get("risk_fund")
        slots = [(risk, "amount")] if isinstance(risk, dict) and "amount" in risk else \
            [(doc, "total_amount")]
    for holder, key in slots:
        holder[key] = value if value is not None else int(holder.get(key) or 0) + 1


def _amount_slots(doc: dict) -> list[tuple[dict, str]]:
    """Every amount a receiver could check: order totals, collection, refund amounts."""
    slots: list[tuple[dict, str]] = []
    if "total_amount" in doc:
        slots.append((doc, "total_amount"))
    collection = doc.get("collection")
    if isinstance(collection, dict):
        slots += [(collection, k) for k in ("total_amount", "paid_amount") if k in collection]
        slots += [(d, "amount") for d in collection.get("details") or [] if isinstance(d, dict)]
    amount = doc.get("amount")
    if isinstance(amount, dict):
        slots += [(amount, k) for k in ("total", "refund", "payer_total", "payer_refund")
                  if k in amount]
    return slots


def another(value: Any) -> str:
    """A different identifier of the same shape: digits stay digits, the length is kept."""
    text = str(value or "")
    if text.isdigit():
        return str((int(text) + 1) % 10 ** len(text)).zfill(len(text))
    if not text:
        return "X"
    return text[:-1] + ("Y" if text[-1] == "X" else "X")


# ---------------------------------------------------------------- replay

def remember(engine, fault, delivery: Delivery) -> None:
    """The first signed callback of the scope, kept verbatim for a later replay."""
    if (fault.state or {}).get("captured"):
        return
    engine.remember(fault.id, "captured", {
        "notification_id": delivery.notification_id, "attempt": delivery.attempt,
        "url": delivery.url, "at_us": delivery.timestamp_s * S,
        "event_type": delivery.event_type,
        "body_b64": base64.b64encode(delivery.body).decode("ascii"),
        "headers": dict(delivery.headers)})


def _replay_due(fault, delivery: Delivery, now_us: int) -> bool:
    captured = (fault.state or {}).get("captured")
    if not captured or (delivery.notification_id, delivery.attempt) == (
            captured["notification_id"], captured["attempt"]):
        return False  # only a later delivery carries the replay
    return now_us >= captured["at_us"] + fault.params["after_s"] * S


REPLAY = kind("callback_replay", "An earlier validly signed callback is sent again later, "
              "verbatim (body and headers: its timestamp is old)", p.ReplayParams,
              ("build:signed", "send"), observers={"build:signed": remember}, ready=_replay_due)


@applies(REPLAY, "send")
def callback_replay(hit: Hit, delivery: Delivery) -> None:
    captured = hit.fault.state["captured"]
    status, answer, error = None, None, None
    started = time.perf_counter()
    try:
        with requests.Session() as session:
            session.trust_env = False
            answered = session.post(captured["url"], data=base64.b64decode(captured["body_b64"]),
                                    headers=captured["headers"], timeout=REPLAY_TIMEOUT_S,
                                    allow_redirects=False)
            status, answer = answered.status_code, answered.text[:500]
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"[:255]
    with db.write_tx(hit.sb.engine) as conn:
        conn.execute(db.delivery_attempts.insert().values(
            notification_id=captured["notification_id"], at_us=hit.now_us, status_code=status,
            latency_ms=(time.perf_counter() - started) * 1000, answer=answer, error=error,
            fault="callback_replay",
            signature_serial=(captured["headers"].get("Wechatpay-Serial") or "")[:64] or None))


# ---------------------------------------------------------------- outage

def outage_error(params: dict) -> errors.PayScoreError:
    exc: errors.PayScoreError = (errors.SystemError_() if params["status"] == 500
                                 else errors.ServiceUnavailable())
    exc.status = params["status"]
    return exc


OUTAGE = kind("outage", "Every request of the scope fails (503) for the window or until "
              "disarmed; its callbacks are held meanwhile", p.OutageParams, ("before", "send"),
              holds=True)


@applies(OUTAGE, "before")
def outage(hit: Hit, response: None) -> Response:
    return _render(outage_error(hit.params))


@applies(OUTAGE, "send")
def outage_holds_callbacks(hit: Hit, delivery: Delivery) -> None:
    end = hit.fault.window_end_us
    delivery.hold_us = (end - hit.now_us) if end else hit.params["hold_step_s"] * S
