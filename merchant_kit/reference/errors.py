"""Driver API errors: `{"error": code, "message": text}` with a 4xx status.

A provider failure the merchant handled is not one of these (the rental's state says what
happened); these are about the driver request itself. Anything else is a 500: the merchant broke.
"""

from __future__ import annotations

from typing import Any


class DriverError(Exception):
    status = 400
    error = "BAD_REQUEST"

    def __init__(self, message: str, error: str | None = None):
        super().__init__(message)
        self.message = message
        if error:
            self.error = error

    def body(self) -> dict[str, str]:
        return {"error": self.error, "message": self.message}


class BadRequest(DriverError):
    status = 400
    error = "BAD_REQUEST"


class NotFound(DriverError):
    status = 404
    error = "NOT_FOUND"


class Conflict(DriverError):
    """The rental's state does not allow this (finish a cancelled rental, refund before paid)."""

    status = 409
    error = "CONFLICT"


class StrictParsingError(Exception):
    """strict_parsing bug: something the merchant's parser did not expect (a crash)."""


# Documented by the reference but not modelled by the kit: a strict parser still knows them.
STRICT_EXTRA_FIELDS = frozenset({"device"})


def strict_check(order: Any, context: str) -> None:
    """Raise what a closed-world parser would: on an unknown field or enum value."""
    unexpected = sorted(set(order.extra) - STRICT_EXTRA_FIELDS)
    values = order.unknown_values()
    if unexpected or values:
        raise StrictParsingError(f"{context}: unexpected {unexpected or values}")
