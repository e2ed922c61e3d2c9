"""WeChat Pay API v3 protocol: pure functions over bytes.

The sandbox and the merchant kit both import this module and nothing else does crypto, so a
signature the sandbox accepts is, byte for byte, one the kit produces (reference §5-§8).
Only `cryptography` is used; no I/O, no clock: callers pass timestamps and nonces in.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
import string
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
PUBLIC_KEY_ID_PREFIX = "PUB_KEY_ID_"
MAX_CLOCK_SKEW = 300
ALGORITHM_AEAD = "AEAD_AES_256_GCM"

_NONCE_ALPHABET = string.ascii_letters + string.digits
_AUTH_ITEM = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
_AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")

PrivateKey = rsa.RSAPrivateKey
PublicKey = rsa.RSAPublicKey


class ProtocolError(ValueError):
    """A message that does not follow the v3 protocol (malformed, not a failed check)."""


class AuthorizationFormatError(ProtocolError):
    pass


class DecryptionError(ProtocolError):
    pass


# ---------------------------------------------------------------- messages


def _text(value: str | int | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


def request_message(method: str, canonical_url: str | bytes, timestamp: str | int, nonce: str,
                    body: bytes) -> bytes:
    """The five-line message a merchant signs (reference §5.1); every line ends in LF."""
    return b"".join(
        (_text(method.upper()), b"\n", _text(canonical_url), b"\n", _text(timestamp), b"\n",
         _text(nonce), b"\n", body or b"", b"\n")
    )


def response_message(timestamp: str | int, nonce: str, body: bytes) -> bytes:
    """The three-line message WeChat signs on responses and callbacks (reference §5.2)."""
    return b"".join((_text(timestamp), b"\n", _text(nonce), b"\n", body or b"", b"\n"))


def make_nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


def make_hex_nonce() -> str:
    return secrets.token_hex(16)


# ---------------------------------------------------------------- keys


def load_private_key(pem: bytes | str, validate: bool = False) -> PrivateKey:
    # cryptography re-checks RSA key consistency on load (~50 ms per key); a key that was
    # wrong would only produce signatures the other side rejects, so checking is opt-in.
    key = serialization.load_pem_private_key(_text(pem), password=None,
                                             unsafe_skip_rsa_key_validation=not validate)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ProtocolError("only RSA private keys are used by API v3")
    return key


def load_public_key(pem: bytes | str) -> PublicKey:
    key = serialization.load_pem_public_key(_text(pem))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ProtocolError("only RSA public keys are used by API v3")
    return key


def load_certificate(pem: bytes | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_text(pem))


def certificate_serial(cert: x509.Certificate) -> str:
    """Upper-case hex without leading zeros, as WeChat prints serials."""
    return format(cert.serial_number, "X")


def public_key_of(key_or_cert: PublicKey | PrivateKey | x509.Certificate) -> PublicKey:
    if isinstance(key_or_cert, x509.Certificate):
        return key_or_cert.public_key()  # type: ignore[return-value]
    if isinstance(key_or_cert, rsa.RSAPrivateKey):
        return key_or_cert.public_key()
    return key_or_cert


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_key_pem(key: PublicKey | PrivateKey) -> bytes:
    return public_key_of(key).public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_private_key() -> PrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_certificate(key: PrivateKey, common_name: str, serial: int, not_before: dt.datetime,
                     days: int = 5 * 365, organization: str = "Tenpay.com") -> x509.Certificate:
    """A self-issued certificate for `key`; the sandbox's stand-in for Tenpay's CA."""
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "payscore-sandbox CA Center"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------- signatures


def sign(key: PrivateKey, message: bytes) -> str:
    """RSASSA-PKCS1-v1_5 / SHA-256, standard Base64 with padding (344 chars for RSA-2048)."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(key: PublicKey, message: bytes, signature_b64: str) -> bool:
    """True only for a valid signature; probes and undecodable values are simply invalid."""
    if not signature_b64 or signature_b64.startswith(SIGNTEST_PREFIX):
        return False
    try:
        raw = base64.b64decode(signature_b64, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def is_probe_signature(signature: str | None) -> bool:
    return bool(signature) and signature.startswith(SIGNTEST_PREFIX)


def make_probe_signature() -> str:
    return SIGNTEST_PREFIX + base64.b64encode(secrets.token_bytes(63)).decode("ascii")


# ---------------------------------------------------------------- Authorization header


@dataclass(frozen=True)
class Authorization:
    mchid: str
    nonce_str: str
    signature: str
    timestamp: str
    serial_no: str


def build_authorization(mchid: str, serial_no: str, key: PrivateKey, method: str,
                        canonical_url: str | bytes, body: bytes, timestamp: int | str,
                        nonce: str) -> str:
    signature = sign(key, request_message(method, canonical_url, timestamp, nonce, body))
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def parse_authorization(header: str | None) -> Authorization:
    """Parse the header; the five items may come in any order (reference §5.1)."""
    if not header or not header.strip():
        raise AuthorizationFormatError("missing")
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        raise AuthorizationFormatError("scheme")
    items: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_ITEM.fullmatch(part)
        if not match or match.group(1) in items:
            raise AuthorizationFormatError("format")
        items[match.group(1)] = match.group(2)
    if set(items) != set(_AUTH_FIELDS) or not all(items.values()):
        raise AuthorizationFormatError("format")
    if not items["timestamp"].isdigit():
        raise AuthorizationFormatError("format")
    return Authorization(**items)


def sign_response(key: PrivateKey, serial: str, body: bytes, timestamp: int | str,
                  nonce: str) -> dict[str, str]:
    """The Wechatpay-* headers for a response or a callback over exactly `body`."""
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": sign(key, response_message(timestamp, nonce, body)),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SCHEME,
    }


class SignatureRejected(ProtocolError):
    """A signed message (response or callback) that must not be trusted; `reason` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_signed_message(headers: dict[str, str] | object, body: bytes,
                         keys: dict[str, PublicKey], now: int,
                         window: int = MAX_CLOCK_SKEW) -> str:
    """Verify Wechatpay-* headers over the raw body; return the serial used.

    `keys` maps serial or public-key id (upper-case) to the public key; `headers` is any
    case-insensitive mapping with `.get`. Raises SignatureRejected with a short reason.
    """
    get = headers.get  # type: ignore[attr-defined]
    timestamp, nonce = get("Wechatpay-Timestamp"), get("Wechatpay-Nonce")
    signature, serial = get("Wechatpay-Signature"), get("Wechatpay-Serial")
    if not (timestamp and nonce and signature and serial):
        raise SignatureRejected("unsigned")
    sig_type = get("Wechatpay-Signature-Type")
    if sig_type and sig_type != SCHEME:
        raise SignatureRejected("signature-type")
    if is_probe_signature(signature):
        raise SignatureRejected("probe")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > window:
        raise SignatureRejected("stale")
    key = keys.get(serial.upper())
    if key is None:
        raise SignatureRejected("unknown-serial")
    if not verify(key, response_message(timestamp, nonce, body), signature):
        raise SignatureRejected("bad-signature")
    return serial


# ---------------------------------------------------------------- AEAD_AES_256_GCM


def aead_encrypt(key: bytes, nonce: bytes, associated_data: bytes, plaintext: bytes) -> str:
    """Base64(ciphertext || 16-byte tag); the APIv3 key is used as its raw ASCII bytes."""
    return base64.b64encode(AESGCM(key).encrypt(nonce, plaintext, associated_data)).decode("ascii")


def aead_decrypt(key: bytes, nonce: bytes, associated_data: bytes, ciphertext_b64: str) -> bytes:
    try:
        raw = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(key).decrypt(nonce, raw, associated_data)
    except (InvalidTag, ValueError, TypeError) as exc:
        raise DecryptionError("AEAD authentication failed") from exc


def make_aead_nonce() -> str:
    return make_nonce(12)


def encrypt_resource(apiv3_key: bytes, plaintext: bytes, associated_data: str, nonce: str,
                     original_type: str) -> dict[str, str]:
    return {
        "original_type": original_type,
        "algorithm": ALGORITHM_AEAD,
        "ciphertext": aead_encrypt(apiv3_key, nonce.encode(), associated_data.encode(), plaintext),
        "associated_data": associated_data,
        "nonce": nonce,
    }


def decrypt_resource(apiv3_key: bytes, resource: dict) -> bytes:
    """Decrypt a callback `resource` or a certificate `encrypt_certificate` object."""
    if not isinstance(resource, dict) or resource.get("algorithm") != ALGORITHM_AEAD:
        raise DecryptionError("unsupported algorithm")
    nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
    aad = resource.get("associated_data") or ""
    if not isinstance(nonce, str) or not isinstance(ciphertext, str) or not isinstance(aad, str):
        raise DecryptionError("malformed resource")
    return aead_decrypt(apiv3_key, nonce.encode(), aad.encode(), ciphertext)


def encrypt_certificate(apiv3_key: bytes, cert_pem: bytes, nonce: str) -> dict[str, str]:
    """The `encrypt_certificate` object of /v3/certificates (associated_data "certificate")."""
    resource = encrypt_resource(apiv3_key, cert_pem, "certificate", nonce, "certificate")
    del resource["original_type"]
    return resource


# ---------------------------------------------------------------- RSA-OAEP (sensitive fields)


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def rsa_oaep_encrypt(key: PublicKey, plaintext: bytes) -> str:
    return base64.b64encode(key.encrypt(plaintext, _oaep())).decode("ascii")


def rsa_oaep_decrypt(key: PrivateKey, ciphertext_b64: str) -> bytes:
    try:
        return key.decrypt(base64.b64decode(ciphertext_b64, validate=True), _oaep())
    except ValueError as exc:
        raise DecryptionError("RSA-OAEP decryption failed") from exc


# ---------------------------------------------------------------- time formats


CST = dt.timezone(dt.timedelta(hours=8))


def rfc3339(moment: dt.datetime) -> str:
    """Envelope/metadata times: RFC 3339 in China Standard Time, e.g. 2015-05-20T13:29:35+08:00."""
    return moment.astimezone(CST).replace(microsecond=0).isoformat()


def payscore_time(moment: dt.datetime) -> str:
    """Pay Score business times: yyyyMMddHHmmss in China Standard Time."""
    return moment.astimezone(CST).strftime("%Y%m%d%H%M%S")
