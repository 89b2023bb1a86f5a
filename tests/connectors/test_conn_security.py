"""OPC-UA security: Basic256Sha256 Sign / SignAndEncrypt with `twin certs` certificates and env credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from conn_helpers import served_plant, spec_at

from connectors.certs import server_pair
from connectors.errors import AccessDenied
from connectors.opcua import OpcuaSink, OpcuaSource
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_server import OpcuaServeConfig
from connectors.users import UserTable, hash_password
from twin.cli import main
from twin.paths import Home

pytestmark = pytest.mark.timeout(120)

MODES = {"sign": "Basic256Sha256_Sign", "sign-encrypt": "Basic256Sha256_SignAndEncrypt"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    root = tmp_path_factory.mktemp("home")
    assert main(["certs", "--home", str(root)]) == 0
    h = Home.at(root)
    for name in ("client_cert.der", "client_key.pem", "server_cert.der", "server_key.pem"):
        assert (h.certs_dir / name).is_file()
    return h


def _server_config(home: Home, port: int, level: str) -> OpcuaServeConfig:
    pair = server_pair(home.certs_dir)
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
