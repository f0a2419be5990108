"""Certificate mode: certificate serial numbers (SNs) as Alipay computes them, and keys from certificates.

SN of a certificate: md5 hex of (issuer DN with RDNs in reverse order, ``CN=…,OU=…,O=…,C=…``) followed by
the serial number in decimal. Root SN: the SNs of the RSA-signed certificates (signature OID
1.2.840.113549.1.1.*) in the root bundle, in file order, joined with ``_``. Compute at configuration time.
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .errors import KeyFormatError

RSA_SIGNATURE_OID_PREFIX = "1.2.840.113549.1.1."
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)


def _pem_blocks(pem: str | bytes) -> list[bytes]:
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    blocks = [base64.b64decode(b"".join(m.group(1).split())) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise KeyFormatError("no PEM certificate found")
    return blocks


def _sn(cert: x509.Certificate) -> str:
    # rfc4514_string() prints the RDNs last-to-first, i.e. the reversed DN (Java's getName()).
    issuer = cert.issuer.rfc4514_string()
    return hashlib.md5((issuer + str(cert.serial_number)).encode("utf-8"), usedforsecurity=False).hexdigest()


def cert_sn(cert_pem: str | bytes) -> str:
    """SN of the (first) certificate in cert_pem."""
    der = _pem_blocks(cert_pem)[0]
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise KeyFormatError(f"certificate cannot be parsed: {exc}") from None
    return _sn(cert)


def _der_signature_oid(der: bytes) -> str | None:
    """Certificate.signatureAlgorithm's OID read straight from DER (for certs cryptography rejects)."""

    def header(pos: int) -> tuple[int, int, int]:  # (tag, content start, content length)
        tag = der[pos]
        length = der[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(der[pos : pos + n], "big")
            pos += n
        return tag, pos, length

    try:
        tag, start, _ = header(0)  # Certificate SEQUENCE
        if tag != 0x30:
            return None
        _, tbs_start, tbs_len = header(start)  # tbsCertificate
        tag, alg_start, _ = header(tbs_start + tbs_len)  # signatureAlgorithm SEQUENCE
        if tag != 0x30:
            return None
        tag, oid_start, oid_len = header(alg_start)
        if tag != 0x06:
            return None
        body = der[oid_start : oid_start + oid_len]
        arcs = [body[0] // 40, body[0] % 40] if body[0] < 80 else [2, body[0] - 80]
        value = 0
        for byte in body[1:]:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        return ".".join(map(str, arcs))
    except IndexError:
        return None


def root_cert_sn(bundle_pem: str | bytes) -> str:
    """SNs of the RSA certificates in the root bundle, in file order, joined with '_'."""
    sns: list[str] = []
    for der in _pem_blocks(bundle_pem):
        try:
            cert = x509.load_der_x509_certificate(der)
            oid = cert.signature_algorithm_oid.dotted_string
        except ValueError:
            cert, oid = None, _der_signature_oid(der)
        if oid is None or not oid.startswith(RSA_SIGNATURE_OID_PREFIX):
            continue  # SM2 / ECC roots are not part of the RSA root SN
        if cert is None:
            raise KeyFormatError("an RSA certificate in the root bundle cannot be parsed")
        sns.append(_sn(cert))
    if not sns:
        raise KeyFormatError("the root bundle holds no RSA certificate")
    return "_".join(sns)


def public_key_from_cert(cert_pem: str | bytes) -> RSAPublicKey:
    """The RSA public key of the (first) certificate in cert_pem."""
    der = _pem_blocks(cert_pem)[0]
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as exc:
        raise KeyFormatError(f"certificate cannot be parsed: {exc}") from None
    if not isinstance(key, RSAPublicKey):
        raise KeyFormatError("certificate does not hold an RSA key")
    return key
