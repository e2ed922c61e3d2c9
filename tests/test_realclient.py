"""The PyPI client `wechatpayv3` (minibear2021), unchanged, against a live sandbox.

How the client is pointed at the sandbox, and why this way
----------------------------------------------------------
`wechatpayv3.core.Core.__init__` hard-codes `self._gate_way = 'https://api.mch.weixin.qq.com'`
and, in certificate mode, downloads `/v3/certificates` from that gateway *inside the
constructor*; every call then goes through the module-level `requests.get/post`, which build a
fresh `requests.Session` per call. So the gateway cannot be changed after construction (too
late for the certificate download), a class attribute would be overwritten by `__init__`, and a
subclass or a patched method would no longer be the client as shipped.

`gateway_redirected` therefore works one layer below the client, like a hosts-file entry plus
TLS termination: while it is active, every new `requests.Session` mounts a transport adapter
for the prefix `https://api.mch.weixin.qq.com/` that rewrites scheme/host/port to the sandbox
and sends the request through the ordinary `HTTPAdapter`. Everything the client does — the URL
and body it builds, what it signs, the headers it sends, how it parses and verifies the answer —
runs unmodified; the signature covers only method, path and body, so the host rewrite is
invisible to both sides. Other URLs (our control API calls) are not touched. The adapter also
records each exchange so the tests can show what the real client put on the wire.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import requests
from requests.adapters import HTTPAdapter
from wechatpayv3 import WeChatPay, WeChatPayType

from merchant_kit import protocol
from sandbox.clock import to_datetime
from sandbox.live import LiveSandbox
from sandbox.testing import TestMerchant as Merchant
from sandbox.testing import add_merchant

GATEWAY = "https://api.mch.weixin.qq.com"
NOTIFY_URL = "http://127.0.0.1:9/payscore/notify"  # loopback only; callbacks are not the point
RISK_FUND = {"name": "ESTIMATE_ORDER_COST", "amount": 9900}


class _GatewayAdapter(HTTPAdapter):
    def __init__(self, base_url: str, exchanges: list[requests.Response]):
        super().__init__()
        self.base_url = base_url
        self.exchanges = exchanges

    def send(self, request, **kwargs):  # type: ignore[override]
        request.url = self.base_url + request.url[len(GATEWAY):]
        kwargs["proxies"] = {}  # loopback is never proxied, whatever the environment says
        response = super().send(request, **kwargs)
        self.exchanges.append(response)
        return response


@contextlib.contextmanager
def gateway_redirected(base_url: str) -> Iterator[list[requests.Response]]:
    """Route the real gateway's URLs to `base_url` for every requests Session made meanwhile."""
    exchanges: list[requests.Response] = []
    original_init = requests.Session.__init__

    def init(session: requests.Session, *args, **kwargs) -> None:
        original_init(session, *args, **kwargs)
        session.mount(GATEWAY + "/", _GatewayAdapter(base_url, exchanges))

    with mock.patch.object(requests.Session, "__init__", init):
        yield exchanges


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Iterator[LiveSandbox]:
    # No world ticker: the tests play the user and WeChat's deduction through the control API,
    # so a background deduction cannot race them.
    with LiveSandbox(tmp_path_factory.mktemp("realclient"), START_WORLD=False) as server:
        yield server


def _merchant(live: LiveSandbox, signing_mode: str = "certificate") -> Merchant:
    return add_merchant(live.app, base_url=live.base_url, signing_mode=signing_mode)


def _client(merchant: Merchant, mode: str, public_key_pem: str | None = None) -> WeChatPay:
    """Build the client from merchant.json exactly as a developer following the README would."""
    assert merchant.json_path is not None
    info = json.loads(merchant.json_path.read_text())
    data_dir = merchant.json_path.parent
    private_key = (data_dir / info["private_key_path"]).read_text()
    kwargs = {}
    if mode == "public_key":
        kwargs = {"public_key": public_key_pem
                  or (data_dir / info["platform_public_key_path"]).read_text(),
                  "public_key_id": info["platform_public_key_id"]}
    return WeChatPay(wechatpay_type=WeChatPayType.MINIPROG, mchid=info["mchid"],
                     private_key=private_key, cert_serial_no=info["merchant_serial_no"],
                     appid=info["appid"], apiv3_key=info["apiv3_key"], notify_url=NOTIFY_URL,
                     **kwargs)


def _control(live: LiveSandbox, merchant: Merchant, out_order_no: str, action: str,
             body: dict | None = None) -> dict:
    r = requests.post(f"{live.base_url}/sandbox/merchants/{merchant.mchid}/orders/"
                      f"{out_order_no}/{action}", json=body or {}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _ok(answer: tuple[int, str]) -> dict:
    code, text = answer
    assert code == 200, text
    return json.loads(text)


def _end_time(live: LiveSandbox) -> str:
    """The sandbox's now: complete refuses an end in the future or before the user confirmed
    (start_time OnAccept)."""
    return protocol.payscore_time(to_datetime(live.sandbox.clock.now_us()))


def _life_cycle(live: LiveSandbox, merchant: Merchant, wp: WeChatPay, tag: str) -> None:
    """create → query → (user confirms) → complete → (deduction) → query; cancel; replay."""
    sid = merchant.service_id
    created = _ok(wp.payscore_create(f"{tag}-1", sid, "充电宝租借", {"start_time": "OnAccept"},
                                     RISK_FUND, attach="rental%3D1"))
    assert created["state"] == "CREATED"
    assert created["package"] and created["mchid"] == merchant.mchid
    assert created["service_introduction"] == "充电宝租借"  # the \\u-escaped body round-trips

    replay = _ok(wp.payscore_create(f"{tag}-1", sid, "充电宝租借", {"start_time": "OnAccept"},
                                    RISK_FUND, attach="rental%3D1"))
    assert replay["order_id"] == created["order_id"]  # 原参重入: the same order

    queried = _ok(wp.payscore_query(sid, out_order_no=f"{tag}-1"))
    assert (queried["state"], queried["order_id"]) == ("CREATED", created["order_id"])

    _control(live, merchant, f"{tag}-1", "confirm", {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"})
    confirmed = _ok(wp.payscore_query(sid, out_order_no=f"{tag}-1"))
    assert (confirmed["state"], confirmed["state_description"]) == ("DOING", "USER_CONFIRM")
    assert confirmed["openid"] == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"

    completed = _ok(wp.payscore_complete(
        f"{tag}-1", sid, [{"name": "租借费", "amount": 500, "description": "2小时"}], 450,
        post_discounts=[{"name": "新用户", "description": "首单立减", "amount": 50}],
        time_range={"end_time": _end_time(live)}))
    assert (completed["state"], completed["state_description"]) == ("DOING", "MCH_COMPLETE")
    assert completed["total_amount"] == 450

    paying = _ok(wp.payscore_query(sid, out_order_no=f"{tag}-1"))
    assert paying["collection"]["state"] == "USER_PAYING"
    assert paying["collection"]["paying_amount"] == 450

    _control(live, merchant, f"{tag}-1", "deduction")
    paid = _ok(wp.payscore_query(sid, out_order_no=f"{tag}-1"))
    assert (paid["state"], paid["collection"]["state"]) == ("DONE", "USER_PAID")
    assert paid["collection"]["paid_amount"] == 450
    assert paid["collection"]["details"][0]["paid_type"] == "NEWTON"
    assert re.fullmatch(r"\d{28}", paid["collection"]["details"][0]["transaction_id"])

    _ok(wp.payscore_create(f"{tag}-2", sid, "充电宝租借", {"start_time": "OnAccept"}, RISK_FUND))
    cancelled = _ok(wp.payscore_cancel(f"{tag}-2", sid, "用户取消"))
    assert cancelled["out_order_no"] == f"{tag}-2"
    assert _ok(wp.payscore_query(sid, out_order_no=f"{tag}-2"))["state"] == "REVOKED"


def _v3(exchanges: list[requests.Response]) -> list[requests.Response]:
    return [r for r in exchanges if r.request.path_url.startswith("/v3/")]


def test_certificate_mode_downloads_certificates_and_drives_a_life_cycle(live):
    merchant = _merchant(live)
    platform = live.sandbox.signer.certificate
    with gateway_redirected(live.base_url) as exchanges:
        wp = _client(merchant, "certificate")
        # The constructor fetched /v3/certificates and decrypted the envelope with the APIv3 key.
        assert [r.request.path_url for r in exchanges] == ["/v3/certificates"]
        certificates = wp._core._certificates
        assert [f"{c.serial_number:X}" for c in certificates] == [platform.serial.upper()]
        _life_cycle(live, merchant, wp, "RC-CERT")

    answers = _v3(exchanges)[1:]
    assert len(answers) == 10
    for r in answers:
        assert r.status_code == 200
        assert r.headers["Wechatpay-Serial"] == platform.serial  # signed by the certificate key
        # certificate mode: the client never names a platform key in its requests
        assert "Wechatpay-Serial" not in r.request.headers


@pytest.mark.parametrize("signing_mode", ["certificate", "public_key"])
def test_public_key_mode_drives_a_life_cycle_without_certificates(live, signing_mode):
    """Public-key mode; the merchant is either migrating (certificate) or public-key only."""
    merchant = _merchant(live, signing_mode)
    pub = live.sandbox.signer.public_key
    with gateway_redirected(live.base_url) as exchanges:
        wp = _client(merchant, "public_key")
        assert exchanges == []  # nothing downloaded: the key came from merchant.json
        _life_cycle(live, merchant, wp, f"RC-PK-{signing_mode[:4]}")

    answers = _v3(exchanges)
    assert len(answers) == 10
    assert all(r.request.path_url != "/v3/certificates" for r in answers)
    for r in answers:
        assert r.request.headers["Wechatpay-Serial"] == pub.serial
        assert r.headers["Wechatpay-Serial"] == pub.serial  # §5.4: the named key signs


def test_certificate_download_is_refused_for_a_public_key_only_merchant(live):
    merchant = _merchant(live, "public_key")
    with gateway_redirected(live.base_url) as exchanges, \
            pytest.raises(Exception, match="No wechatpay platform certificate"):
        _client(merchant, "certificate")
    assert exchanges[0].status_code == 404
    assert exchanges[0].json()["code"] == "RESOURCE_NOT_EXISTS"


def test_the_client_rejects_answers_signed_by_another_key(live):
    """The real client really verifies: with a wrong platform key it refuses our 200s."""
    merchant = _merchant(live)
    stranger = protocol.public_key_pem(protocol.generate_private_key().public_key()).decode()
    with gateway_redirected(live.base_url):
        wp = _client(merchant, "public_key", public_key_pem=stranger)
        with pytest.raises(Exception, match="failed to verify the signature"):
            wp.payscore_create("RC-FORGED", merchant.service_id, "充电宝租借",
                               {"start_time": "OnAccept"}, RISK_FUND)
        genuine = _client(merchant, "public_key")
        # the create itself went through (only the answer was refused): the replay finds it
        assert _ok(genuine.payscore_query(merchant.service_id,
                                          out_order_no="RC-FORGED"))["state"] == "CREATED"


def test_error_answers_reach_the_client_unsigned(live):
    merchant = _merchant(live)
    sid = merchant.service_id
    with gateway_redirected(live.base_url) as exchanges:
        wp = _client(merchant, "public_key")
        _ok(wp.payscore_create("RC-ERR", sid, "充电宝租借", {"start_time": "OnAccept"},
                               RISK_FUND))
        code, text = wp.payscore_create("RC-ERR", sid, "换了介绍", {"start_time": "OnAccept"},
                                        RISK_FUND)
        assert (code, json.loads(text)["code"]) == (400, "INVALID_REQUEST")
        assert json.loads(text)["message"] == "订单重入参数校验失败"

        code, text = wp.payscore_complete("RC-ERR", sid, [{"name": "租借费", "amount": 1}], 1,
                                          time_range={"end_time": _end_time(live)})
        assert code == 400  # still CREATED: the user has not confirmed
        assert json.loads(text)["code"] == "INVALID_REQUEST"

        code, text = wp.payscore_query(sid, out_order_no="RC-NOPE")
        assert (code, json.loads(text)["code"]) == (404, "ORDER_NOT_EXIST")
    for r in _v3(exchanges)[1:]:
        assert "Wechatpay-Signature" not in r.headers
        assert re.fullmatch(r"[0-9A-F]{44}-[1-9]\d*", r.headers["Request-ID"])


def test_what_the_real_client_puts_on_the_wire(live):
    """Documents where wechatpayv3 departs from the reference's examples; the sandbox accepts
    every one of these (the real client wins)."""
    merchant = _merchant(live)
    with gateway_redirected(live.base_url) as exchanges:
        wp = _client(merchant, "certificate")
        _ok(wp.payscore_create("RC-WIRE", merchant.service_id, "充电宝租借",
                               {"start_time": "OnAccept"}, RISK_FUND))
        _ok(wp.payscore_query(merchant.service_id, out_order_no="RC-WIRE"))
    download, create, query = _v3(exchanges)

    body = create.request.body
    # json.dumps defaults: ASCII only (CJK as \uXXXX escapes) and ", " / ": " separators
    assert body.isascii() and b'"service_introduction": "\\u5145\\u7535' in body
    assert json.loads(body)["need_user_confirm"] is True  # always sent, even when default
    assert json.loads(body)["notify_url"] == NOTIFY_URL

    for r in (download, create, query):
        headers = r.request.headers
        assert headers["Accept"] == "application/json"
        assert headers["Content-Type"] == "application/json"  # even on bodiless GETs
        assert headers["User-Agent"].startswith("wechatpay python sdk v")
        auth = protocol.parse_authorization(headers["Authorization"])
        assert auth.mchid == merchant.mchid
        assert re.fullmatch(r"[0-9A-F]{32}", auth.nonce_str)  # uuid4 hex, upper case
        assert headers["Authorization"].index("mchid=") < headers["Authorization"].index(
            "serial_no=")
    assert query.request.body is None
    assert query.request.path_url == (f"/v3/payscore/serviceorder?service_id="
                                      f"{merchant.service_id}&appid={merchant.appid}"
                                      "&out_order_no=RC-WIRE")


def test_merchant_json_points_at_the_live_sandbox(live):
    merchant = _merchant(live)
    info = json.loads(Path(merchant.json_path).read_text())
    assert info["base_url"] == live.base_url
    assert info["platform_public_key_id"].startswith("PUB_KEY_ID_")
