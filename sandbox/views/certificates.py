"""GET /v3/certificates: the platform certificates, encrypted with the caller's APIv3 key."""

from __future__ import annotations

from flask import Blueprint, g, request

from merchant_kit import protocol
from sandbox import errors
from sandbox.clock import to_datetime
from sandbox.schemas.certificates import CertificateList
from sandbox.service import current
from sandbox.views.common import render

bp = Blueprint("certificates", __name__)


@bp.get("/v3/certificates")
def download_certificates():
    """Download the platform certificates (reference §7).
    ---
    get:
      operationId: download_certificates
      tags: [certificates]
      parameters:
      - in: query
        name: algorithm_type
        schema: {type: string, enum: [RSA, SM2, ALL]}
      responses:
        "200": {description: "the certificates, each encrypted with the APIv3 key",
                content: {application/json: {schema: CertificateList}}}
    """
    algorithm = request.args.get("algorithm_type", "RSA")
    if algorithm not in ("RSA", "SM2", "ALL"):
        raise errors.param_error("algorithm_type", "must be RSA, SM2 or ALL", algorithm, "query")
    sb = current()
    with sb.engine.connect() as conn:
        from sandbox import provision

        merchant = provision.merchant_row(conn, g.mchid)
    certs = [k for k in sb.signer.keys if k.kind == "certificate"]
    if merchant.signing_mode == "public_key" or not certs:
        raise errors.ResourceNotExists(
            "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥")
    data = []
    if algorithm != "SM2":
        for key in certs:
            data.append({
                "serial_no": key.serial,
                "effective_time": protocol.rfc3339(to_datetime(key.effective_us)),
                "expire_time": protocol.rfc3339(to_datetime(key.expire_us)),
                "encrypt_certificate": protocol.encrypt_certificate(
                    merchant.apiv3_key.encode(), key.certificate_pem, protocol.make_aead_nonce()),
            })
    return render(CertificateList().dump({"data": data}))
