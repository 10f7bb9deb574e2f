"""TLS material an endpoint may carry: a client certificate and key (mTLS, sealed with its
other request options) and the CA bundle its receiver's server certificate is checked against.
Checked when set, so a broken certificate is a 422 naming the field, not a failing delivery."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from jobwire.errors import Violation
from jobwire.timeutil import format_utc


@dataclass(frozen=True, slots=True)
class ClientCert:
    subject: str
    not_after: str


def client_cert(cert_pem: str, key_pem: str, now: datetime, pointer: str = "/tls_client_cert"
                ) -> tuple[ClientCert | None, list[Violation]]:
    """The certificate's subject and expiry, or what is wrong with the pair."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return None, [Violation(f"{pointer}/cert", "not a PEM certificate")]
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return None, [Violation(f"{pointer}/key", "not an unencrypted PEM private key")]
    if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return None, [Violation(f"{pointer}/key", "does not belong to the certificate")]
    if cert.not_valid_after_utc <= now:
        return None, [Violation(f"{pointer}/cert", f"expired at {format_utc(cert.not_valid_after_utc)}")]
    return ClientCert(cert.subject.rfc4514_string()[:512], format_utc(cert.not_valid_after_utc)), []


def ca_bundle(pem: str, pointer: str = "/tls_ca") -> list[Violation]:
    """What is wrong with a CA bundle (one or more PEM certificates)."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return [Violation(pointer, "not PEM certificates")]
    return [] if certs else [Violation(pointer, "holds no certificate")]
