"""Merchant configuration: identities, keys and network budgets.

Secrets are held as loaded objects (the private key) or bytes (the APIv3 key) and never appear in
`repr`, so logging a config cannot leak them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from merchant_kit import protocol

DEFAULT_USER_AGENT = "payscore-merchant-kit/0.1 (python)"

# The keys of the sandbox's merchant.json, in its order.
CONFIG_FILE_KEYS = (
    "base_url", "mchid", "appid", "service_id", "merchant_serial_no", "private_key_path",
    "apiv3_key", "platform_certificate_path", "platform_serial_no", "platform_public_key_path",
    "platform_public_key_id",
)
_REQUIRED = ("base_url", "mchid", "appid", "service_id", "merchant_serial_no", "apiv3_key")


@dataclass(frozen=True)
class Timeouts:
    # 3.05 s: just above the 3 s TCP SYN retransmit, so one lost SYN does not fail the connect.
    connect: float = 3.05
    read: float = 10.0


@dataclass
class MerchantConfig:
    base_url: str
    mchid: str
    appid: str
    service_id: str
    merchant_serial_no: str
    private_key: protocol.PrivateKey = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    platform_certificate_pem: bytes | None = field(default=None, repr=False)
    platform_serial_no: str | None = None
    platform_public_key: protocol.PublicKey | None = field(default=None, repr=False)
    platform_public_key_id: str | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    total_deadline: float = 30.0
    user_agent: str = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        if isinstance(self.apiv3_key, str):
            self.apiv3_key = self.apiv3_key.encode("utf-8")
        # AEAD_AES_256_GCM needs exactly 32 bytes; a 16-byte key would silently mean AES-128.
        if not isinstance(self.apiv3_key, bytes) or len(self.apiv3_key) != 32:
            raise ValueError("apiv3_key must be exactly 32 bytes")
        for name in ("base_url", "mchid", "appid", "service_id", "merchant_serial_no"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required")
        self.base_url = self.base_url.rstrip("/")
        self.merchant_serial_no = self.merchant_serial_no.upper()
        if isinstance(self.platform_certificate_pem, str):
            self.platform_certificate_pem = self.platform_certificate_pem.encode("ascii")
        if (self.platform_public_key is None) != (self.platform_public_key_id is None):
            raise ValueError("platform_public_key and platform_public_key_id go together")
        if self.platform_serial_no:
            self.platform_serial_no = self.platform_serial_no.upper()
        if self.total_deadline <= 0:
            raise ValueError("total_deadline must be positive")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> MerchantConfig:
        """Load the sandbox's merchant.json; relative paths are relative to the file's folder."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"{path}: expected a JSON object")
        return cls.from_dict(data, base_dir=path.parent, **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | os.PathLike[str] | None = None,
                  **overrides: Any) -> MerchantConfig:
        """Build from merchant.json-shaped data; `*_pem` keys may replace the `*_path` ones."""
        missing = [k for k in _REQUIRED if not data.get(k)]
        if missing:
            raise ValueError(f"merchant config lacks {', '.join(missing)}")
        base = Path(base_dir) if base_dir is not None else Path.cwd()

        def read(key: str) -> bytes | None:
            inline = data.get(key.replace("_path", "_pem"))
            if inline:
                return inline.encode("ascii") if isinstance(inline, str) else inline
            value = data.get(key)
            if not value:
                return None
            file = Path(value)
            return (file if file.is_absolute() else base / file).read_bytes()

        private_pem = read("private_key_path")
        if private_pem is None:
            raise ValueError("merchant config lacks private_key_path")
        public_pem = read("platform_public_key_path")
        kwargs: dict[str, Any] = {
            "base_url": data["base_url"], "mchid": str(data["mchid"]), "appid": data["appid"],
            "service_id": str(data["service_id"]),
            "merchant_serial_no": data["merchant_serial_no"],
            "private_key": protocol.load_private_key(private_pem),
            "apiv3_key": data["apiv3_key"],
            "platform_certificate_pem": read("platform_certificate_path"),
            "platform_serial_no": data.get("platform_serial_no") or None,
            "platform_public_key": protocol.load_public_key(public_pem) if public_pem else None,
            "platform_public_key_id": data.get("platform_public_key_id") or None,
        }
        if "timeouts" in data:
            kwargs["timeouts"] = Timeouts(**data["timeouts"])
        for key in ("total_deadline", "user_agent"):
            if key in data:
                kwargs[key] = data[key]
        kwargs.update(overrides)
        return cls(**kwargs)
