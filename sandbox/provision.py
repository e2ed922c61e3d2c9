"""Provisioning: the sandbox platform's keys and the merchants, and merchant.json.

First start creates a platform certificate (RSA-2048, upper-case hex serial) and a "WeChat Pay
public key" (`PUB_KEY_ID_` + digits), and a demo merchant; later starts reuse what is stored.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine

from merchant_kit import protocol
from sandbox import db
from sandbox.clock import to_datetime

_KEY_ALPHABET = string.ascii_letters + string.digits
FIVE_YEARS_US = 5 * 365 * 86400 * 1_000_000


@dataclass(frozen=True)
class PlatformKey:
    serial: str
    kind: str  # certificate | public_key
    private_key: protocol.PrivateKey
    public_key: protocol.PublicKey
    certificate_pem: bytes | None
    effective_us: int
    expire_us: int | None


def _digits(n: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(n))


KeyGen = Callable[[], protocol.PrivateKey]


def create_platform_certificate(conn: Connection, now_us: int,
                                keygen: KeyGen = protocol.generate_private_key) -> str:
    key = keygen()
    serial = secrets.randbits(159) | (1 << 158)  # 40 hex digits, like Tenpay's serials
    cert = protocol.make_certificate(key, "Tenpay.com sign (payscore-sandbox)", serial,
                                     to_datetime(now_us))
    serial_hex = protocol.certificate_serial(cert)
    conn.execute(db.platform_keys.insert().values(
        serial=serial_hex, kind="certificate",
        private_key_pem=protocol.private_key_pem(key).decode(),
        certificate_pem=protocol.certificate_pem(cert).decode(),
        public_key_pem=protocol.public_key_pem(key).decode(),
        effective_us=now_us, expire_us=now_us + FIVE_YEARS_US, active=True))
    return serial_hex


def create_platform_public_key(conn: Connection, now_us: int,
                               keygen: KeyGen = protocol.generate_private_key) -> str:
    key = keygen()
    key_id = protocol.PUBLIC_KEY_ID_PREFIX + _digits(34)
    conn.execute(db.platform_keys.insert().values(
        serial=key_id, kind="public_key",
        private_key_pem=protocol.private_key_pem(key).decode(), certificate_pem=None,
        public_key_pem=protocol.public_key_pem(key).decode(),
        effective_us=now_us, expire_us=None, active=True))
    return key_id


def ensure_platform(engine: Engine, now_us: int,
                    keygen: KeyGen = protocol.generate_private_key) -> None:
    with db.write_tx(engine) as conn:
        kinds = {row.kind for row in conn.execute(select(db.platform_keys.c.kind))}
        if "certificate" not in kinds:
            create_platform_certificate(conn, now_us, keygen)
        if "public_key" not in kinds:
            create_platform_public_key(conn, now_us, keygen)


def load_platform_keys(conn: Connection) -> list[PlatformKey]:
    out = []
    for row in conn.execute(select(db.platform_keys).where(db.platform_keys.c.active.is_(True))
                            .order_by(db.platform_keys.c.effective_us)):
        out.append(PlatformKey(
            serial=row.serial, kind=row.kind,
            private_key=protocol.load_private_key(row.private_key_pem),
            public_key=protocol.load_public_key(row.public_key_pem),
            certificate_pem=row.certificate_pem.encode() if row.certificate_pem else None,
            effective_us=row.effective_us, expire_us=row.expire_us))
    return out


@dataclass(frozen=True)
class NewMerchant:
    mchid: str
    appid: str
    service_id: str
    serial_no: str
    private_key_pem: bytes
    apiv3_key: str


def add_merchant(conn: Connection, now_us: int, *, name: str = "demo merchant",
                 mchid: str | None = None, notify_url: str | None = None,
                 risk_fund_ceiling: int = 100000, signing_mode: str = "certificate",
                 keygen: KeyGen = protocol.generate_private_key) -> NewMerchant:
    """Provision a merchant with its own API key pair, certificate and APIv3 key."""
    mchid = mchid or ("19" + _digits(8))
    appid = "wx" + secrets.token_hex(8)
    service_id = "2002" + _digits(28)
    key = keygen()
    cert = protocol.make_certificate(key, f"{mchid} merchant API certificate",
                                     secrets.randbits(159) | (1 << 158), to_datetime(now_us),
                                     organization="payscore-sandbox merchant")
    apiv3_key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))
    serial_no = protocol.certificate_serial(cert)
    conn.execute(db.merchants.insert().values(
        mchid=mchid, name=name, appid=appid, service_id=service_id, serial_no=serial_no,
        certificate_pem=protocol.certificate_pem(cert).decode(), apiv3_key=apiv3_key,
        notify_url=notify_url, refund_notify_url=notify_url, risk_fund_ceiling=risk_fund_ceiling,
        risk_fund_mode="ENJOY_FIRST", signing_mode=signing_mode, migration_ratio=0.0,
        created_us=now_us))
    return NewMerchant(mchid, appid, service_id, serial_no, protocol.private_key_pem(key),
                       apiv3_key)


def write_merchant_files(data_dir: Path, merchant: NewMerchant, base_url: str,
                         platform: list[PlatformKey], name: str = "merchant") -> Path:
    """Write `<name>.json` with the documented keys, and the PEM files it points to."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path = data_dir / f"{name}_{merchant.mchid}_key.pem"
    key_path.write_bytes(merchant.private_key_pem)
    key_path.chmod(0o600)
    cert = next((k for k in reversed(platform) if k.kind == "certificate"), None)
    pub = next((k for k in reversed(platform) if k.kind == "public_key"), None)
    info = {
        "base_url": base_url,
        "mchid": merchant.mchid,
        "appid": merchant.appid,
        "service_id": merchant.service_id,
        "merchant_serial_no": merchant.serial_no,
        "private_key_path": key_path.name,
        "apiv3_key": merchant.apiv3_key,
        "platform_certificate_path": None,
        "platform_serial_no": None,
        "platform_public_key_path": None,
        "platform_public_key_id": None,
    }
    if cert is not None:
        path = data_dir / "platform_cert.pem"
        path.write_bytes(cert.certificate_pem or b"")
        info.update(platform_certificate_path=path.name, platform_serial_no=cert.serial)
    if pub is not None:
        path = data_dir / "platform_public_key.pem"
        path.write_bytes(protocol.public_key_pem(pub.public_key))
        info.update(platform_public_key_path=path.name, platform_public_key_id=pub.serial)
    out = data_dir / f"{name}.json"
    out.write_text(json.dumps(info, indent=2) + "\n")
    return out


def merchant_row(conn: Connection, mchid: str):
    return conn.execute(_MERCHANT, {"mchid": mchid}).first()


_MERCHANT = select(db.merchants).where(db.merchants.c.mchid == bindparam("mchid"))
