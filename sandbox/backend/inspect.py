"""Read-only views of the sandbox's state for the dashboard (/sandbox/api/, /sandbox/ui/).

Every list is keyset-paginated with a LIMIT over an index (see sandbox.db), and totals are
capped counts, so a page costs the same with 100 or 100,000 orders. Nothing here writes.
"""

from __future__ import annotations

from typing import Any

from flask import Request
from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.engine import Connection, Engine, Row

from merchant_kit import protocol
from sandbox import db, provision
from sandbox.clock import to_datetime

COUNT_CAP = 1000
# A filter no index serves (failed requests) scans back at most this many log rows per page.
SCAN_WINDOW = 20_000
MAX_LIMIT = 200


def at(us: int | None) -> str | None:
    """Sandbox microseconds as RFC 3339 in China Standard Time (WeChat's own convention)."""
    return None if us is None else protocol.rfc3339(to_datetime(us))


def encode_cursor(us: int, key: Any) -> str:
    return f"{us}_{key}"


def decode_cursor(cursor: str | None, numeric: bool = False) -> tuple[int, str] | None:
    if not cursor:
        return None
    us, sep, key = cursor.partition("_")
    if not sep or not us.lstrip("-").isdigit() or not key or len(cursor) > 80 \
            or len(us) > 18 or (numeric and not (key.isdigit() and len(key) <= 18)):
        raise ValueError("cursor must look like <micros>_<key>, as next_before gives it")
    return int(us), key


def _capped_count(conn: Connection, stmt) -> tuple[int, bool]:
    """count(*) over at most COUNT_CAP + 1 rows: exact when small, "1000+" when large."""
    limited = stmt.with_only_columns(db.orders.c.pk).order_by(None).limit(COUNT_CAP + 1)
    n = conn.execute(select(func.count()).select_from(limited.subquery())).scalar_one()
    return min(n, COUNT_CAP), n > COUNT_CAP


def order_summary(row: Row) -> dict[str, Any]:
    doc = row.doc or {}
    return {
        "pk": row.pk, "mchid": row.mchid, "out_order_no": row.out_order_no,
        "order_id": row.order_id, "state": row.state,
        "state_description": row.state_description, "openid": row.openid,
        "service_introduction": doc.get("service_introduction"),
        "total_amount": row.total_amount, "risk_amount": (doc.get("risk_fund") or {}).get("amount"),
        "created": at(row.created_us), "created_us": row.created_us,
        "updated": at(row.updated_us),
    }


def attempt_dict(row: Row) -> dict[str, Any]:
    return {"id": row.id, "at": at(row.at_us), "status_code": row.status_code,
            "latency_ms": row.latency_ms, "answer": row.answer, "error": row.error,
            "fault": row.fault, "signature_serial": row.signature_serial}


def notification_dict(row: Row, attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {"id": row.id, "mchid": row.mchid, "order_pk": row.order_pk,
           "event_type": row.event_type, "summary": row.summary, "url": row.url,
           "status": row.status, "attempts": row.attempts, "created": at(row.created_us),
           "created_us": row.created_us, "delivered": at(row.delivered_us),
           "next_attempt": at(row.next_attempt_us) if row.status == "PENDING" else None,
           "scenario_id": row.scenario_id}
    if attempts is not None:
        out["attempt_log"] = attempts
    return out


def request_dict(row: Row) -> dict[str, Any]:
    return {"id": row.id, "request_id": row.request_id, "at": at(row.at_us),
            "mchid": row.mchid, "method": row.method, "path": row.path,
            "operation": row.operation, "out_order_no": row.out_order_no,
            "status": row.status, "code": row.code, "verdict": row.verdict,
            "fault": row.fault, "scenario_id": row.scenario_id,
            "duration_ms": row.duration_ms, "explanation": explain_verdict(row)}


class Inspector:
    """One method per read endpoint (the operationIds of sandbox.views.dashboard_api)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def inspect_overview(self) -> dict[str, Any]:
        with db.read_tx(self.engine) as conn:
            merchants = [{"mchid": r.mchid, "name": r.name} for r in conn.execute(
                select(db.merchants.c.mchid, db.merchants.c.name)
                .order_by(db.merchants.c.created_us).limit(MAX_LIMIT))]
        return {"merchants": merchants}

    def inspect_orders(self, *, mchid: str | None = None, state: str | None = None,
                       openid: str | None = None, since_us: int | None = None,
                       until_us: int | None = None, before: str | None = None,
                       limit: int = 50) -> dict[str, Any]:
        o = db.orders.c
        stmt = select(db.orders)
        for column, value in ((o.mchid, mchid), (o.state, state), (o.openid, openid)):
            if value:
                stmt = stmt.where(column == value)
        if since_us is not None:
            stmt = stmt.where(o.created_us >= since_us)
        if until_us is not None:
            stmt = stmt.where(o.created_us < until_us)
        with db.read_tx(self.engine) as conn:
            count, capped = _capped_count(conn, stmt)
            cursor = decode_cursor(before, numeric=True)
            if cursor is not None:
                stmt = stmt.where(tuple_(o.created_us, o.pk) < tuple_(cursor[0], int(cursor[1])))
            rows = list(conn.execute(stmt.order_by(o.created_us.desc(), o.pk.desc())
                                     .limit(limit + 1)))
        page = rows[:limit]
        more = len(rows) > limit
        return {"orders": [order_summary(r) for r in page], "count": count,
                "count_capped": capped,
                "next_before": encode_cursor(page[-1].created_us, page[-1].pk) if more else None}

    def inspect_order(self, pk: int) -> dict[str, Any] | None:
        """The order and its timeline: requests, state changes, notifications and attempts."""
        with db.read_tx(self.engine) as conn:
            order = conn.execute(select(db.orders).where(db.orders.c.pk == pk)).first()
            if order is None:
                return None
            events = list(conn.execute(select(db.order_events)
                                       .where(db.order_events.c.order_pk == pk)
                                       .order_by(db.order_events.c.id).limit(1000)))
            rl = db.request_log.c
            requests = list(conn.execute(select(db.request_log).where(
                rl.out_order_no == order.out_order_no,
                or_(rl.mchid == order.mchid, rl.mchid.is_(None)))
                .order_by(rl.id).limit(1000)))
            notes = list(conn.execute(select(db.notifications)
                                      .where(db.notifications.c.order_pk == pk)
                                      .order_by(db.notifications.c.created_us).limit(200)))
            attempts = _attempts_by_notification(conn, [n.id for n in notes])
        timeline: list[dict[str, Any]] = []
        for e in events:
            timeline.append({"kind": "state", "at_us": e.at_us, "at": at(e.at_us),
                             "event": e.kind, "from_state": e.from_state,
                             "to_state": e.to_state, "detail": e.detail})
        for r in requests:
            timeline.append({"kind": "request", "at_us": r.at_us, **request_dict(r)})
        for n in notes:
            timeline.append({"kind": "notification", "at_us": n.created_us,
                             "at": at(n.created_us),
                             **notification_dict(n, attempts.get(n.id, []))})
        # Stable order: same instant -> request, then its state change, then the callback.
        rank = {"request": 0, "state": 1, "notification": 2}
        timeline.sort(key=lambda item: (item["at_us"], rank[item["kind"]]))
        doc = order.doc or {}
        detail = {**order_summary(order), "query_id": order.query_id, "appid": order.appid,
                  "service_id": order.service_id, "notify_url": order.notify_url,
                  "need_user_confirm": order.need_user_confirm,
                  "collection_state": order.collection_state,
                  "paid_amount": order.paid_amount, "attach": doc.get("attach"),
                  "time_range": doc.get("time_range"), "location": doc.get("location"),
                  "post_payments": doc.get("post_payments")}
        return {"order": detail, "timeline": timeline}

    def inspect_requests(self, *, mchid: str | None = None, out_order_no: str | None = None,
                         failed: bool = False, before: int | None = None,
                         limit: int = 50) -> dict[str, Any]:
        rl = db.request_log.c
        stmt = select(db.request_log)
        if mchid:
            stmt = stmt.where(rl.mchid == mchid)
        if out_order_no:
            stmt = stmt.where(rl.out_order_no == out_order_no)
        if before is not None:
            stmt = stmt.where(rl.id < before)
        floor = None
        if failed:
            # No index serves "status >= 400"; bound the scan instead of walking the whole log.
            with db.read_tx(self.engine) as conn:
                top = before if before is not None else (
                    conn.execute(select(func.max(rl.id))).scalar_one() or 0) + 1
            floor = max(top - SCAN_WINDOW, 0)
            stmt = stmt.where(rl.status >= 400, rl.id >= floor)
        with db.read_tx(self.engine) as conn:
            rows = list(conn.execute(stmt.order_by(rl.id.desc()).limit(limit + 1)))
        page = rows[:limit]
        if len(rows) > limit:
            next_before = page[-1].id
        elif floor:  # the window ended before the page filled: older rows may still match
            next_before = floor
        else:
            next_before = None
        return {"requests": [request_dict(r) for r in page], "next_before": next_before}

    def inspect_notifications(self, *, status: str | None = None, failing: bool = False,
                              before: str | None = None, limit: int = 50) -> dict[str, Any]:
        n = db.notifications.c
        stmt = select(db.notifications)
        if failing:
            stmt = stmt.where(or_(n.status == "FAILED",
                                  and_(n.status == "PENDING", n.attempts > 0)))
        elif status:
            stmt = stmt.where(n.status == status)
        cursor = decode_cursor(before)
        if cursor is not None:
            stmt = stmt.where(tuple_(n.created_us, n.id) < tuple_(cursor[0], cursor[1]))
        with db.read_tx(self.engine) as conn:
            rows = list(conn.execute(stmt.order_by(n.created_us.desc(), n.id.desc())
                                     .limit(limit + 1)))
            page = rows[:limit]
            last = _last_attempts(conn, [r.id for r in page])
            refs = _order_refs(conn, {r.order_pk for r in page if r.order_pk is not None})
        out = []
        for r in page:
            item = notification_dict(r)
            item["last_attempt"] = last.get(r.id)
            item["out_order_no"] = refs.get(r.order_pk)
            out.append(item)
        more = len(rows) > limit
        return {"notifications": out,
                "next_before": encode_cursor(page[-1].created_us, page[-1].id) if more else None}

    def inspect_users(self, *, prefix: str = "", limit: int = 50) -> dict[str, Any]:
        u = db.users.c
        stmt = select(u.openid, u.score, u.magic, u.blacklisted, u.frozen_until_us)
        if prefix:
            stmt = stmt.where(u.openid >= prefix, u.openid < prefix + "\uffff")
        with db.read_tx(self.engine) as conn:
            rows = list(conn.execute(stmt.order_by(u.openid).limit(limit)))
        return {"users": [{"openid": r.openid, "score": r.score, "magic": r.magic}
                          for r in rows]}

    def inspect_user(self, openid: str, now_us: int) -> dict[str, Any] | None:
        """A user as the world sees them (sandbox.world.users.assess), without creating one."""
        from sandbox.world import users

        with db.read_tx(self.engine) as conn:
            user = users.find_user(conn, openid)
            if user is None:
                return None
            assessment = users.assess(conn, user, now_us)
            h = db.score_history.c
            history = list(conn.execute(select(db.score_history).where(h.openid == openid)
                                        .order_by(h.at_us.desc(), h.id.desc()).limit(100)))
            d = db.user_defaults.c
            defaults = list(conn.execute(select(db.user_defaults).where(d.openid == openid)
                                         .order_by(d.at_us.desc()).limit(100)))
            o = db.orders.c
            orders = list(conn.execute(select(db.orders).where(o.openid == openid)
                                       .order_by(o.created_us.desc(), o.pk.desc()).limit(20)))
        profile = {k: v for k, v in user._mapping.items() if k != "frozen_until_us"}
        return {
            "user": profile | {"frozen_until": at(user.frozen_until_us)}, **assessment,
            "score_history": [{"at": at(x.at_us), "score": x.score, "reason": x.reason}
                              for x in history],
            "defaults": [{"at": at(x.at_us), "order_pk": x.order_pk, "amount": x.amount,
                          "settled": x.settled} for x in defaults],
            "orders": [order_summary(x) for x in orders],
        }

    def inspect_faults(self, *, active_only: bool = False, limit: int = 100) -> dict[str, Any]:
        f = db.faults.c
        stmt = select(db.faults)
        if active_only:
            stmt = stmt.where(f.active.is_(True))
        with db.read_tx(self.engine) as conn:
            rows = list(conn.execute(stmt.order_by(f.id.desc()).limit(limit)))
        return {"faults": [
            {"id": r.id, "effect": r.effect, "hook": r.hook, "params": r.params,
             "scope": {k: getattr(r, k) for k in ("mchid", "out_order_no", "openid", "operation")
                       if getattr(r, k) is not None},
             "remaining": r.remaining, "probability": r.probability, "taken": r.taken,
             "active": r.active, "scenario_id": r.scenario_id, "created": at(r.created_us),
             "window": [at(r.window_start_us), at(r.window_end_us)]
             if r.window_start_us or r.window_end_us else None}
            for r in rows]}


def _attempts_by_notification(conn: Connection, ids: list[str]) -> dict[str, list[dict]]:
    if not ids:
        return {}
    a = db.delivery_attempts.c
    out: dict[str, list[dict]] = {}
    for row in conn.execute(select(db.delivery_attempts).where(a.notification_id.in_(ids))
                            .order_by(a.id).limit(5000)):
        out.setdefault(row.notification_id, []).append(attempt_dict(row))
    return out


def _last_attempts(conn: Connection, ids: list[str]) -> dict[str, dict]:
    if not ids:
        return {}
    a = db.delivery_attempts.c
    newest = (select(func.max(a.id)).where(a.notification_id.in_(ids))
              .group_by(a.notification_id).scalar_subquery())
    rows = conn.execute(select(db.delivery_attempts).where(a.id.in_(newest)))
    return {r.notification_id: attempt_dict(r) for r in rows}


def _order_refs(conn: Connection, pks: set[int]) -> dict[int, str]:
    if not pks:
        return {}
    o = db.orders.c
    return {r.pk: r.out_order_no
            for r in conn.execute(select(o.pk, o.out_order_no).where(o.pk.in_(pks)))}


# What is wrong and how to fix it, per issue of sandbox.security.sign_error ...
_HINTS = {
    "missing": ("No Authorization header was sent: every /v3/ request must carry 'Authorization: "
                "WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,timestamp=..,serial_no=..,"
                "signature=..'."),
    "format": ("The Authorization header could not be parsed: after the scheme it needs mchid, "
               "nonce_str, timestamp, serial_no and signature as key=\"value\" pairs, "
               "comma-separated, on one line."),
    "scheme": "Wrong Authorization scheme: merchants sign with WECHATPAY2-SHA256-RSA2048.",
    "mchid": ("The mchid in the Authorization header is not a merchant of this sandbox: use the "
              "mchid from merchant.json, or provision one with 'payscore merchant add'."),
    "serial": ("serial_no in the Authorization header is not the serial of the merchant's API "
               "certificate: send the serial of the certificate whose private key signs "
               "(merchant.json 'serial_no'), not the platform's."),
    "stale": ("The Authorization timestamp is more than 300 s away from the sandbox clock: sign "
              "with the sandbox's time (GET /sandbox/clock); a frozen or advanced sandbox clock "
              "is not your wall clock."),
    "signature": ("The signature does not verify: sign the exact bytes sent, '{method}\\n{path}"
                  "\\n<timestamp>\\n<nonce_str>\\n<body>\\n', with the path and query as "
                  "sent (percent-encoding unchanged), using the private key of the certificate "
                  "named in serial_no."),
}
# ... and the facts of this request, when rejection_verdict could record them.
_FACTS = {
    "mchid": " It sent mchid {mchid}.",
    "serial": " It sent {sent}; merchant {row_mchid}'s certificate is {expected}.",
    "stale": (" It sent timestamp {timestamp}, {abs_skew} s {direction} the sandbox clock "
              "({sandbox_now})."),
    "signature": (" Checked with merchant {row_mchid}'s certificate {key}; the body had "
                  "{body_bytes} bytes."),
}


def explain_verdict(row: Any) -> str | None:
    """Turn a request-log row's verdict into sentences a developer can act on."""
    verdict = row.verdict or ""
    if verdict.startswith("missing Accept"):
        return ("WeChat Pay requires an Accept header (application/json) and a non-empty "
                "User-Agent header on every request.")
    if not verdict.startswith("signature rejected: "):
        return None
    issue, _, rest = verdict[len("signature rejected: "):].partition(" (")
    if issue not in _HINTS:
        return None
    facts = dict(item.partition("=")[::2] for item in rest.rstrip(")").split(", ") if item)
    skew = facts.get("skew", "").removesuffix("s")
    if skew.lstrip("-").isdigit():
        facts["abs_skew"] = str(abs(int(skew)))
        facts["direction"] = "ahead of" if int(skew) > 0 else "behind"
    facts.update(row_mchid=row.mchid or "?", method=row.method, path=row.path)
    text = _HINTS[issue].format(**facts)
    try:
        return text + _FACTS.get(issue, "").format(**facts)
    except KeyError:  # logged before the facts were recorded, or the header was unreadable
        return text


def rejection_verdict(request: Request, conn: Connection, issue: str,
                      now_s: int) -> tuple[str, str | None]:
    """The request log's verdict for a failed signature check, and the mchid it claimed.

    The verdict keeps the "signature rejected: <issue>" prefix and adds, in parentheses, the
    facts a developer needs to fix it (which key, which serial, how far the clocks are apart);
    sandbox.backend.explain turns that into sentences for the dashboard.
    """
    verdict = f"signature rejected: {issue}"
    try:
        auth = protocol.parse_authorization(request.headers.get("Authorization"))
    except protocol.AuthorizationFormatError:
        return verdict, None
    merchant = provision.merchant_row(conn, auth.mchid)
    claimed = auth.mchid[:32] if merchant is not None else None
    facts: list[str] = []
    if issue == "mchid":
        facts.append(f"mchid={auth.mchid[:32]}")
    elif issue == "serial" and merchant is not None:
        facts += [f"sent={auth.serial_no[:64]}", f"expected={merchant.serial_no}"]
    elif issue == "stale" and str(auth.timestamp).lstrip("-").isdigit():
        facts += [f"timestamp={auth.timestamp}", f"sandbox_now={now_s}",
                  f"skew={int(auth.timestamp) - now_s}s"]
    elif issue == "signature" and merchant is not None:
        facts += [f"key={merchant.serial_no}",
                  f"body_bytes={len(request.get_data(cache=True))}"]
    if facts:
        verdict += " (" + ", ".join(facts) + ")"
    return verdict[:255], claimed
