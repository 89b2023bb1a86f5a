"""Self-signed OPC-UA application certificates (`twin certs`).

Makes two pairs in one folder: the client's (used by `twin ingest` / `twin serve` when the
spec asks for security and names no certificate) and the simulator server's (used by
`twin sim --security sign|sign-encrypt`). Certificates are DER, keys PEM, as asyncua expects.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto.cert_gen import (
    dump_private_key_as_pem,
    generate_private_key,
    generate_self_signed_app_certificate,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from twin.keyfiles import write_private

CLIENT_URI = "urn:twin:client"
"""Application URI of our OPC-UA client (must match its certificate)."""
SERVER_URI = "urn:twin:sim"
"""Application URI of `twin sim`'s OPC-UA server (must match its certificate)."""


@dataclass(frozen=True)
class CertPair:
    """Paths of one certificate and its key."""

    certificate: Path
    private_key: Path


def client_pair(folder: Path) -> CertPair:
    return CertPair(folder / "client_cert.der", folder / "client_key.pem")


def server_pair(folder: Path) -> CertPair:
    return CertPair(folder / "server_cert.der", folder / "server_key.pem")


def _make(
    pair: CertPair, uri: str, common_name: str, usage: x509.ObjectIdentifier, days: int
) -> None:
    key = generate_private_key()
    host = socket.gethostname()
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(uri),
        x509.DNSName(host),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = generate_self_signed_app_certificate(
        key, common_name, {"organizationName": "plant-twin"}, names, [usage], days=days
    )
    pair.certificate.parent.mkdir(parents=True, exist_ok=True)
    # The key first, born 0600: a certificate on disk always has its key beside it.
    write_private(pair.private_key, dump_private_key_as_pem(key), replace=True)
    pair.certificate.write_bytes(cert.public_bytes(serialization.Encoding.DER))


def make_certificates(
    folder: Path, days: int = 365, overwrite: bool = False
) -> tuple[CertPair, CertPair]:
    """Client and server pairs in `folder`; existing ones are kept unless `overwrite`."""
    client, server = client_pair(folder), server_pair(folder)
    if overwrite or not (client.certificate.is_file() and client.private_key.is_file()):
        _make(client, CLIENT_URI, "twin client", ExtendedKeyUsageOID.CLIENT_AUTH, days)
    if overwrite or not (server.certificate.is_file() and server.private_key.is_file()):
        _make(server, SERVER_URI, "twin simulator", ExtendedKeyUsageOID.SERVER_AUTH, days)
    return client, server
