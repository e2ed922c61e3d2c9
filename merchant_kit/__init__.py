"""merchant_kit: what a merchant uses to talk to Pay Score API v3.

    config = MerchantConfig.from_file("merchant.json")
    client = PayScoreClient(config)
    order = client.create_service_order(CreateServiceOrderRequest(...))

Crypto lives only in `merchant_kit.protocol`; this package never imports the sandbox.
"""

from merchant_kit.client import OPERATIONS, PayScoreClient, encode_body
from merchant_kit.config import MerchantConfig, Timeouts
from merchant_kit.errors import (
    ApiError,
    CircuitOpen,
    DeadlineExceeded,
    RetryBudgetExhausted,
    TransportError,
    UntrustedResponse,
    WechatPayError,
)
from merchant_kit.keys import PlatformCertificate, PlatformKeys
from merchant_kit.models import (
    Collection,
    CollectionDetail,
    CompleteServiceOrderRequest,
    CreateRefundRequest,
    CreateServiceOrderRequest,
    Device,
    DirectCompleteRequest,
    Discount,
    Location,
    ModifyServiceOrderRequest,
    Payment,
    Permission,
    PermissionToken,
    Refund,
    RefundAmount,
    RiskFund,
    ServiceOrder,
    ServiceOrderAck,
    TimeRange,
    UserServiceState,
)
from merchant_kit.notify import (
    CallbackHandler,
    Event,
    NotificationStore,
    PermissionChange,
    PermissionEvent,
    RefundEvent,
    RefundNotice,
    ServiceOrderEvent,
    flask_blueprint,
    wsgi_app,
)
from merchant_kit.resilience import (
    Breaker,
    Deadline,
    RetryBudget,
    RetryPolicy,
    make_breaker,
)

__all__ = [
    "OPERATIONS", "ApiError", "Breaker", "CallbackHandler", "CircuitOpen", "Collection",
    "CollectionDetail", "CompleteServiceOrderRequest", "CreateRefundRequest",
    "CreateServiceOrderRequest", "Deadline", "DeadlineExceeded", "Device", "DirectCompleteRequest",
    "Discount", "Event", "Location", "MerchantConfig", "ModifyServiceOrderRequest",
    "NotificationStore", "PayScoreClient", "Payment", "Permission", "PermissionChange",
    "PermissionEvent", "PermissionToken", "PlatformCertificate", "PlatformKeys", "Refund",
    "RefundAmount", "RefundEvent", "RefundNotice", "RetryBudget", "RetryBudgetExhausted",
    "RetryPolicy", "RiskFund", "ServiceOrder", "ServiceOrderAck", "ServiceOrderEvent",
    "TimeRange", "Timeouts", "TransportError", "UntrustedResponse", "UserServiceState",
    "WechatPayError", "encode_body", "flask_blueprint", "make_breaker", "wsgi_app",
]
