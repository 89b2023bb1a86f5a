# asyncua annotates NodeId/DataValue fields with NewTypes (Int16, String, DateTime) that plain
# ints, strs and datetimes do not satisfy for mypy; the values are the ones asyncua expects.
# mypy: disable-error-code="arg-type"
"""Connecting to an OPC-UA server: settings from the spec, security, and checked node lookup.

Connection failures become typed errors that name the endpoint and the server's reason:
`ConnectionLost` (cannot reach it), `AccessDenied` (security or credentials refused),
`TagConfigError` (a tag's node is missing, not a variable, or not a number).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.certs import CLIENT_URI
from connectors.errors import AccessDenied, TagConfigError
from connectors.trust import Certificate, TrustList, require_trusted
from twin.errors import BadInput, ConnectionLost
from twin.paths import Home
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)


class _LostConnectionNoise(logging.Filter):
    """asyncua's publish loop logs every retry on a closed connection as an ERROR with a
    traceback, once a second for as long as the plant is unreachable. The connection's loss is
    this package's to report (one warning, an outage record, an alarm), so those retries are
    kept at DEBUG without the traceback; any other publish failure stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if str(record.msg).startswith("Publish iteration crashed") and isinstance(
            exc, ConnectionError
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg = f"{record.msg} ({exc})"
            record.exc_info, record.exc_text = None, None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


logging.getLogger("asyncua.client.ua_session.UaSession").addFilter(_LostConnectionNoise())

# Data types a tag may have: Boolean .. Double, and the abstract Number / Integer / UInteger.
NUMERIC_TYPES = {ua.NodeId(i) for i in range(1, 12)} | {ua.NodeId(26), ua.NodeId(27), ua.NodeId(28)}

_SECURITY_REFUSALS = (
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadSecurityPolicyRejected,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadSecurityModeRejected,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadCertificateUntrusted,
)


@dataclass
class OpcuaConnection:
    """Everything needed to open a session with a plant's OPC-UA server."""

    endpoint: str
    """opc.tcp:// URL."""
    security: str = "None"
    """None, Basic256Sha256_Sign or Basic256Sha256_SignAndEncrypt."""
    certificate: Path | None = None
    """Client application certificate (from the spec, else `twin certs` in the home)."""
    private_key: Path | None = None
    """Client private key."""
    server_certificate: Path | None = None
    """Server certificate pinned in the spec; None: the one offered must be in `trust_dir`."""
    trust_dir: Path | None = None
    """Trusted server certificates (`twin certs trust FILE`)."""
    rejected_dir: Path | None = None
    """Where an unknown server certificate is kept so that it can be inspected and trusted."""
    allow_plaintext_password: bool = False
    """Send credentials over security None (the spec must say so)."""
    spec_file: Path | None = None
    """The plant spec these settings came from (named in refusals)."""
    username: str | None = None
    """User name (from the environment variable the spec names)."""
    password: str | None = None
    """Password (from the environment variable the spec names)."""
    timeout_s: float = 4.0
    """Per-request timeout."""
    reconnect_max_delay_s: float = 5.0
    """Cap of the reconnect back-off."""
    publishing_interval_ms: float | None = None
    """Subscription publishing interval; None: the sample period."""

    @classmethod
    def from_spec(
        cls, spec: PlantSpec, home: Home | None = None, endpoint: str | None = None
    ) -> OpcuaConnection:
        src = spec.source.opcua
        if src is None:
            raise BadInput(f"plant {spec.name!r} has no [source.opcua]")
        cert = spec.resolve(src.certificate) if src.certificate else None
        key = spec.resolve(src.private_key) if src.private_key else None
        if src.security != "None" and cert is None and home is not None:
            cert, key = home.certs_dir / "client_cert.der", home.certs_dir / "client_key.pem"
        username = os.environ.get(src.username_env) if src.username_env else None
        password = os.environ.get(src.password_env) if src.password_env else None
        return cls(
            endpoint=endpoint or src.endpoint,
            security=src.security,
            certificate=cert,
            private_key=key,
            server_certificate=spec.resolve(src.server_certificate)
            if src.server_certificate
            else None,
            trust_dir=home.trust_dir if home is not None else None,
            rejected_dir=home.rejected_dir if home is not None else None,
            username=username or None,
            password=password if username else None,
            allow_plaintext_password=src.allow_plaintext_password,
            spec_file=spec.path,
            publishing_interval_ms=src.publishing_interval_ms,
        )


async def open_client(conn: OpcuaConnection, auto_reconnect: bool = True) -> Client:
    """A connected client; asyncua's supervisor reconnects it and restores its subscriptions."""
    _refuse_plaintext_password(conn)
    client = Client(
        conn.endpoint,
        timeout=conn.timeout_s,
        auto_reconnect=auto_reconnect,
        reconnect_max_delay=conn.reconnect_max_delay_s,
        reconnect_request_timeout=conn.timeout_s,
    )
    client.name = client.description = "twin"
    client.application_uri = CLIENT_URI
    client.session_timeout = (
        600_000  # the most asyncua servers grant; asking more only logs a warning
    )
    if conn.username:
        client.set_user(conn.username)
        client.set_password(conn.password or "")
    try:
        if conn.security != "None":
            await _set_security(client, conn)
        await client.connect()
    except UaStatusCodeError as exc:
        if exc.code in _SECURITY_REFUSALS:
            raise AccessDenied(
                f"{conn.endpoint} refused the session ({conn.security}, user "
                f"{conn.username or 'anonymous'}): {type(exc).__name__}"
            ) from None
        raise ConnectionLost(f"{conn.endpoint}: {type(exc).__name__}: {exc}") from None
    except ua.UaError as exc:
        if "No matching endpoints" in str(exc):
            raise AccessDenied(
                f"{conn.endpoint} offers no endpoint for security {conn.security}; "
                "it requires another security mode"
            ) from None
        if "certificate mismatch" in str(exc):
            # The session answered with another certificate than the trusted one: an impostor.
            raise AccessDenied(
                f"{conn.endpoint} answered with another certificate than the trusted one; refused"
            ) from None
        raise
    except (OSError, TimeoutError, ConnectionError) as exc:
        raise ConnectionLost(f"cannot reach {conn.endpoint}: {exc or type(exc).__name__}") from None
    return client


def _refuse_plaintext_password(conn: OpcuaConnection) -> None:
    if conn.security != "None" or not conn.username or conn.allow_plaintext_password:
        return
    where = f" of {conn.spec_file}" if conn.spec_file else ""
    raise AccessDenied(
        f"{conn.endpoint}: refused to send user {conn.username!r}'s password over security "
        f"None, where it would travel in clear text; use Basic256Sha256_SignAndEncrypt, or "
        f"set allow_plaintext_password = true in [source.opcua]{where} (an isolated lab only)"
    )


def _leading_der(blob: bytes) -> bytes:
    """The first certificate of a DER chain (servers may send the chain concatenated)."""
    if len(blob) < 2 or blob[1] < 0x80:
        return blob[: 2 + (blob[1] if len(blob) > 1 else 0)]
    n = blob[1] & 0x7F
    return blob[: 2 + n + int.from_bytes(blob[2 : 2 + n], "big")]


async def _trusted_server_certificate(
    client: Client, conn: OpcuaConnection, mode: ua.MessageSecurityMode
) -> bytes:
    """The server's certificate, accepted only when pinned or in the trust list.

    GetEndpoints runs over an unsecured channel, so what it returns is only a candidate; the
    secure channel is then opened with the trusted copy, which an impostor cannot answer to.
    """
    endpoints = await client.connect_and_get_server_endpoints()
    endpoint = Client.find_endpoint(endpoints, mode, SecurityPolicyBasic256Sha256.URI)
    offered = Certificate(_leading_der(endpoint.ServerCertificate or b""))
    trusted = require_trusted(
        offered,
        conn.endpoint,
        pinned=conn.server_certificate,
        trust=TrustList(conn.trust_dir) if conn.trust_dir is not None else None,
        rejected=conn.rejected_dir,
    )
    return trusted.der


async def _set_security(client: Client, conn: OpcuaConnection) -> None:
    mode = {
        "Basic256Sha256_Sign": ua.MessageSecurityMode.Sign,
        "Basic256Sha256_SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
    }[conn.security]
    for what, path in (("certificate", conn.certificate), ("private key", conn.private_key)):
        if path is None or not path.is_file():
            raise BadInput(
                f"OPC-UA security {conn.security} needs a client {what}: "
                f"{path or 'none given'} (run `twin certs`)"
            )
    try:
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(conn.certificate),
            private_key=str(conn.private_key),
            server_certificate=await _trusted_server_certificate(client, conn, mode),
            mode=mode,
        )
    except ua.UaError as exc:
        if "No matching endpoints" in str(exc) or isinstance(exc, UaStatusCodeError):
            raise AccessDenied(
                f"{conn.endpoint} offers no {conn.security} endpoint: {exc}"
            ) from None
        raise


@dataclass(frozen=True)
class ResolvedNode:
    """A tag's node on the server, checked."""

    nodeid: ua.NodeId
    vtype: ua.VariantType
    """Variant type a write must carry."""


async def resolve_nodes(client: Client, tags: list[Tag], endpoint: str) -> dict[str, ResolvedNode]:
    """Each tag's node, checked: it exists, is a variable and holds a number."""
    ids: dict[str, ua.NodeId] = {}
    for tag in tags:
        assert tag.opcua is not None
        parsed = ua.NodeId.from_string(tag.opcua)
        if isinstance(parsed, ua.ExpandedNodeId) and parsed.NamespaceUri:
            try:
                index = await client.get_namespace_index(parsed.NamespaceUri)
            except ValueError:
                raise TagConfigError(
                    tag.name, f"namespace {parsed.NamespaceUri!r} is not on {endpoint}"
                ) from None
            ids[tag.name] = ua.NodeId(parsed.Identifier, index, parsed.NodeIdType)
        else:
            ids[tag.name] = ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)
    params = ua.ReadParameters()
    for nodeid in ids.values():
        for attr in (ua.AttributeIds.NodeClass, ua.AttributeIds.DataType):
            params.NodesToRead.append(ua.ReadValueId(NodeId=nodeid, AttributeId=attr))
    results = await client.uaclient.read(params)
    out: dict[str, ResolvedNode] = {}
    for i, tag in enumerate(tags):
        node_class, data_type = results[2 * i], results[2 * i + 1]
        where = f"node {tag.opcua} on {endpoint}"
        status = node_class.StatusCode or ua.StatusCode()
        if not status.is_good() or node_class.Value is None:
            raise TagConfigError(tag.name, f"{where} does not exist ({status.name})")
        if node_class.Value.Value != ua.NodeClass.Variable:
            raise TagConfigError(
                tag.name,
                f"{where} is a {ua.NodeClass(node_class.Value.Value).name}, not a variable",
            )
        dtype_status = data_type.StatusCode or ua.StatusCode()
        dtype = (
            data_type.Value.Value
            if dtype_status.is_good() and data_type.Value is not None
            else None
        )
        if dtype not in NUMERIC_TYPES:
            name = (
                ua.ObjectIdNames.get(dtype.Identifier, str(dtype))
                if dtype is not None
                else "unknown"
            )
            raise TagConfigError(tag.name, f"type mismatch: {where} holds {name}, not a number")
        vtype = (
            ua.VariantType(dtype.Identifier) if dtype.Identifier <= 11 else ua.VariantType.Double
        )
        out[tag.name] = ResolvedNode(ids[tag.name], vtype)
    return out
