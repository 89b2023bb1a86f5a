# asyncua annotates NodeId/DataValue fields with NewTypes (Int16, String, DateTime) that plain
# ints, strs and datetimes do not satisfy for mypy; the values are the ones asyncua expects.
# mypy: disable-error-code="arg-type"
"""An asyncua server exposing one plant's tags under the node ids of its spec.

Values carry the simulator's clock as SourceTimestamp, every tag keeps server-side history
(so a client can back-fill an outage with HistoryRead), and writes to MV nodes go through
`on_mv_write`, which applies them to the plant and returns what was really applied
(clipped to engineering limits); that is the value the node then holds.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from asyncua import Server, ua
from asyncua.common.callback import CallbackType, ServerItemCallback
from asyncua.crypto.permission_rules import User, UserRole

from connectors.certs import SERVER_URI
from connectors.users import UserTable
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)

SecurityLevel = Literal["none", "sign", "sign-encrypt"]

_POLICIES: dict[str, list[ua.SecurityPolicyType]] = {
    "none": [ua.SecurityPolicyType.NoSecurity],
    "sign": [ua.SecurityPolicyType.Basic256Sha256_Sign],
    "sign-encrypt": [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt],
}

MvWriteHook = Callable[[str, float], Awaitable[float]]


@dataclass
class OpcuaServeConfig:
    """How the plant is served over OPC-UA."""

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 4840
    """TCP port."""
    path: str = "/twin/"
    """Endpoint path, as in the spec's endpoint URL."""
    security: SecurityLevel = "none"
    """none, sign (Basic256Sha256 Sign) or sign-encrypt (Basic256Sha256 SignAndEncrypt); only that one is offered."""
    certificate: Path | None = None
    """Server certificate (DER or PEM); required unless security is none."""
    private_key: Path | None = None
    """Server private key (PEM); required unless security is none."""
    users: UserTable = field(default_factory=UserTable)
    """Accepted user names and passwords; when not empty, anonymous sessions are refused."""
    history_count: int = 20_000
    """Values kept per tag for HistoryRead back-fill; 0 keeps no history."""

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}{self.path}"


class _Users:
    """asyncua user manager over a UserTable: anonymous only when no users are configured."""

    def __init__(self, table: UserTable) -> None:
        self._table = table

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if not self._table:
            return User(role=UserRole.User)
        if username is None or password is None or not self._table.check(username, password):
            log.warning("OPC-UA: refused login for user %r", username)
            return None
        return User(role=UserRole.User, name=username)


def _resolve(text: str, ns_of_uri: Mapping[str, int]) -> ua.NodeId:
    parsed = ua.NodeId.from_string(text)
    if isinstance(parsed, ua.ExpandedNodeId) and parsed.NamespaceUri:
        return ua.NodeId(parsed.Identifier, ns_of_uri[parsed.NamespaceUri], parsed.NodeIdType)
    return ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType)


class OpcuaPlantServer:
    """Serves the tags of one plant; `publish` updates them, MV writes call `on_mv_write`."""

    def __init__(self, spec: PlantSpec, config: OpcuaServeConfig, on_mv_write: MvWriteHook) -> None:
        self.spec = spec
        self.config = config
        self._on_mv_write = on_mv_write
        self._server = Server(user_manager=_Users(config.users))  # type: ignore[arg-type]
        self._nodes: dict[str, ua.NodeId] = {}
        self._mv_by_node: dict[ua.NodeId, Tag] = {}
        self._now: datetime = datetime.now(UTC)
        self._started = False

    async def start(self) -> None:
        cfg = self.config
        server = self._server
        await server.init()
        server.set_endpoint(cfg.endpoint)
        server.set_server_name(f"twin simulator: {self.spec.name}")
        await server.set_application_uri(SERVER_URI)
        if cfg.security != "none":
            if cfg.certificate is None or cfg.private_key is None:
                raise ValueError(
                    "OPC-UA security needs a server certificate and key (run `twin certs`)"
                )
            await server.load_certificate(str(cfg.certificate))
            await server.load_private_key(str(cfg.private_key))
        server.set_security_policy(_POLICIES[cfg.security])
        # With users configured only a user name and password open a session; else anonymous.
        server.set_identity_tokens(
            [ua.UserNameIdentityToken] if cfg.users else [ua.AnonymousIdentityToken]
        )
        await self._build_address_space()
        server.subscribe_server_callback(CallbackType.PreWrite, self._pre_write)
        await server.start()
        self._started = True
        log.info(
            "OPC-UA server for %s at %s (security %s)", self.spec.name, cfg.endpoint, cfg.security
        )

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._server.stop()

    async def _build_address_space(self) -> None:
        server = self._server
        ns_of_uri: dict[str, int] = {}
        uri_base = f"urn:twin:{self.spec.name}"
        parsed = [ua.NodeId.from_string(t.opcua) for t in self.spec.tags if t.opcua]
        for p in parsed:
            if (
                isinstance(p, ua.ExpandedNodeId)
                and p.NamespaceUri
                and p.NamespaceUri not in ns_of_uri
            ):
                ns_of_uri[p.NamespaceUri] = await server.register_namespace(p.NamespaceUri)
        # Numeric namespace indexes in the spec must exist: register placeholders up to the highest.
        highest = max(
            (p.NamespaceIndex for p in parsed if not isinstance(p, ua.ExpandedNodeId)), default=0
        )
        while len(await server.get_namespace_array()) <= highest:
            await server.register_namespace(
                f"{uri_base}:ns{len(await server.get_namespace_array())}"
            )
        first_ns = max(2, min((p.NamespaceIndex for p in parsed), default=2))
        if len(await server.get_namespace_array()) <= first_ns:
            await server.register_namespace(uri_base)
        folder = await server.nodes.objects.add_object(
            ua.NodeId(f"{self.spec.name}", first_ns), ua.QualifiedName(self.spec.name, first_ns)
        )
        now = datetime.now(UTC)
        for tag in self.spec.tags:
            if tag.opcua is None:
                continue
            nodeid = _resolve(tag.opcua, ns_of_uri)
            # Every tag is a Double, booleans as 0/1: the twin sees all tags as numbers.
            node = await folder.add_variable(
                nodeid,
                ua.QualifiedName(tag.name, nodeid.NamespaceIndex),
                ua.Variant(0.0, ua.VariantType.Double),
            )
            await node.write_attribute(
                ua.AttributeIds.Description,
                ua.DataValue(
                    ua.Variant(
                        ua.LocalizedText(f"{tag.description} [{tag.unit}]".strip()),
                        ua.VariantType.LocalizedText,
                    )
                ),
            )
            if tag.role == "mv":
                await node.set_writable()
                self._mv_by_node[nodeid] = tag
            self._nodes[tag.name] = nodeid
        # The sample clock as variables too, for clients that want it without a tag's timestamp.
        self._clock_time = (
            await folder.add_variable(
                ua.NodeId(f"{self.spec.name}._sim_time", first_ns),
                ua.QualifiedName("_sim_time", first_ns),
                ua.Variant(now, ua.VariantType.DateTime),
            )
        ).nodeid
        self._clock_step = (
            await folder.add_variable(
                ua.NodeId(f"{self.spec.name}._sim_step", first_ns),
                ua.QualifiedName("_sim_step", first_ns),
                ua.Variant(0, ua.VariantType.UInt32),
            )
        ).nodeid
        # Count-bounded history: time-bounded pruning compares with the wall clock, which an
        # accelerated simulator runs ahead of.
        if self.config.history_count > 0:
            nodes = [server.get_node(n) for n in self._nodes.values()]
            await server.historize_node_data_change(
                nodes, period=None, count=self.config.history_count
            )

    def node_id(self, tag: str) -> ua.NodeId:
        return self._nodes[tag]

    async def publish(self, ts: datetime, step: int, values: Mapping[str, float]) -> None:
        """Set every served tag in `values`, stamped with the plant's clock `ts`."""
        self._now = ts
        now = datetime.now(UTC)
        write = self._server.write_attribute_value
        for name, value in values.items():
            nodeid = self._nodes.get(name)
            if nodeid is None:
                continue
            await write(nodeid, self._datavalue(nodeid, value, ts, now))
        await write(
            self._clock_time,
            ua.DataValue(
                ua.Variant(ts, ua.VariantType.DateTime), SourceTimestamp=ts, ServerTimestamp=now
            ),
        )
        await write(
            self._clock_step,
            ua.DataValue(
                ua.Variant(step % 2**32, ua.VariantType.UInt32),
                SourceTimestamp=ts,
                ServerTimestamp=now,
            ),
        )

    @staticmethod
    def _datavalue(nodeid: ua.NodeId, value: float, ts: datetime, now: datetime) -> ua.DataValue:
        return ua.DataValue(
            ua.Variant(float(value), ua.VariantType.Double), SourceTimestamp=ts, ServerTimestamp=now
        )

    async def _pre_write(self, event: ServerItemCallback, _service: object) -> None:
        """Route client writes to MV nodes through the plant, so the node holds what was applied."""
        for wv in event.request_params.NodesToWrite:
            tag = self._mv_by_node.get(wv.NodeId)
            if tag is None or wv.AttributeId != ua.AttributeIds.Value or wv.Value.Value is None:
                continue
            raw = wv.Value.Value.Value
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                continue  # the address space answers BadTypeMismatch
            requested = float(raw)
            if not math.isfinite(requested):
                log.warning("OPC-UA: ignoring write of %s to %s", requested, tag.name)
                applied = float("nan")
            else:
                applied = await self._on_mv_write(tag.name, requested)
            if not math.isfinite(applied):
                # Keep the old value: the client's read-back shows the write did not happen.
                current = self._server.read_attribute_value(wv.NodeId)
                wv.Value = current
                continue
            wv.Value = self._datavalue(wv.NodeId, applied, self._now, datetime.now(UTC))

    async def set_mv(self, tag: str, value: float) -> None:
        """Show an MV change made through the other protocol."""
        nodeid = self._nodes.get(tag)
        if nodeid is not None:
            await self._server.write_attribute_value(
                nodeid, self._datavalue(nodeid, value, self._now, datetime.now(UTC))
            )
