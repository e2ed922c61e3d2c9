"""Every vector of payscore-test-vectors.json, run against merchant_kit.protocol (reference §9).

The data file is the contract shared with the sandbox: if these pass, a signature or ciphertext
the kit produces is byte-for-byte what the SDKs the vectors came from produce.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable

import pytest

from merchant_kit import protocol


def _vectors_path() -> pathlib.Path:
    """$PAYSCORE_REFERENCE_DIR (a newer copy of the reference), else the copy vendored beside
    this test: public test keys and vectors from the official SDKs' own test suites."""
    if os.environ.get("PAYSCORE_REFERENCE_DIR"):
        return pathlib.Path(os.environ["PAYSCORE_REFERENCE_DIR"]) / "payscore-test-vectors.json"
    return pathlib.Path(__file__).resolve().parent / "data" / "payscore-test-vectors.json"


VECTORS_FILE = _vectors_path()
DATA = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
SDK = DATA.get("sdk_vectors", {})
COMPUTED = {k: v for k, v in DATA.get("computed_vectors", {}).items() if not k.startswith("_")}


def k1_private() -> protocol.PrivateKey:
    return protocol.load_private_key(DATA["keys"]["K1_private_key_pkcs8_pem"]["pem"])


def k1_public() -> protocol.PublicKey:
    return protocol.load_public_key(DATA["keys"]["K1_public_key_pem"]["pem"])


def k1_cert():
    return protocol.load_certificate(DATA["keys"]["K1_self_signed_cert_pem"]["pem"])


def split_request_message(message: str) -> tuple[str, str, str, str, bytes]:
    """Inverse of protocol.request_message: 5 LF-terminated lines, the body may be empty."""
    assert message.endswith("\n")
    method, url, ts, nonce, body = message[:-1].split("\n", 4)
    return method, url, ts, nonce, body.encode("utf-8")


def split_response_message(message: str) -> tuple[str, str, bytes]:
    ts, nonce, body = message[:-1].split("\n", 2)
    return ts, nonce, body.encode("utf-8")


# ---------------------------------------------------------------------- the keys themselves


def test_k1_key_pair_and_certificate_belong_together():
    pub = protocol.public_key_pem(k1_private())
    assert pub == protocol.public_key_pem(k1_public())
    assert pub == protocol.public_key_pem(k1_cert().public_key())
    assert protocol.certificate_serial(k1_cert()) == DATA["keys"]["K1_self_signed_cert_pem"][
        "serial_hex"]


# ---------------------------------------------------------------------- SDK vectors


def check_a(v: dict) -> None:
    assert v["key"] == "K1"
    sig = protocol.sign(k1_private(), v["message"].encode("utf-8"))
    assert sig == v["signature_b64"]
    assert protocol.verify(k1_public(), v["message"].encode("utf-8"), sig)
    assert not protocol.verify(k1_public(), b"other", sig)


def check_b(v: dict) -> None:
    plain = protocol.aead_decrypt(v["key_utf8"].encode(), v["nonce_utf8"].encode(),
                                  v["associated_data_utf8"].encode(), v["ciphertext_b64"])
    assert plain.decode("utf-8") == v["plaintext_utf8"]
    with pytest.raises(protocol.DecryptionError):
        protocol.aead_decrypt(v["key_utf8"].encode(), v["nonce_utf8"].encode(), b"wrong-aad",
                              v["ciphertext_b64"])


def check_c(v: dict) -> None:
    key, nonce = v["key_utf8"].encode(), v["nonce_utf8"].encode()
    aad, plain = v["associated_data_utf8"].encode(), v["plaintext_utf8"].encode()
    assert len(key) == 32
    assert protocol.aead_encrypt(key, nonce, aad, plain) == v["ciphertext_b64"]
    assert protocol.aead_decrypt(key, nonce, aad, v["ciphertext_b64"]) == plain


def check_d(v: dict) -> None:
    headers, body = v["headers"], v["body"].encode("utf-8")
    ts = int(headers["Wechatpay-Timestamp"])
    assert protocol.response_message(ts, headers["Wechatpay-Nonce"], body) == \
        v["signed_message"].encode("utf-8")
    keys = {protocol.certificate_serial(k1_cert()): k1_cert().public_key()}
    # Time frozen at the vector's timestamp; a real 5-minute window rejects it later.
    assert protocol.check_signed_message(headers, body, keys, now=ts) == "D7CE59D1F522D701"
    with pytest.raises(protocol.SignatureRejected) as stale:
        protocol.check_signed_message(headers, body, keys, now=ts + protocol.MAX_CLOCK_SKEW + 1)
    assert stale.value.reason == "stale"
    with pytest.raises(protocol.SignatureRejected) as tampered:
        protocol.check_signed_message(headers, body.replace(b"\xe7\xad\xbe", b"X"), keys, now=ts)
    assert tampered.value.reason == "bad-signature"
    resource = json.loads(body)["resource"]
    plain = protocol.decrypt_resource(v["apiv3_key_utf8"].encode(), resource)
    assert plain.decode("utf-8") == v["decrypted_resource"]


def check_e(v: dict) -> None:
    item = v["response_data_item"]
    pem = protocol.decrypt_resource(v["apiv3_key_utf8"].encode(), item["encrypt_certificate"])
    assert pem.decode() == v["expected_plaintext_pem"]
    cert = protocol.load_certificate(pem)
    want = v["expected_cert"]
    assert protocol.certificate_serial(cert) == want["serial_hex"] == item["serial_no"]
    # The reference prints names in neither RFC 4514 nor certificate order, so compare the
    # attribute sets.
    assert _rdn_set(cert.subject.rfc4514_string()) == _rdn_set(want["subject"])
    assert _rdn_set(cert.issuer.rfc4514_string()) == _rdn_set(want["issuer"])
    assert cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ") == want["not_before_utc"]
    assert cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ") == want["not_after_utc"]


def _rdn_set(name: str) -> set[str]:
    return set(name.split(","))


def check_g(v: dict) -> None:
    for case in v["cases"]:
        msg = protocol.request_message(case["method"], case["canonical_url"], case["timestamp"],
                                       case["nonce"], case["body"].encode())
        assert msg == case["message"].encode()
    shape = v["header_shape"].replace("WECHATPAY2-<ALG>", protocol.SCHEME)
    auth = protocol.parse_authorization(shape)  # any item order is accepted (§5.1)
    assert (auth.mchid, auth.nonce_str, auth.timestamp, auth.serial_no) == (
        "1234567890", "A1B2C3D4E5F6G7", "1624523846", "0123456789ABC")


# ---------------------------------------------------------------------- computed vectors (F)


def check_f1(v: dict) -> None:
    method, url, ts, nonce, body = split_request_message(v["message"])
    assert body == v["body"].encode("utf-8")
    assert protocol.request_message(method, url, ts, nonce, body) == v["message"].encode()
    assert protocol.sign(k1_private(), v["message"].encode()) == v["signature"]
    header = protocol.build_authorization("1900007291", "D7CE59D1F522D701", k1_private(), method,
                                          url, body, ts, nonce)
    assert header == v["authorization"]
    parsed = protocol.parse_authorization(header)
    assert parsed.signature == v["signature"] and parsed.timestamp == ts


def check_f2(v: dict) -> None:
    method, url, ts, nonce, body = split_request_message(v["message"])
    assert method == "GET" and body == b"" and "?" in url
    assert protocol.request_message(method, url, ts, nonce, body) == v["message"].encode()
    assert protocol.sign(k1_private(), v["message"].encode()) == v["signature"]


def check_response(v: dict) -> None:
    ts, nonce, body = split_response_message(v["message"])
    assert protocol.response_message(ts, nonce, body) == v["message"].encode()
    assert protocol.sign(k1_private(), v["message"].encode()) == v["signature"]
    headers = protocol.sign_response(k1_private(), "D7CE59D1F522D701", body, ts, nonce)
    assert headers["Wechatpay-Signature"] == v["signature"]
    keys = {"D7CE59D1F522D701": k1_public()}
    assert protocol.check_signed_message(headers, body, keys, now=int(ts)) == "D7CE59D1F522D701"


def check_f5(v: dict) -> None:
    key, nonce, aad = v["key"].encode(), v["nonce"].encode(), v["associated_data"].encode()
    assert protocol.aead_encrypt(key, nonce, aad, v["plaintext"].encode()) == v["ciphertext"]
    resource = protocol.encrypt_resource(key, v["plaintext"].encode(), v["associated_data"],
                                         v["nonce"], "payscore")
    assert resource["ciphertext"] == v["ciphertext"]
    assert protocol.decrypt_resource(key, resource).decode() == v["plaintext"]


def check_f6(v: dict) -> None:
    check_response({"message": v["message"], "signature": v["signature"]})
    _ts, _nonce, body = split_response_message(v["message"])
    assert body == v["body"].encode("utf-8")
    resource = json.loads(body)["resource"]
    f5 = COMPUTED["F5_notification_resource_aes_256_gcm"]
    assert resource["ciphertext"] == f5["ciphertext"]
    assert protocol.decrypt_resource(f5["key"].encode(), resource).decode() == f5["plaintext"]


CHECKS: dict[str, Callable[[dict], None]] = {
    "A": check_a, "B": check_b, "C": check_c, "D": check_d, "E": check_e, "G": check_g,
    "F1": check_f1, "F2": check_f2, "F3": check_response, "F4": check_response, "F5": check_f5,
    "F6": check_f6,
}


def _checker(vector_id: str) -> Callable[[dict], None] | None:
    prefix = vector_id.split("_", 1)[0]
    return CHECKS.get(prefix)


ALL = {**SDK, **COMPUTED}


def test_every_vector_has_a_check():
    assert ALL, "no vectors loaded"
    unchecked = [vid for vid in ALL if _checker(vid) is None]
    assert not unchecked, f"vectors without a check: {unchecked}"
    assert {vid.split('_', 1)[0] for vid in ALL} == set(CHECKS)


@pytest.mark.parametrize("vector_id", sorted(ALL))
def test_vector(vector_id):
    _checker(vector_id)(ALL[vector_id])


def test_probe_signature_never_verifies():
    body = b'{"a":1}'
    headers = protocol.sign_response(k1_private(), "D7CE59D1F522D701", body, 1554209980, "n")
    headers["Wechatpay-Signature"] = protocol.make_probe_signature()
    with pytest.raises(protocol.SignatureRejected) as exc:
        protocol.check_signed_message(headers, body, {"D7CE59D1F522D701": k1_public()},
                                      now=1554209980)
    assert exc.value.reason == "probe"
