"""The notification outbox: a row written in the same transaction as the state change.

The payload is stored in plaintext and encrypted at send time with the merchant's current
APIv3 key, so a re-delivery is a fresh envelope (new timestamp and nonce) of the same event id.
"""

from __future__ import annotations

import uuid

from sqlalchemy.engine import Connection

from sandbox import db

SUMMARIES = {
    "PAYSCORE.USER_CONFIRM": "确认订单",
    "PAYSCORE.USER_PAID": "支付成功",
    "PAYSCORE.USER_OPEN_SERVICE": "签约成功",
    "PAYSCORE.USER_CLOSE_SERVICE": "解约成功",
    "REFUND.SUCCESS": "退款成功",
    "REFUND.ABNORMAL": "退款异常",
    "REFUND.CLOSED": "退款关闭",
}


def enqueue(conn: Connection, *, mchid: str, event_type: str, url: str | None, resource: dict,
            now_us: int, order_pk: int | None = None, refund_pk: int | None = None,
            scenario_id: str | None = None) -> str | None:
    """Queue one notification; None when there is nowhere to send it (no notify_url)."""
    if not url:
        return None
    notification_id = str(uuid.uuid4())
    conn.execute(db.notifications.insert().values(
        id=notification_id, mchid=mchid, order_pk=order_pk, refund_pk=refund_pk,
        event_type=event_type, summary=SUMMARIES.get(event_type, event_type),
        original_type="refund" if event_type.startswith("REFUND.") else "payscore",
        url=url, resource=resource, status="PENDING", attempts=0, next_attempt_us=now_us,
        created_us=now_us, scenario_id=scenario_id))
    return notification_id
