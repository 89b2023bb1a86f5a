"""OPC-UA security: Basic256Sha256 Sign / SignAndEncrypt with `twin certs` certificates and env
credentials; the server's certificate pinned or in the trust list; no password in clear text."""

from __future__ import annotations

import stat
from dataclasses import replace
from pathlib import Path

import pytest
from conn_helpers import served_plant, spec_at

from connectors.certs import make_certificates, server_pair
from connectors.errors import AccessDenied
from connectors.opcua import OpcuaSource
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from connectors.opcua_sink import OpcuaSink
from connectors.users import UserTable, hash_password
from twin.cli import main
from twin.errors import SpecError
from twin.paths import Home
from twin.spec import PlantSpec, load_spec

pytestmark = pytest.mark.timeout(120)

MODES = {"sign": "Basic256Sha256_Sign", "sign-encrypt": "Basic256Sha256_SignAndEncrypt"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("home")
    assert main(["certs", "--home", str(root)]) == 0
    h = Home.at(root)
    for name in ("client_cert.der", "client_key.pem", "server_cert.der", "server_key.pem"):
        assert (h.certs_dir / name).is_file()
    for key in ("client_key.pem", "server_key.pem"):
        assert stat.S_IMODE((h.certs_dir / key).stat().st_mode) == 0o600
    assert stat.S_IMODE((h.keys_dir / "audit-k1.key").stat().st_mode) == 0o600
    # The simulator's own certificate is trusted in its home; no other is.
    assert len(list(h.trust_dir.iterdir())) == 1
    return h


def _server_config(
    home: Home, port: int, level: str, certs: Path | None = None
) -> OpcuaServeConfig:
    pair = server_pair(certs or home.certs_dir)
    users = UserTable({"operator": hash_password("s3cret")})
    return OpcuaServeConfig(
        port=port,
        security=level,
        certificate=pair.certificate,  # type: ignore[arg-type]
        private_key=pair.private_key,
        users=users,
    )


@pytest.mark.parametrize("level", ["sign", "sign-encrypt"])
async def test_secure_session_with_env_credentials(
    tmp_path: Path, home: Home, level: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, o, _ = spec_at(tmp_path, security=MODES[level])
    monkeypatch.setenv("TWIN_OPCUA_USER", "operator")
    monkeypatch.setenv("TWIN_OPCUA_PASSWORD", "s3cret")
    async with served_plant(spec, opcua=_server_config(home, o, level)) as server:
        conn = OpcuaConnection.from_spec(spec, home)
        assert conn.security == MODES[level] and conn.username == "operator"
        async with OpcuaSource(spec, conn) as source:
            batch = await anext(aiter(source.batches()))
            assert {s.tag for s in batch} <= set(spec.tag_names) and batch
        async with OpcuaSink(spec, conn) as sink:
            (res,) = await sink.write({"v1": 4.0})
            assert res.read_back == 4.0 and server.sim.mv["v1"] == 4.0


async def test_refusals(tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, o, _ = spec_at(tmp_path, security=MODES["sign-encrypt"])
    async with served_plant(spec, opcua=_server_config(home, o, "sign-encrypt")):
        good = OpcuaConnection.from_spec(spec, home)
        cases = {
            "anonymous": dict(username=None, password=None),
            "wrong password": dict(username="operator", password="guess"),
            "unknown user": dict(username="mallory", password="s3cret"),
            "no security": dict(security="None", username="operator", password="s3cret"),
        }
        for what, change in cases.items():
            conn = OpcuaConnection(**{**good.__dict__, **change})
            with pytest.raises(AccessDenied, match=f"127.0.0.1:{o}") as info:
                async with OpcuaSource(spec, conn):
                    pass
            assert "refused" in str(info.value) or "offers no" in str(info.value), what


def test_sim_refuses_security_without_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TWIN_OPCUA_USER", raising=False)
    monkeypatch.delenv("TWIN_OPCUA_PASSWORD", raising=False)
    spec, o, m = spec_at(tmp_path)
    code = main(["sim", str(spec.path), "--security", "sign", "--home", str(tmp_path / "h")])
    assert code == 2
    assert "--security needs users" in capsys.readouterr().err


def _with_opcua_keys(spec: PlantSpec, **keys: object) -> PlantSpec:
    """The same spec file with extra [source.opcua] keys."""
    text = spec.path.read_text()
    lines = "".join(
        f"{k} = {v!r}\n".replace("'", '"').replace("True", "true") for k, v in keys.items()
    )
    spec.path.write_text(text.replace("[source.opcua]\n", "[source.opcua]\n" + lines, 1))
    return load_spec(spec.path)


async def test_unknown_server_certificate_is_refused_until_trusted(
    tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWIN_OPCUA_USER", "operator")
    monkeypatch.setenv("TWIN_OPCUA_PASSWORD", "s3cret")
    own = Home.at(tmp_path / "own")
    assert main(["certs", "--home", str(own.root)]) == 0
    # The server presents a certificate of its own, made elsewhere (another plant, an impostor).
    impostor = tmp_path / "impostor"
    make_certificates(impostor)
    spec, o, _ = spec_at(tmp_path, security=MODES["sign-encrypt"])
    config = _server_config(home, o, "sign-encrypt", certs=impostor)
    async with served_plant(spec, opcua=config) as server:
        with pytest.raises(AccessDenied, match="unknown server certificate") as info:
            async with OpcuaSource(spec, OpcuaConnection.from_spec(spec, own)):
                pass
        message = str(info.value)
        (kept,) = own.rejected_dir.iterdir()
        assert f"twin certs trust {kept}" in message and f"127.0.0.1:{o}" in message
        assert main(["certs", "trust", str(kept), "--home", str(own.root)]) == 0
        async with OpcuaSink(spec, OpcuaConnection.from_spec(spec, own)) as sink:
            (res,) = await sink.write({"v1": 3.5})
            assert res.read_back == 3.5 and server.sim.mv["v1"] == 3.5


async def test_pinned_certificate_alone_decides(
    tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWIN_OPCUA_USER", "operator")
    monkeypatch.setenv("TWIN_OPCUA_PASSWORD", "s3cret")
    spec, o, _ = spec_at(tmp_path, security=MODES["sign"])
    served = server_pair(home.certs_dir).certificate
    other = tmp_path / "other"
    make_certificates(other)
    async with served_plant(spec, opcua=_server_config(home, o, "sign")):
        # Pinned to another certificate: refused, although the trust list holds the served one.
        wrong = _with_opcua_keys(spec, server_certificate=str(server_pair(other).certificate))
        with pytest.raises(AccessDenied, match="not the certificate pinned in the spec"):
            async with OpcuaSource(wrong, OpcuaConnection.from_spec(wrong, home)):
                pass
        # Pinned to the served one: accepted without any trust list.
        spec_path = wrong.path
        spec_path.write_text(
            spec_path.read_text().replace(str(server_pair(other).certificate), str(served))
        )
        right = load_spec(spec_path)
        conn = replace(OpcuaConnection.from_spec(right, home), trust_dir=None)
        async with OpcuaSource(right, conn) as source:
            assert await anext(aiter(source.batches()))


async def test_password_over_security_none_needs_the_spec_to_allow_it(
    tmp_path: Path, home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWIN_OPCUA_USER", "operator")
    monkeypatch.setenv("TWIN_OPCUA_PASSWORD", "s3cret")
    spec, o, _ = spec_at(tmp_path)
    users = UserTable({"operator": hash_password("s3cret")})
    async with served_plant(spec, opcua=OpcuaServeConfig(port=o, users=users)):
        with pytest.raises(AccessDenied, match="clear text") as info:
            async with OpcuaSource(spec, OpcuaConnection.from_spec(spec, home)):
                pass
        assert "allow_plaintext_password = true" in str(info.value) and str(spec.path) in str(
            info.value
        )
        allowed = _with_opcua_keys(spec, allow_plaintext_password=True)
        async with OpcuaSource(allowed, OpcuaConnection.from_spec(allowed, home)) as source:
            assert await anext(aiter(source.batches()))


def test_misspelt_security_key_names_file_and_key(tmp_path: Path) -> None:
    spec, _, _ = spec_at(tmp_path)
    with pytest.raises(SpecError, match="allow_plaintext_pasword") as info:
        _with_opcua_keys(spec, allow_plaintext_pasword=True)
    assert str(spec.path) in str(info.value)
