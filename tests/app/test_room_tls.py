"""`twin app --tls-cert/--tls-key`: the control room over HTTPS with Streamlit's own TLS."""

from __future__ import annotations

import ipaddress
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from room_plant import healthy, wait_for

from tests.support.procs import free_port
from twin.keyfiles import write_private


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "control room")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "room.pem", folder / "room.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(key_file, pem)
    return cert_file, key_file


def _https_healthy(url: str, cafile: Path) -> bool:
    context = ssl.create_default_context(cafile=str(cafile))
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2, context=context) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.mark.timeout(120)
def test_twin_app_serves_https_only(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    log = tmp_path / "app.log"
    cmd = [
        sys.executable,
        "-m",
        "twin.cli",
        "app",
        "--port",
        str(port),
        "--home",
        str(tmp_path / "home"),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        url = f"https://127.0.0.1:{port}"
        wait_for(
            lambda: _https_healthy(url, cert),
            60,
            "the control room over HTTPS",
            proc,
            log,
        )
        assert not healthy(f"http://127.0.0.1:{port}")  # plain HTTP gets no page
        assert f"control room on https://127.0.0.1:{port}/" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_twin_app_wants_both_tls_files(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    base = [sys.executable, "-m", "twin.cli", "app", "--home", str(tmp_path / "h")]
    r = subprocess.run([*base, "--tls-cert", str(cert)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr
    r = subprocess.run(
        [*base, "--tls-cert", str(cert), "--tls-key", str(tmp_path / "none.key")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "none.key: no such file" in " ".join(r.stderr.split())
