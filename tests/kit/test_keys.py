"""PlatformKeys: sources, lookups, rate-limited refresh, bootstrap of /v3/certificates; config."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from merchant_kit import protocol
from merchant_kit.config import MerchantConfig
from merchant_kit.keys import PlatformKeys

NOW = 1_700_000_000
APIV3 = b"0123456789abcdef0123456789abcdef"
PUB_ID = "PUB_KEY_ID_0000000000000024101100397200000006"


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def platform_keys():
    """Two platform certificates (old, new) and a WeChat Pay public key."""
    start = dt.datetime.fromtimestamp(NOW, tz=dt.UTC) - dt.timedelta(days=30)
    old_key, new_key, pub_key = (protocol.generate_private_key() for _ in range(3))
    old = protocol.make_certificate(old_key, "old", 0x1A2B, start, days=60)
    new = protocol.make_certificate(new_key, "new", 0x3C4D, start, days=3650)
    return {"old": (old_key, old), "new": (new_key, new), "pub": pub_key}


def signed(key, serial: str, body: bytes, now: float = NOW) -> dict[str, str]:
    return protocol.sign_response(key, serial, body, int(now), protocol.make_hex_nonce())


def certificates_reply(certs, signer, signer_serial, apiv3=APIV3, now=NOW, serial_of=None):
    data = []
    for cert in certs:
        serial = serial_of(cert) if serial_of else protocol.certificate_serial(cert)
        data.append({"serial_no": serial, "effective_time": "x", "expire_time": "y",
                     "encrypt_certificate": protocol.encrypt_certificate(
                         apiv3, protocol.certificate_pem(cert), protocol.make_aead_nonce())})
    body = json.dumps({"data": data}).encode()
    return signed(signer, signer_serial, body, now), body


class Downloader:
    """Stands in for PayScoreClient.download_certificates; counts its calls."""

    def __init__(self, keys_ref, reply):
        self.keys_ref, self.reply, self.calls = keys_ref, reply, 0

    def __call__(self):
        self.calls += 1
        headers, body = self.reply()
        return self.keys_ref[0].ingest_certificates(headers, body)


def cert_mode(platform_keys, clock, **kwargs):
    new_key, new = platform_keys["new"]
    ref: list[PlatformKeys] = []
    dl = Downloader(ref, lambda: certificates_reply([new], new_key,
                                                    protocol.certificate_serial(new),
                                                    now=clock()))
    keys = PlatformKeys(apiv3_key=APIV3, downloader=dl, time_fn=clock, **kwargs)
    ref.append(keys)
    return keys, dl


# ---------------------------------------------------------------------- modes


def test_public_key_mode_never_downloads(platform_keys):
    calls = []
    keys = PlatformKeys(public_key=platform_keys["pub"].public_key(), public_key_id=PUB_ID.lower(),
                        downloader=lambda: calls.append(1), time_fn=Clock())
    assert keys.mode == "public_key" and not keys.download_enabled
    assert keys.request_serial() == PUB_ID
    assert keys.lookup(PUB_ID.lower()) is not None
    assert keys.lookup("ABCDEF") is None
    assert keys.refresh(force=True) is False
    assert calls == []
    body = b'{"ok":true}'
    assert keys.verify(signed(platform_keys["pub"], PUB_ID, body), body) == PUB_ID


def test_configured_certificate_mode(platform_keys):
    old_key, old = platform_keys["old"]
    _new_key, new = platform_keys["new"]
    keys = PlatformKeys(apiv3_key=APIV3, certificates=[protocol.certificate_pem(old), new],
                        time_fn=Clock())
    assert keys.mode == "certificate" and keys.download_enabled
    # Newest = latest expiry, as the SDKs pick for encryption (§7).
    assert keys.request_serial() == protocol.certificate_serial(new)
    body = b"{}"
    assert keys.verify(signed(old_key, "1a2b", body), body) == "1a2b"


def test_expired_certificate_is_never_used(platform_keys):
    _old_key, old = platform_keys["old"]
    clock = Clock()
    keys = PlatformKeys(apiv3_key=APIV3, certificates=[old], time_fn=clock)
    assert keys.lookup("1A2B") is not None
    clock.now += 31 * 86400  # past the 60-day validity
    assert keys.lookup("1A2B") is None
    assert keys.request_serial() is None


def test_migration_accepts_both_and_asks_for_public_key(platform_keys):
    new_key, new = platform_keys["new"]
    keys = PlatformKeys(apiv3_key=APIV3, certificates=[new], time_fn=Clock(),
                        public_key=platform_keys["pub"].public_key(), public_key_id=PUB_ID)
    assert keys.mode == "migrating"
    assert keys.request_serial() == PUB_ID  # §5.4: replies then come signed by the public key
    body = b'{"n":1}'
    serial = protocol.certificate_serial(new)
    assert keys.verify(signed(new_key, serial, body), body) == serial
    assert keys.verify(signed(platform_keys["pub"], PUB_ID, body), body) == PUB_ID


def test_public_and_key_id_go_together(platform_keys):
    with pytest.raises(ValueError, match="together"):
        PlatformKeys(public_key=platform_keys["pub"].public_key())


# ---------------------------------------------------------------------- download + refresh


def test_unknown_serial_triggers_one_download_then_verifies(platform_keys):
    clock = Clock()
    keys, dl = cert_mode(platform_keys, clock)
    new_key, new = platform_keys["new"]
    serial = protocol.certificate_serial(new)
    assert keys.request_serial() is None  # nothing known before the first download
    body = b'{"state":"CREATED"}'
    assert keys.verify(signed(new_key, serial, body), body) == serial
    assert dl.calls == 1
    assert keys.request_serial() == serial
    assert [c.serial_no for c in keys.certificates()] == [serial]


def test_refresh_is_rate_limited(platform_keys):
    clock = Clock()
    keys, dl = cert_mode(platform_keys, clock)
    assert keys.lookup("DEADBEEF") is None
    assert keys.lookup("DEADBEEF") is None
    assert keys.refresh() is False
    assert dl.calls == 1
    clock.now += 59
    assert keys.lookup("DEADBEEF") is None and dl.calls == 1
    clock.now += 2
    assert keys.lookup("DEADBEEF") is None and dl.calls == 2
    assert keys.refresh(force=True) is True and dl.calls == 3


def test_unknown_serial_rejected_after_one_refresh(platform_keys):
    keys, dl = cert_mode(platform_keys, Clock())
    stranger = protocol.generate_private_key()
    body = b"{}"
    with pytest.raises(protocol.SignatureRejected) as exc:
        keys.verify(signed(stranger, "ABCDEF01", body), body)
    assert exc.value.reason == "unknown-serial"
    assert dl.calls == 1


def test_concurrent_misses_share_one_download(platform_keys):
    clock = Clock()
    keys, dl = cert_mode(platform_keys, clock)
    serial = protocol.certificate_serial(platform_keys["new"][1])
    barrier, found = threading.Barrier(5), []

    def worker():
        barrier.wait()
        found.append(keys.lookup(serial) is not None)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert found == [True] * 5
    assert dl.calls == 1


def test_download_failure_is_swallowed_and_rate_limited(platform_keys):
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("network down")

    keys = PlatformKeys(apiv3_key=APIV3, downloader=broken, time_fn=Clock())
    assert keys.lookup("AB") is None
    assert keys.lookup("AB") is None
    assert calls == [1]


# ---------------------------------------------------------------------- ingest checks


def ingest(keys, headers, body):
    return keys.ingest_certificates(headers, body)


def test_ingest_rejects_serial_mismatch(platform_keys):
    new_key, new = platform_keys["new"]
    keys = PlatformKeys(apiv3_key=APIV3, time_fn=Clock())
    headers, body = certificates_reply([new], new_key, protocol.certificate_serial(new),
                                       serial_of=lambda c: "99999")
    with pytest.raises(protocol.ProtocolError, match="mismatch"):
        ingest(keys, headers, body)
    assert keys.snapshot() == {}


def test_ingest_rejects_wrong_apiv3_key(platform_keys):
    new_key, new = platform_keys["new"]
    keys = PlatformKeys(apiv3_key=APIV3, time_fn=Clock())
    headers, body = certificates_reply([new], new_key, protocol.certificate_serial(new),
                                       apiv3=b"x" * 32)
    with pytest.raises(protocol.DecryptionError):
        ingest(keys, headers, body)


def test_ingest_requires_reply_signed_by_a_listed_or_known_key(platform_keys):
    new_key, new = platform_keys["new"]
    keys = PlatformKeys(apiv3_key=APIV3, time_fn=Clock())
    impostor = protocol.generate_private_key()
    headers, body = certificates_reply([new], impostor, protocol.certificate_serial(new))
    with pytest.raises(protocol.SignatureRejected) as exc:
        ingest(keys, headers, body)
    assert exc.value.reason == "bad-signature"
    headers, body = certificates_reply([new], new_key, protocol.certificate_serial(new),
                                       now=NOW - 400)
    with pytest.raises(protocol.SignatureRejected) as exc:
        ingest(keys, headers, body)
    assert exc.value.reason == "stale"
    assert keys.snapshot() == {}


def test_ingest_skips_expired_certificates(platform_keys):
    _old_key, old = platform_keys["old"]
    new_key, new = platform_keys["new"]
    clock = Clock(NOW + 31 * 86400)
    keys = PlatformKeys(apiv3_key=APIV3, time_fn=clock)
    headers, body = certificates_reply([old, new], new_key, protocol.certificate_serial(new),
                                       now=clock())
    got = ingest(keys, headers, body)
    assert [c.serial_no for c in got] == [protocol.certificate_serial(new)]
    assert set(keys.snapshot()) == {protocol.certificate_serial(new)}


# ---------------------------------------------------------------------- config


def write_merchant_json(tmp_path, platform_keys, **over):
    key = protocol.generate_private_key()
    (tmp_path / "apiclient_key.pem").write_bytes(protocol.private_key_pem(key))
    _, new = platform_keys["new"]
    (tmp_path / "platform_cert.pem").write_bytes(protocol.certificate_pem(new))
    info = {"base_url": "http://127.0.0.1:8000/", "mchid": "1230000109",
            "appid": "wxd678efh567hg6787", "service_id": "2002000000000558128851361561536",
            "merchant_serial_no": "1dde55ad98ed71d6", "private_key_path": "apiclient_key.pem",
            "apiv3_key": APIV3.decode(), "platform_certificate_path": "platform_cert.pem",
            "platform_serial_no": protocol.certificate_serial(new),
            "platform_public_key_path": None, "platform_public_key_id": None, **over}
    path = tmp_path / "merchant.json"
    path.write_text(json.dumps(info))
    return path


def test_config_from_file_resolves_relative_paths(tmp_path, platform_keys, monkeypatch):
    path = write_merchant_json(tmp_path, platform_keys)
    monkeypatch.chdir("/")
    cfg = MerchantConfig.from_file(path)
    assert cfg.base_url == "http://127.0.0.1:8000"
    assert cfg.merchant_serial_no == "1DDE55AD98ED71D6"
    assert cfg.apiv3_key == APIV3 and cfg.timeouts.connect == 3.05 and cfg.total_deadline == 30
    assert cfg.user_agent == "payscore-merchant-kit/0.1 (python)"
    assert APIV3.decode() not in repr(cfg) and "private_key" not in repr(cfg)
    keys = PlatformKeys.from_config(cfg)
    assert keys.request_serial() == protocol.certificate_serial(platform_keys["new"][1])


def test_config_rejects_bad_apiv3_key_and_serial_mismatch(tmp_path, platform_keys):
    with pytest.raises(ValueError, match="32 bytes"):
        MerchantConfig.from_file(write_merchant_json(tmp_path, platform_keys, apiv3_key="short"))
    cfg = MerchantConfig.from_file(write_merchant_json(tmp_path, platform_keys,
                                                       platform_serial_no="ABC"))
    with pytest.raises(ValueError, match="platform_serial_no"):
        PlatformKeys.from_config(cfg)


def test_config_public_key_mode(tmp_path, platform_keys):
    (tmp_path / "pub.pem").write_bytes(protocol.public_key_pem(platform_keys["pub"]))
    cfg = MerchantConfig.from_file(write_merchant_json(
        tmp_path, platform_keys, platform_certificate_path=None, platform_serial_no=None,
        platform_public_key_path=str(tmp_path / "pub.pem"), platform_public_key_id=PUB_ID))
    keys = PlatformKeys.from_config(cfg)
    assert keys.mode == "public_key" and not keys.download_enabled
    assert keys.request_serial() == PUB_ID
