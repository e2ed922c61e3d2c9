"""Pre-authorisation (免确认预授权, reference §2.10): one method per operation name.

A permission row is either a merchant's pre-authorisation (`authorization_code`, UNBINDUSER
until a user accepts it) or an openid-only authorisation the user granted directly. The user's
side (accept, close the service) is the control API's; both ends enqueue
PAYSCORE.USER_OPEN_SERVICE / PAYSCORE.USER_CLOSE_SERVICE (§6.4) in the same transaction.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine, Row

from merchant_kit.protocol import payscore_time, rfc3339
from sandbox import db, errors, provision
from sandbox.backend import orders as o
from sandbox.callbacks import outbox
from sandbox.clock import to_datetime
from sandbox.world import reactions, users

TOKEN_TTL_US = 3600 * 1_000_000  # apply_permissions_token is valid for one hour (§2.10)
UNFINISHED = ("CREATED", "DOING")


def _not_found() -> errors.OrderNotExist:
    # The Pay Score pages document one 404 code for every endpoint, permissions included.
    return errors.OrderNotExist("授权记录不存在")


def _time(us: int | None) -> str | None:
    return None if us is None else rfc3339(to_datetime(us))


class Permissions:
    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------ merchant operations

    def create_permission(self, mchid: str, body: dict, now_us: int) -> dict[str, Any]:
        with db.write_tx(self.engine) as conn:
            merchant = provision.merchant_row(conn, mchid)
            o.check_merchant_ids(merchant, body["appid"], body["service_id"])
            existing = self._by_code(conn, mchid, body["authorization_code"], lock=True)
            if existing is not None:
                same = (existing.appid, existing.service_id, existing.notify_url) == \
                    (body["appid"], body["service_id"], body.get("notify_url"))
                if not same or existing.state != "UNBINDUSER":
                    raise errors.InvalidRequest("商户预授权协议号重复",
                                                detail={"field": "/authorization_code",
                                                        "location": "body",
                                                        "issue": "already used"})
                token = _new_token()  # a retry gets a fresh hour on the same code
                conn.execute(update(db.permissions).where(db.permissions.c.pk == existing.pk)
                             .values(token=token, created_us=now_us))
                return {"apply_permissions_token": token}
            token = _new_token()
            conn.execute(db.permissions.insert().values(
                mchid=mchid, service_id=body["service_id"], appid=body["appid"],
                authorization_code=body["authorization_code"], openid=None, state="UNBINDUSER",
                notify_url=body.get("notify_url"), token=token, created_us=now_us))
            return {"apply_permissions_token": token}

    def query_permission_by_code(self, mchid: str, authorization_code: str,
                                 query: dict) -> dict[str, Any]:
        with db.read_tx(self.engine) as conn:
            row = self._by_code(conn, mchid, authorization_code)
            if row is None or row.service_id != query["service_id"]:
                raise _not_found()
            out = self._view(row)
            if row.notify_url:
                out["notify_url"] = row.notify_url
            return out

    def terminate_permission_by_code(self, mchid: str, authorization_code: str, body: dict,
                                     now_us: int) -> None:
        with db.write_tx(self.engine) as conn:
            row = self._by_code(conn, mchid, authorization_code, lock=True)
            if row is None or row.service_id != body["service_id"]:
                raise _not_found()
            if row.state == "UNAVAILABLE":
                return  # already ended: terminating again changes nothing
            if row.openid:
                self._refuse_if_unfinished(conn, mchid, row.service_id, row.openid)
            self._close(conn, [row], now_us, {"by": "merchant", "reason": body["reason"]})
            return

    def query_permission_by_openid(self, mchid: str, openid: str,
                                   query: dict) -> dict[str, Any]:
        with db.read_tx(self.engine) as conn:
            rows = self._by_openid(conn, mchid, query["service_id"], openid)
            if not rows or all(r.appid != query["appid"] for r in rows):
                # never authorised here: the user simply has no authorisation (§2.10 states)
                return {"service_id": query["service_id"], "appid": query["appid"],
                        "mchid": mchid, "openid": openid,
                        "authorization_state": "UNAVAILABLE"}
            return self._view(self._latest(rows))

    def terminate_permission_by_openid(self, mchid: str, openid: str, body: dict,
                                       now_us: int) -> None:
        with db.write_tx(self.engine) as conn:
            rows = [r for r in self._by_openid(conn, mchid, body["service_id"], openid,
                                               lock=True) if r.appid == body["appid"]]
            if not rows:
                raise _not_found()
            open_rows = [r for r in rows if r.state == "AVAILABLE"]
            if not open_rows:
                return
            self._refuse_if_unfinished(conn, mchid, body["service_id"], openid)
            self._close(conn, open_rows, now_us, {"by": "merchant", "reason": body["reason"]})
            return

    def query_user_service_state(self, mchid: str, query: dict, now_us: int) -> dict[str, Any]:
        with db.read_tx(self.engine) as conn:
            rows = self._by_openid(conn, mchid, query["service_id"], query["openid"])
            available = any(r.state == "AVAILABLE" and r.appid == query["appid"] for r in rows)
            # an authorised user who has become ineligible, frozen or blacklisted cannot use it
            available = available and users.can_use_service(conn, query["openid"], now_us)
        return {"appid": query["appid"], "service_id": query["service_id"],
                "openid": query["openid"],
                "use_service_state": "AVAILABLE" if available else "UNAVAILABLE"}

    # ------------------------------------------------------------ simulated users

    def user_authorize_permission(self, mchid: str, body: dict, now_us: int) -> dict[str, Any]:
        """The user accepts: binds a pre-authorisation code, or opens the service directly."""
        openid, code = body["openid"], body.get("authorization_code")
        with db.write_tx(self.engine) as conn:
            merchant = provision.merchant_row(conn, mchid)
            if merchant is None:
                raise errors.MchNotExists()
            reactions.check_can_open_service(conn, openid, now_us)
            if code is None:
                return self._authorize_openid(conn, merchant, openid, now_us)
            row = self._by_code(conn, mchid, code, lock=True)
            if row is None:
                raise _not_found()
            if row.state == "AVAILABLE" and row.openid == openid:
                return self._view(row)  # accepting twice changes nothing
            if row.state != "UNBINDUSER":
                raise errors.InvalidRequest("该授权协议号已绑定用户或已解除授权")
            if now_us > row.created_us + TOKEN_TTL_US:
                raise errors.InvalidRequest("apply_permissions_token已过期，请重新预授权")
            return self._open(conn, row, openid, now_us)

    def user_revoke_permission(self, mchid: str, body: dict, now_us: int) -> dict[str, Any]:
        """The user closes the service in the Pay Score app (every authorisation of theirs).

        Not blocked by unfinished orders: the control API simulates the user, and a test may
        want to see how a merchant copes with a revocation mid-order.
        """
        openid = body["openid"]
        with db.write_tx(self.engine) as conn:
            merchant = provision.merchant_row(conn, mchid)
            if merchant is None:
                raise errors.MchNotExists()
            rows = [r for r in self._by_openid(conn, mchid, merchant.service_id, openid,
                                               lock=True) if r.state == "AVAILABLE"]
            if not rows:
                raise _not_found()
            self._close(conn, rows, now_us, {"by": "user"})
            return self._view(self._latest(self._by_openid(conn, mchid, merchant.service_id,
                                                           openid)))

    # ------------------------------------------------------------ helpers

    def _authorize_openid(self, conn: Connection, merchant: Row, openid: str,
                          now_us: int) -> dict[str, Any]:
        rows = self._by_openid(conn, merchant.mchid, merchant.service_id, openid, lock=True)
        direct = [r for r in rows if r.authorization_code is None]
        if direct and direct[0].state == "AVAILABLE":
            return self._view(direct[0])
        if direct:
            row = direct[0]
        else:
            pk = conn.execute(db.permissions.insert().values(
                mchid=merchant.mchid, service_id=merchant.service_id, appid=merchant.appid,
                authorization_code=None, openid=openid, state="UNAVAILABLE", notify_url=None,
                token=None, created_us=now_us)).inserted_primary_key[0]
            row = self._row(conn, pk)
        return self._open(conn, row, openid, now_us)

    def _open(self, conn: Connection, row: Row, openid: str, now_us: int) -> dict[str, Any]:
        conn.execute(update(db.permissions).where(db.permissions.c.pk == row.pk).values(
            state="AVAILABLE", openid=openid, authorized_us=now_us, cancelled_us=None))
        row = self._row(conn, row.pk)
        self._notify(conn, row, "PAYSCORE.USER_OPEN_SERVICE", now_us)
        return self._view(row)

    def _close(self, conn: Connection, rows: list[Row], now_us: int, detail: dict) -> None:
        for row in rows:
            conn.execute(update(db.permissions).where(db.permissions.c.pk == row.pk)
                         .values(state="UNAVAILABLE", cancelled_us=now_us))
        # One closing of the service, one notice: to the latest authorisation's URL.
        latest = self._row(conn, self._latest(rows).pk)
        if latest.openid:
            self._notify(conn, latest, "PAYSCORE.USER_CLOSE_SERVICE", now_us)

    @staticmethod
    def _notify(conn: Connection, row: Row, event_type: str, now_us: int) -> None:
        merchant = provision.merchant_row(conn, row.mchid)
        resource = {"appid": row.appid, "mchid": row.mchid, "service_id": row.service_id,
                    "openid": row.openid, "user_service_status": event_type.split(".", 1)[1],
                    "openorclose_time": payscore_time(to_datetime(now_us))}
        if row.authorization_code:
            resource["authorization_code"] = row.authorization_code
        outbox.enqueue(conn, mchid=row.mchid, event_type=event_type,
                       url=row.notify_url or merchant.notify_url, resource=resource,
                       now_us=now_us)

    @staticmethod
    def _refuse_if_unfinished(conn: Connection, mchid: str, service_id: str,
                              openid: str) -> None:
        unfinished = conn.execute(select(db.orders.c.pk).where(
            db.orders.c.mchid == mchid, db.orders.c.service_id == service_id,
            db.orders.c.openid == openid, db.orders.c.state.in_(UNFINISHED)).limit(1)).first()
        if unfinished is not None:
            raise errors.InvalidRequest("存在未完成订单，无法解除授权")

    @staticmethod
    def _view(row: Row) -> dict[str, Any]:
        out: dict[str, Any] = {"service_id": row.service_id, "appid": row.appid,
                               "mchid": row.mchid}
        if row.openid:
            out["openid"] = row.openid
        if row.authorization_code:
            out["authorization_code"] = row.authorization_code
        out["authorization_state"] = row.state
        if row.cancelled_us is not None:
            out["cancel_authorization_time"] = _time(row.cancelled_us)
        if row.authorized_us is not None:
            out["authorization_success_time"] = _time(row.authorized_us)
        return out

    @staticmethod
    def _latest(rows: list[Row]) -> Row:
        """The user's most recent authorisation decides what a query by openid shows."""
        return max(rows, key=lambda r: (r.state == "AVAILABLE", r.authorized_us or 0, r.pk))

    @staticmethod
    def _row(conn: Connection, pk: int) -> Row:
        return conn.execute(select(db.permissions).where(db.permissions.c.pk == pk)).one()

    @staticmethod
    def _by_code(conn: Connection, mchid: str, code: str, lock: bool = False) -> Row | None:
        stmt = select(db.permissions).where(db.permissions.c.mchid == mchid,
                                            db.permissions.c.authorization_code == code)
        return conn.execute(db.for_update(stmt, conn) if lock else stmt).first()

    @staticmethod
    def _by_openid(conn: Connection, mchid: str, service_id: str, openid: str,
                   lock: bool = False) -> list[Row]:
        stmt = select(db.permissions).where(db.permissions.c.mchid == mchid,
                                            db.permissions.c.service_id == service_id,
                                            db.permissions.c.openid == openid)
        return list(conn.execute(db.for_update(stmt, conn) if lock else stmt))


def _new_token() -> str:
    return "AUTH" + secrets.token_urlsafe(96)
