"""The OPC-UA server certificates we trust: pinned in the spec, or in the home's trust list.

A certificate offered by a server over an unsecured GetEndpoints call is only a candidate:
anyone between us and the plant could have offered it. It is used only when the same bytes
are pinned in the plant spec or were put in the trust list (`twin certs trust FILE`) by someone
who checked its fingerprint. An unknown one is kept in the rejected folder so that it can be
inspected and, if it is the plant's, trusted with one command.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from connectors.errors import AccessDenied
from twin.errors import BadInput


@dataclass(frozen=True)
class Certificate:
    """One X.509 certificate, kept as DER bytes."""

    der: bytes

    @classmethod
    def load(cls, path: Path) -> Certificate:
        """A PEM or DER file; BadInput names the file and why it is not a certificate."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadInput(f"{path}: cannot read the certificate: {exc.strerror or exc}") from None
        try:
            cert = (
                x509.load_pem_x509_certificate(data)
                if data.lstrip().startswith(b"-----BEGIN")
                else x509.load_der_x509_certificate(data)
            )
        except ValueError as exc:
            raise BadInput(f"{path}: not an X.509 certificate (PEM or DER): {exc}") from None
        return cls(cert.public_bytes(serialization.Encoding.DER))

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER bytes, as colon-separated hex (what an administrator compares)."""
        digest = hashlib.sha256(self.der).hexdigest().upper()
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    @property
    def subject(self) -> str:
        return x509.load_der_x509_certificate(self.der).subject.rfc4514_string()

    def file_name(self) -> str:
        cert = x509.load_der_x509_certificate(self.der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(names[0].value) if names else "server")
        return f"{cn[:40]}_{self.fingerprint.replace(':', '')[:16].lower()}.der"


class TrustList:
    """A folder of trusted server certificates (DER), one file each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, cert: Certificate) -> Path:
        """Trust `cert`; returns its file in the list (the same file if already trusted)."""
        known = self.find(cert)
        if known is not None:
            return known
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / cert.file_name()
        path.write_bytes(cert.der)
        return path

    def find(self, cert: Certificate) -> Path | None:
        """The trusted file holding exactly this certificate, if any."""
        if not self.folder.is_dir():
            return None
        for path in sorted(self.folder.iterdir()):
            if path.suffix.lower() in (".der", ".pem", ".crt") and path.is_file():
                try:
                    if Certificate.load(path).der == cert.der:
                        return path
                except BadInput:
                    continue  # a stray file in the folder trusts nothing
        return None


def require_trusted(
    offered: Certificate,
    endpoint: str,
    *,
    pinned: Path | None,
    trust: TrustList | None,
    rejected: Path | None,
) -> Certificate:
    """The certificate to talk to `endpoint` with; AccessDenied says how to trust an unknown one."""
    if pinned is not None:
        expected = Certificate.load(pinned)
        if expected.der == offered.der:
            return expected
        reason = f"it is not the certificate pinned in the spec ({pinned}, {expected.fingerprint})"
    else:
        if trust is not None and trust.find(offered) is not None:
            return offered
        where = f"in the trust list {trust.folder}" if trust is not None else "trusted"
        reason = f"it is neither pinned in the spec (source.opcua.server_certificate) nor {where}"
    how = "pin the right certificate in the spec"
    if rejected is not None:
        rejected.mkdir(parents=True, exist_ok=True)
        kept = rejected / offered.file_name()
        kept.write_bytes(offered.der)
        how = (
            f"if the plant's administrator confirms this fingerprint, run "
            f"`twin certs trust {kept}` (or pin it as source.opcua.server_certificate)"
        )
    raise AccessDenied(
        f"{endpoint} presents an unknown server certificate ({offered.subject}, SHA-256 "
        f"{offered.fingerprint}): {reason}; refused. To trust it: {how}"
    )
