"""PayScoreClient: signed, verified, bounded calls to the Pay Score API v3.

Every request body is serialised once and those exact bytes are signed and sent; the signed URL
is the one `requests` puts on the wire (``PreparedRequest.path_url``). Every 2xx, 204 included,
is verified before its body is read. Failures raise `merchant_kit.errors` exceptions carrying the
Request-ID, `retryable` and `outcome_unknown`.

What the client does when the outcome of an attempt is unknown (read timeout, connection reset
after sending, 5xx, an untrusted or unparseable 2xx), always within the call's total deadline:

| operation                       | on an unknown outcome                                          |
|---------------------------------|----------------------------------------------------------------|
| query_*, download_certificates  | retried (max 3 attempts, backoff): a read cannot double-apply  |
| create_refund                   | retried with the same out_refund_no (its idempotency key); if  |
|                                 | still unknown: query_refund. Found: returned (other amount:    |
|                                 | ApiError INVALID_REQUEST). RESOURCE_NOT_EXISTS: one identical  |
|                                 | re-send                                                        |
| create_service_order,           | never a new out_order_no: query_service_order(out_order_no).   |
| direct_complete_service_order   | Found and matching: returned. Found but different: ApiError    |
|                                 | INVALID_REQUEST (what WeChat answers a non-identical replay).  |
|                                 | ORDER_NOT_EXIST: one re-send of the identical body             |
| complete_service_order          | query. DOING/MCH_COMPLETE or DONE with the same total_amount:  |
|                                 | returned (it succeeded); other total: ApiError INVALID_REQUEST;|
|                                 | not completed: one identical re-send                           |
| cancel_service_order            | query. REVOKED: success (ack built from the order); otherwise  |
|                                 | one identical re-send (same reason), WeChat decides            |
| modify_service_order            | query. DOING/MCH_COMPLETE with the requested total: returned;  |
|                                 | otherwise one identical re-send                                |
| sync_service_order              | query. DONE with a paid_type=MCH collection entry: returned;   |
|                                 | otherwise one identical re-send                                |
| pay_service_order,              | not resolved: raised with outcome_unknown=True; query the      |
| create_permission,              | order / permission before deciding what to do                  |
| terminate_permission_by_*       |                                                                |

Connect failures (nothing sent), 429 and 5xx are retried for every operation; a read timeout or
reset is retried in-call only for the replay-safe ones (queries, refunds, certificates).

If the resolving query itself fails, the original error is raised with outcome_unknown=True
(the query's error chained as __cause__): the caller must resolve later, never re-issue with new
identifiers. A definite error after an earlier unknown attempt is also flagged outcome_unknown,
since it may be the echo of our own first try (e.g. ORDER_CANCELED after a 500 on cancel).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pybreaker
import requests

from merchant_kit.config import MerchantConfig
from merchant_kit.errors import ApiError
from merchant_kit.keys import PlatformCertificate, PlatformKeys
from merchant_kit.models import (
    CompleteServiceOrderRequest,
    CreateRefundRequest,
    CreateServiceOrderRequest,
    DirectCompleteRequest,
    ModifyServiceOrderRequest,
    Permission,
    PermissionToken,
    Refund,
    ServiceOrder,
    ServiceOrderAck,
    UserServiceState,
)
from merchant_kit.resilience import Breaker, Deadline, RetryPolicy
from merchant_kit.transport import Operation, SignedTransport, encode_body

R = TypeVar("R")
ORDER = "/v3/payscore/serviceorder"


OPERATIONS = {op.name: op for op in (
    Operation("create_service_order", "POST", ORDER),
    Operation("query_service_order", "GET", ORDER, replay_safe=True),
    Operation("cancel_service_order", "POST", ORDER + "/{out_order_no}/cancel"),
    Operation("modify_service_order", "POST", ORDER + "/{out_order_no}/modify"),
    Operation("complete_service_order", "POST", ORDER + "/{out_order_no}/complete"),
    Operation("pay_service_order", "POST", ORDER + "/{out_order_no}/pay"),
    Operation("sync_service_order", "POST", ORDER + "/{out_order_no}/sync"),
    Operation("direct_complete_service_order", "POST", ORDER + "/direct-complete"),
    Operation("create_permission", "POST", "/v3/payscore/permissions"),
    Operation("query_permission_by_code", "GET",
              "/v3/payscore/permissions/authorization-code/{authorization_code}", replay_safe=True),
    Operation("terminate_permission_by_code", "POST",
              "/v3/payscore/permissions/authorization-code/{authorization_code}/terminate", 204),
    Operation("query_permission_by_openid", "GET", "/v3/payscore/permissions/openid/{openid}",
              replay_safe=True),
    Operation("terminate_permission_by_openid", "POST",
              "/v3/payscore/permissions/openid/{openid}/terminate", 204),
    Operation("query_user_service_state", "GET", "/v3/payscore/user-service-state",
              replay_safe=True),
    Operation("create_refund", "POST", "/v3/refund/domestic/refunds", replay_safe=True),
    Operation("query_refund", "GET", "/v3/refund/domestic/refunds/{out_refund_no}",
              replay_safe=True),
    Operation("download_certificates", "GET", "/v3/certificates", replay_safe=True),
)}


class PayScoreClient(SignedTransport):
    """One method per operation; thread-safe if the `requests.Session` is used only here."""

    operations = OPERATIONS

    def __init__(self, config: MerchantConfig, keys: PlatformKeys | None = None,
                 session: requests.Session | None = None,
                 breaker: Breaker | pybreaker.CircuitBreaker | None = None,
                 retry_policy: RetryPolicy | None = None,
                 time_fn: Callable[[], float] = time.time):
        super().__init__(config, keys, session, breaker, retry_policy, time_fn)
        # Key refreshes fetch /v3/certificates through this client, signed and verified.
        self.keys.bind_downloader(self.download_certificates)

    # ------------------------------------------------------------------ request helpers

    def _fill(self, request: R) -> R:
        changes = {k: getattr(self.config, k) for k in ("appid", "service_id")
                   if hasattr(request, k) and getattr(request, k) is None}
        return dataclasses.replace(request, **changes) if changes else request  # type: ignore[type-var]

    def _ids(self, appid: str | None, service_id: str | None) -> tuple[str, str]:
        return appid or self.config.appid, service_id or self.config.service_id

    def _find_order(self, out_order_no: str, appid: str, service_id: str,
                    deadline: Deadline) -> ServiceOrder | None:
        try:
            return self._query_order([("out_order_no", out_order_no)], appid, service_id,
                                     deadline)
        except ApiError as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return None
            raise

    # ------------------------------------------------------------------ service orders

    def create_service_order(self, request: CreateServiceOrderRequest) -> ServiceOrder:
        return self._create_like("create_service_order", request)

    def _create_like(self, name: str, request: CreateServiceOrderRequest | DirectCompleteRequest
                     ) -> ServiceOrder:
        """create / direct-complete: resolve unknown outcomes by out_order_no, never a new one."""
        sent, dl = self._fill(request).to_dict(), self._deadline()
        body = encode_body(sent)

        def send() -> ServiceOrder:
            return ServiceOrder.from_dict(self._call(name, body=body, deadline=dl))

        def probe() -> ServiceOrder | None:
            order = self._find_order(sent["out_order_no"], sent["appid"], sent["service_id"], dl)
            return None if order is None else _same_order(order, sent)
        return self._guarded(send, probe)


    def query_service_order(self, out_order_no: str | None = None, *,
                            query_id: str | None = None, appid: str | None = None,
                            service_id: str | None = None) -> ServiceOrder:
        if (out_order_no is None) == (query_id is None):
            raise ValueError("give exactly one of out_order_no or query_id")
        key = [("out_order_no", out_order_no)] if out_order_no else [("query_id", query_id)]
        return self._query_order(key, *self._ids(appid, service_id), self._deadline())

    def _query_order(self, key: list[tuple[str, Any]], appid: str, service_id: str,
                     deadline: Deadline) -> ServiceOrder:
        query = [*key, ("service_id", service_id), ("appid", appid)]
        return ServiceOrder.from_dict(self._call("query_service_order", query=query,
                                                 deadline=deadline))

    def cancel_service_order(self, out_order_no: str, reason: str, *, appid: str | None = None,
                             service_id: str | None = None) -> ServiceOrderAck:
        appid, service_id = self._ids(appid, service_id)
        body = encode_body({"appid": appid, "service_id": service_id, "reason": reason})

        def applied(order: ServiceOrder) -> ServiceOrderAck | None:
            if order.state != "REVOKED":
                return None
            return ServiceOrderAck(appid=order.appid, mchid=order.mchid,
                                   out_order_no=order.out_order_no,
                                   service_id=order.service_id, order_id=order.order_id)
        return self._order_action("cancel_service_order", out_order_no, body, appid, service_id,
                                  ServiceOrderAck.from_dict, applied)

    def modify_service_order(self, out_order_no: str,
                             request: ModifyServiceOrderRequest) -> ServiceOrder:
        req = self._fill(request)

        def applied(order: ServiceOrder) -> ServiceOrder | None:
            done = (order.state, order.state_description) == ("DOING", "MCH_COMPLETE")
            return order if done and order.total_amount == req.total_amount else None
        return self._order_action("modify_service_order", out_order_no,
                                  encode_body(req.to_dict()), req.appid, req.service_id,
                                  ServiceOrder.from_dict, applied)

    def complete_service_order(self, out_order_no: str,
                               request: CompleteServiceOrderRequest) -> ServiceOrder:
        req = self._fill(request)

        def applied(order: ServiceOrder) -> ServiceOrder | None:
            completed = order.state == "DONE" or (
                order.state == "DOING" and order.state_description == "MCH_COMPLETE")
            if not completed:
                return None
            if order.total_amount != req.total_amount:
                raise _conflict(f"order already completed with total_amount "
                                f"{order.total_amount}, not {req.total_amount}")
            return order
        return self._order_action("complete_service_order", out_order_no,
                                  encode_body(req.to_dict()), req.appid, req.service_id,
                                  ServiceOrder.from_dict, applied)

    def pay_service_order(self, out_order_no: str, *, appid: str | None = None,
                          service_id: str | None = None) -> ServiceOrderAck:
        appid, service_id = self._ids(appid, service_id)
        body = encode_body({"appid": appid, "service_id": service_id})
        return ServiceOrderAck.from_dict(self._call(
            "pay_service_order", path_params={"out_order_no": out_order_no}, body=body))

    def sync_service_order(self, out_order_no: str, paid_time: str, *, type: str = "Order_Paid",
                           appid: str | None = None,
                           service_id: str | None = None) -> ServiceOrder:
        appid, service_id = self._ids(appid, service_id)
        body = encode_body({"appid": appid, "service_id": service_id, "type": type,
                            "detail": {"paid_time": paid_time}})

        def applied(order: ServiceOrder) -> ServiceOrder | None:
            details = (order.collection.details or []) if order.collection else []
            by_merchant = any(d.paid_type == "MCH" for d in details)
            return order if order.state == "DONE" and by_merchant else None
        return self._order_action("sync_service_order", out_order_no, body, appid, service_id,
                                  ServiceOrder.from_dict, applied)

    def _order_action(self, name: str, out_order_no: str, body: bytes, appid: str,
                      service_id: str, parse: Callable[[Any], R],
                      applied: Callable[[ServiceOrder], R | None]) -> R:
        dl = self._deadline()

        def send() -> R:
            return parse(self._call(name, path_params={"out_order_no": out_order_no},
                                    body=body, deadline=dl))

        def probe() -> R | None:
            order = self._find_order(out_order_no, appid, service_id, dl)
            return applied(order) if order is not None else None
        return self._guarded(send, probe)

    def direct_complete_service_order(self, request: DirectCompleteRequest) -> ServiceOrder:
        return self._create_like("direct_complete_service_order", request)

    # ------------------------------------------------------------------ permissions

    def create_permission(self, authorization_code: str, *, notify_url: str | None = None,
                          appid: str | None = None,
                          service_id: str | None = None) -> PermissionToken:
        appid, service_id = self._ids(appid, service_id)
        payload = {"service_id": service_id, "appid": appid,
                   "authorization_code": authorization_code}
        if notify_url:
            payload["notify_url"] = notify_url
        return PermissionToken.from_dict(self._call("create_permission",
                                                    body=encode_body(payload)))

    def query_permission_by_code(self, authorization_code: str, *,
                                 service_id: str | None = None) -> Permission:
        return Permission.from_dict(self._call(
            "query_permission_by_code", path_params={"authorization_code": authorization_code},
            query=[("service_id", service_id or self.config.service_id)]))

    def terminate_permission_by_code(self, authorization_code: str, reason: str, *,
                                     service_id: str | None = None) -> None:
        body = encode_body({"service_id": service_id or self.config.service_id,
                            "reason": reason})
        self._call("terminate_permission_by_code",
                   path_params={"authorization_code": authorization_code}, body=body)

    def query_permission_by_openid(self, openid: str, *, appid: str | None = None,
                                   service_id: str | None = None) -> Permission:
        appid, service_id = self._ids(appid, service_id)
        return Permission.from_dict(self._call(
            "query_permission_by_openid", path_params={"openid": openid},
            query=[("service_id", service_id), ("appid", appid)]))

    def terminate_permission_by_openid(self, openid: str, reason: str, *,
                                       appid: str | None = None,
                                       service_id: str | None = None) -> None:
        appid, service_id = self._ids(appid, service_id)
        body = encode_body({"service_id": service_id, "appid": appid, "reason": reason})
        self._call("terminate_permission_by_openid", path_params={"openid": openid}, body=body)

    def query_user_service_state(self, openid: str, *, appid: str | None = None,
                                 service_id: str | None = None) -> UserServiceState:
        appid, service_id = self._ids(appid, service_id)
        return UserServiceState.from_dict(self._call(
            "query_user_service_state",
            query=[("service_id", service_id), ("appid", appid), ("openid", openid)]))

    # ------------------------------------------------------------------ refunds, certificates

    def create_refund(self, request: CreateRefundRequest) -> Refund:
        body, dl = encode_body(request.to_dict()), self._deadline()

        def send() -> Refund:
            return Refund.from_dict(self._call("create_refund", body=body, deadline=dl))

        def probe() -> Refund | None:
            try:
                found = Refund.from_dict(self._call(
                    "query_refund", path_params={"out_refund_no": request.out_refund_no},
                    deadline=dl))
            except ApiError as exc:
                if exc.code == "RESOURCE_NOT_EXISTS":
                    return None
                raise
            asked = request.amount.refund
            if found.amount and found.amount.refund not in (None, asked):
                raise _conflict(f"refund {request.out_refund_no} exists for "
                                f"{found.amount.refund} fen, not {asked}")
            return found
        return self._guarded(send, probe)

    def query_refund(self, out_refund_no: str) -> Refund:
        return Refund.from_dict(self._call("query_refund",
                                           path_params={"out_refund_no": out_refund_no}))

    def download_certificates(self,
                              algorithm_type: str | None = None) -> list[PlatformCertificate]:
        """GET /v3/certificates; the reply is verified with what it carries, then trusted."""
        query = [("algorithm_type", algorithm_type)] if algorithm_type else None
        return self._call("download_certificates", query=query,
                          accept=self.keys.ingest_certificates)


def _conflict(message: str) -> ApiError:
    # What WeChat itself answers for a non-identical replay (§1.4); status None = found locally.
    return ApiError(f"订单重入参数校验失败: {message}", code="INVALID_REQUEST", retryable=False,
                    outcome_unknown=False)


_COMPARED = ("appid", "service_id", "service_introduction", "openid", "attach", "notify_url",
             "total_amount")


def _same_order(order: ServiceOrder, sent: dict[str, Any]) -> ServiceOrder:
    """The order found by out_order_no must be the one we asked for, field by echoed field."""
    got = order.to_dict()
    diffs = [k for k in _COMPARED if k in sent and k in got and sent[k] != got[k]]
    risk_sent, risk_got = sent.get("risk_fund") or {}, got.get("risk_fund") or {}
    diffs += [f"risk_fund.{k}" for k in ("name", "amount")
              if k in risk_sent and k in risk_got and risk_sent[k] != risk_got[k]]
    if diffs:
        raise _conflict(f"order {order.out_order_no} exists with different {', '.join(diffs)}")
    return order
