"""WeChat Pay error codes as exception classes, rendered by one handler (reference §4).

Views and backends raise; nothing else builds error JSON. The class name says the code, the
class says the HTTP status; the message is WeChat's own wording where the reference has it.
"""

from __future__ import annotations

from typing import Any


class PayScoreError(Exception):
    status = 500
    code = "SYSTEM_ERROR"
    message = "系统异常，请稍后重试"
    internal_code = "0"  # shown as the Request-ID suffix, as WeChat does (§5.6)

    def __init__(self, message: str | None = None, detail: dict | None = None,
                 internal_code: str | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.detail = detail
        if internal_code:
            self.internal_code = internal_code

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            out["detail"] = self.detail
        return out


class ParamError(PayScoreError):
    status, code, message = 400, "PARAM_ERROR", "参数错误"


class InvalidRequest(PayScoreError):
    status, code, message = 400, "INVALID_REQUEST", "HTTP 请求不符合微信支付 APIv3 接口规则"


class InvalidOrderState(PayScoreError):
    status, code, message = 400, "INVALID_ORDER_STATE", "单据状态错误"


class OrderCanceled(PayScoreError):
    status, code, message = 400, "ORDER_CANCELED", "单据已取消"


class OrderDone(PayScoreError):
    status, code, message = 400, "ORDER_DONE", "订单已完成"


class SignError(PayScoreError):
    status, code, message = 401, "SIGN_ERROR", "错误的签名，验签失败"
    internal_code = "270924360"


class NoAuth(PayScoreError):
    status, code, message = 403, "NO_AUTH", "商户暂无权限使用此服务"


class TradeError(PayScoreError):
    status, code, message = 403, "TRADE_ERROR", "扣款失败"


class UserAccountAbnormal(PayScoreError):
    status, code, message = 403, "USER_ACCOUNT_ABNORMAL", "退款请求失败，用户账号已注销"


class NotEnough(PayScoreError):
    status, code, message = 403, "NOT_ENOUGH", "余额不足"


class OrderNotExist(PayScoreError):
    status, code, message = 404, "ORDER_NOT_EXIST", "订单不存在"


class ResourceNotExists(PayScoreError):
    status, code, message = 404, "RESOURCE_NOT_EXISTS", "资源不存在"


class MchNotExists(PayScoreError):
    status, code, message = 400, "MCH_NOT_EXISTS", "商户号不存在"


class NotFound(PayScoreError):
    status, code, message = 404, "NOT_FOUND", "请求的资源不存在"


class MethodNotAllowed(PayScoreError):
    status, code, message = 405, "METHOD_NOT_ALLOWED", "请求方法不被允许"


class FrequencyLimited(PayScoreError):
    status, code, message = 429, "FREQUENCY_LIMITED", "频率超限"


class SystemError_(PayScoreError):
    status, code, message = 500, "SYSTEM_ERROR", "系统异常，请稍后重试"


class ServiceUnavailable(PayScoreError):
    status, code, message = 503, "SERVICE_UNAVAILABLE", "服务不可用，请稍后重试"


def param_error(field: str, issue: str, value: Any = None, location: str = "body") -> ParamError:
    """PARAM_ERROR with the documented detail shape (§4.1)."""
    detail: dict[str, Any] = {"field": field, "issue": issue, "location": location}
    if value is not None:
        detail["value"] = value if isinstance(value, (str, int, float, bool)) else str(value)
    return ParamError(f"参数错误：{field} {issue}", detail=detail)


BY_CODE: dict[str, type[PayScoreError]] = {
    cls.code: cls for cls in PayScoreError.__subclasses__() if cls.code != "SYSTEM_ERROR"
}
BY_CODE["SYSTEM_ERROR"] = SystemError_
