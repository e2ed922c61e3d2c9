"""Platform keys: which public key verifies a reply or callback signed under a given serial.

Three sources, any combination (reference §5.3, §7):

* the WeChat Pay public key + its id ``PUB_KEY_ID_…`` (public-key mode: never downloaded);
* a platform certificate PEM from the configuration;
* certificates downloaded from ``GET /v3/certificates`` (certificate mode), decrypted with the
  APIv3 key and trusted only after the download's own signature verifies (bootstrap).

Downloads happen lazily on an unknown serial, rate limited, so a flood of forged serials cannot
turn into a flood of certificate downloads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from merchant_kit import protocol
from merchant_kit.errors import WechatPayError

if TYPE_CHECKING:
    from merchant_kit.config import MerchantConfig

log = logging.getLogger(__name__)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class PlatformCertificate:
    serial_no: str
    certificate: x509.Certificate
    effective_time: str | None = None
    expire_time: str | None = None

    @property
    def not_before(self) -> float:
        return (self.certificate.not_valid_before_utc - _EPOCH).total_seconds()

    @property
    def not_after(self) -> float:
        return (self.certificate.not_valid_after_utc - _EPOCH).total_seconds()

    def pem(self) -> bytes:
        return protocol.certificate_pem(self.certificate)


@dataclass(frozen=True)
class _Entry:
    key: protocol.PublicKey
    source: str  # "public_key" | "configured" | "downloaded"
    not_before: float = float("-inf")
    not_after: float = float("inf")

    def valid_at(self, now: float) -> bool:
        return self.not_before <= now <= self.not_after


class PlatformKeys:
    """Maps serial (upper case) or public-key id to a verification key; thread-safe."""

    def __init__(self, *, apiv3_key: bytes | None = None,
                 public_key: protocol.PublicKey | None = None, public_key_id: str | None = None,
                 certificates: Iterable[x509.Certificate | bytes | str] = (),
                 download: bool | None = None,
                 downloader: Callable[[], object] | None = None,
                 min_refresh_interval: float = 60.0, time_fn: Callable[[], float] = time.time):
        if (public_key is None) != (public_key_id is None):
            raise ValueError("public_key and public_key_id go together")
        self._apiv3_key = apiv3_key
        self._time = time_fn
        self.min_refresh_interval = min_refresh_interval
        self.public_key_id = public_key_id.upper() if public_key_id else None
        self._downloader = downloader
        self._last_refresh: float | None = None
        self._write_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._fixed: dict[str, _Entry] = {}
        self._downloaded: dict[str, _Entry] = {}
        self._certs: dict[str, PlatformCertificate] = {}
        if public_key is not None and self.public_key_id:
            self._fixed[self.public_key_id] = _Entry(public_key, "public_key")
        for item in certificates:
            cert = item if isinstance(item, x509.Certificate) else protocol.load_certificate(item)
            pc = PlatformCertificate(protocol.certificate_serial(cert), cert)
            self._fixed[pc.serial_no] = _Entry(protocol.public_key_of(cert), "configured",
                                               pc.not_before, pc.not_after)
            self._certs[pc.serial_no] = pc
        # Public-key-only merchants have no certificates to download (RESOURCE_NOT_EXISTS, §4.2).
        has_certs = bool(self._certs)
        self.download_enabled = (has_certs or public_key is None) if download is None else download
        if self.download_enabled and apiv3_key is None:
            raise ValueError("downloading certificates needs the APIv3 key")
        # Everything `snapshot` reads lives in one dict swapped whole, so readers need no lock.
        self._view: dict[str, _Entry] = dict(self._fixed)

    @classmethod
    def from_config(cls, config: MerchantConfig, **kwargs: object) -> PlatformKeys:
        """Keys for a MerchantConfig; checks platform_serial_no against the configured cert."""
        certs = []
        pem = config.platform_certificate_pem
        if pem:
            cert = protocol.load_certificate(pem)
            expected = config.platform_serial_no
            if expected and int(expected, 16) != cert.serial_number:
                raise ValueError("platform_serial_no does not match the platform certificate")
            certs.append(cert)
        return cls(apiv3_key=config.apiv3_key, public_key=config.platform_public_key,
                   public_key_id=config.platform_public_key_id,
                   certificates=certs, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ reading

    @property
    def mode(self) -> str:
        if self.public_key_id and (self._certs or self.download_enabled):
            return "migrating"
        return "public_key" if self.public_key_id else "certificate"

    def snapshot(self, now: float | None = None) -> dict[str, protocol.PublicKey]:
        """Currently valid keys by serial, in the shape protocol.check_signed_message wants."""
        now = self._time() if now is None else now
        return {serial: e.key for serial, e in self._view.items() if e.valid_at(now)}

    def certificates(self) -> list[PlatformCertificate]:
        return sorted(self._certs.values(), key=lambda c: c.not_after)

    def _get(self, serial: str) -> protocol.PublicKey | None:
        entry = self._view.get(serial.upper())
        return entry.key if entry is not None and entry.valid_at(self._time()) else None

    def lookup(self, serial: str | None) -> protocol.PublicKey | None:
        """The key for `serial`; on a miss, one (rate-limited) refresh, then look again."""
        if not serial:
            return None
        key = self._get(serial)
        if key is None:
            self.refresh()
            # Look again even when this thread's refresh was rate limited: a concurrent refresh
            # that we waited for may just have brought the serial in.
            key = self._get(serial)
        return key

    def request_serial(self) -> str | None:
        """`Wechatpay-Serial` for requests: the key we want the reply signed with (§5.4)."""
        if self.public_key_id:
            return self.public_key_id
        now = self._time()
        valid = [c for c in self._certs.values() if c.not_before <= now <= c.not_after]
        return max(valid, key=lambda c: c.not_after).serial_no if valid else None

    def verify(self, headers: Mapping[str, str] | object, body: bytes,
               now: float | None = None) -> str:
        """check_signed_message with one refresh on an unknown serial; returns the serial."""
        now = int(self._time() if now is None else now)
        try:
            return protocol.check_signed_message(headers, body, self.snapshot(now), now)
        except protocol.SignatureRejected as exc:
            serial = headers.get("Wechatpay-Serial")  # type: ignore[attr-defined]
            if exc.reason != "unknown-serial" or self.lookup(serial) is None:
                raise
        return protocol.check_signed_message(headers, body, self.snapshot(now), now)

    # ------------------------------------------------------------------ refreshing

    def bind_downloader(self, downloader: Callable[[], object]) -> None:
        """Called by PayScoreClient: how `refresh` fetches /v3/certificates."""
        if self._downloader is None:
            self._downloader = downloader

    def refresh(self, force: bool = False) -> bool:
        """Download certificates unless done within `min_refresh_interval`; True if fetched."""
        if not self.download_enabled or self._downloader is None:
            return False
        with self._refresh_lock:
            now = self._time()
            if (not force and self._last_refresh is not None
                    and now - self._last_refresh < self.min_refresh_interval):
                return False
            self._last_refresh = now  # failures count too: a dead endpoint is not hammered
            try:
                self._downloader()
            except (WechatPayError, ValueError) as exc:  # the caller sees the serial unknown
                log.warning("platform certificate refresh failed: %s", exc)
                return False
        return True

    def ingest_certificates(self, headers: Mapping[str, str] | object,
                            body: bytes) -> list[PlatformCertificate]:
        """Decrypt, check and trust a /v3/certificates reply; raises on anything suspicious.

        The AEAD tag proves the certificates came from someone holding our APIv3 key; then the
        reply's signature must verify with one of them (or a key we already trust).
        """
        now = self._time()
        data = json.loads(body)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise protocol.ProtocolError("certificate list missing")
        fresh: dict[str, PlatformCertificate] = {}
        for item in items:
            pc = self._decrypt_item(item)
            if pc.not_before <= now <= pc.not_after:
                fresh[pc.serial_no] = pc
            else:
                log.info("ignoring platform certificate %s outside its validity", pc.serial_no)
        keys = self.snapshot(now)
        keys.update({s: protocol.public_key_of(c.certificate) for s, c in fresh.items()})
        protocol.check_signed_message(headers, body, keys, int(now))
        with self._write_lock:
            self._downloaded = {
                s: _Entry(protocol.public_key_of(c.certificate), "downloaded", c.not_before,
                          c.not_after) for s, c in fresh.items()}
            self._certs = {s: c for s, c in self._certs.items() if s in self._fixed}
            self._certs.update(fresh)
            self._view = {**self._downloaded, **self._fixed}
        return sorted(fresh.values(), key=lambda c: c.not_after)

    def _decrypt_item(self, item: object) -> PlatformCertificate:
        if not isinstance(item, dict) or not isinstance(item.get("serial_no"), str):
            raise protocol.ProtocolError("certificate item malformed")
        pem = protocol.decrypt_resource(self._apiv3_key or b"", item.get("encrypt_certificate"))
        cert = protocol.load_certificate(pem)
        serial = item["serial_no"].upper()
        try:
            same = int(serial, 16) == cert.serial_number
        except ValueError:
            same = False
        if not same:
            raise protocol.ProtocolError(f"certificate serial mismatch for {serial}")
        return PlatformCertificate(serial, cert, item.get("effective_time"),
                                   item.get("expire_time"))
