"""GET /v3/certificates answer (reference §7)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class EncryptCertificate(Schema):
    algorithm = fields.String(required=True, validate=validate.OneOf(["AEAD_AES_256_GCM"]))
    nonce = fields.String(required=True)
    associated_data = fields.String(required=True)
    ciphertext = fields.String(required=True)


class Certificate(Schema):
    serial_no = fields.String(required=True)
    effective_time = fields.String(required=True, metadata={"format": "date-time"})
    expire_time = fields.String(required=True, metadata={"format": "date-time"})
    encrypt_certificate = fields.Nested(EncryptCertificate, required=True)


class CertificateList(Schema):
    data = fields.List(fields.Nested(Certificate), required=True)
