"""Bug switches: the same reference merchant with one realistic integration mistake switched on.

Each switch is implemented where a real merchant would make the mistake (usually by bypassing
the kit feature that prevents it), so a fault scenario can show that its judge catches it. All
are off by default; `payscore merchant-demo --bug NAME` (repeatable) or the `BUGS` config turns
them on. Names are a contract with the scenario runner: keep them stable.
"""

from __future__ import annotations

from collections.abc import Iterable

BUGS: dict[str, str] = {
    "no_callback_signature_check":
        "Callbacks are decrypted and applied without verifying Wechatpay-Signature (a "
        "hand-written handler instead of the kit's): forged, tampered and WECHATPAY/SIGNTEST/ "
        "probe callbacks are accepted with 204.",
    "no_callback_timestamp_check":
        "Callback signatures are verified but Wechatpay-Timestamp is not checked against the "
        "5-minute window: stale or replayed callbacks are accepted.",
    "in_memory_dedupe":
        "Processed notification ids are kept in a Python set (check, apply, then add) instead "
        "of the database unique key: after a restart, or when two copies arrive at once, a "
        "callback is applied twice (the rental's `callbacks` counter shows it).",
    "no_dedupe":
        "No deduplication at all: every delivery of a callback is applied again.",
    "ack_unprocessable_callbacks":
        "A callback the merchant cannot process (AEAD decryption fails, malformed JSON, its own "
        "code raises) is logged and answered 204 anyway, so WeChat never re-sends it: a "
        "tampered or garbled delivery loses the event.",
    "trust_unsigned_replies":
        "The API client is built with reply verification off: any 2xx JSON is truth (unsigned "
        "or forged replies included) and a garbage 2xx is taken as success.",
    "blind_retry_new_order_no":
        "On any create error or timeout the merchant retries with a NEW out_order_no (up to 3 "
        "more times) instead of resolving the first one by query: duplicate orders.",
    "retry_business_errors":
        "Definite 4xx answers (NO_AUTH, PARAM_ERROR, INVALID_REQUEST such as 综合评估未通过) "
        "are retried with the same parameters, up to 5 more times each.",
    "no_backoff":
        "429 and 5xx are retried immediately, up to 10 attempts, without back-off, retry budget "
        "or Retry-After.",
    "no_reconciliation":
        "Reconciliation does nothing (POST /driver/reconcile answers checked=0, the periodic "
        "job never runs): lost callbacks and unknown outcomes are never resolved.",
    "no_breaker":
        "No circuit breaker: calls keep going to a provider that is failing.",
    "no_key_refresh":
        "Platform keys are frozen at start-up: the configured certificate (or the public key if "
        "no certificate is configured), no download on an unknown Wechatpay-Serial. A "
        "certificate rotation, or a public-key migration, makes replies and callbacks fail.",
    "certificate_only":
        "The WeChat Pay public key is ignored (only platform certificates are trusted): "
        "replies and callbacks signed under PUB_KEY_ID_... are rejected.",
    "ignore_amount_mismatch":
        "Callbacks are applied without checking them against the merchant's own order: "
        "amount, mchid, appid, service_id and out_order_no are not compared.",
    "strict_parsing":
        "Replies and callbacks are parsed strictly: an unknown field or an unknown "
        "state/state_description makes the handler crash (500) instead of being tolerated.",
    "complete_retry_loop":
        "Finishing a rental whose order is still CREATED (user has not confirmed) retries "
        "complete in a tight loop (20 attempts) instead of keeping the finish pending.",
    "no_expiry_release":
        "When the order is found EXPIRED the rental is marked EXPIRED but the device is never "
        "released.",
    "no_deposit_fallback":
        "Users who are not eligible (综合评估未通过, NO_AUTH, service not authorised) get "
        "FAILED instead of the deposit fallback.",
    "recomplete_on_lost_reply":
        "When a complete ends with an unknown outcome, the merchant immediately completes "
        "again with a recomputed body (later end time, one more minute billed) instead of "
        "resolving by query: a second, different bill attempt.",
    "accept_out_of_order":
        "Callbacks overwrite the rental state whatever its order: a USER_CONFIRM delivered "
        "after USER_PAID moves a PAID rental back to IN_SERVICE.",
    "no_pay_sync_path":
        "Long-pending deductions are ignored: reconciliation never queries AWAITING_PAYMENT "
        "rentals and never asks WeChat to collect (pay), so a lost USER_PAID stays unseen.",
}


def validate(names: Iterable[str] | None) -> frozenset[str]:
    """The switched-on bugs; an unknown name fails at start, never silently."""
    if isinstance(names, str):  # "a,b" from an environment variable or a config file
        names = [name.strip() for name in names.split(",") if name.strip()]
    chosen = frozenset(names or ())
    unknown = sorted(chosen - BUGS.keys())
    if unknown:
        raise ValueError(f"unknown bug switch(es): {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(BUGS))}")
    return chosen
