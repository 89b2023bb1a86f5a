"""OPC-UA Source (subscriptions) on asyncua 2.x; the Sink (verified writes) is connectors.opcua_sink.

The source subscribes to every tag's node and yields values stamped with their
SourceTimestamp (the plant's clock). Reconnecting is asyncua's job (`auto_reconnect`, which
also restores the subscription); this module watches the client's state to mark the outage
with GAP samples and, once back, reads the missed values with HistoryRead where the server
keeps history. Whatever could not be recovered stays a recorded outage.

A connection can also go quiet without breaking: the server answers requests but its
subscription reports nothing (a stuck publisher, or a dying server that accepted the reconnect).
Unless the spec says the server reports by exception, every tag reports every sample period, so
a source that hears nothing for `silence_s` treats the connection as lost and asyncua reconnects.
If a second silence passes after that without a sample, asyncua's reconnect did not help (it
came back to the same silent session, or never came back): the source then drops the client and
builds a new one (new session, subscription and monitored items), retrying with back-off until
it connects. The outage stays one outage throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import DataChangeEvent, OverflowPolicy, Subscription

from connectors.base import (
    Outage,
    QualityLog,
    SourceStatus,
    classify,
    gap_markers,
    protocol_tags,
)
from connectors.opcua_client import (
    OpcuaConnection,
    ResolvedNode,
    open_client,
    resolve_nodes,
)
from twin.errors import ConnectionLost
from twin.sample import Quality, Sample
from twin.spec import PlantSpec, Tag

log = logging.getLogger(__name__)

_FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
SILENCE_PERIODS = 20
"""Sample periods without a single sample of any tag after which a connection is deemed dead."""
SILENCE_FLOOR_S = 10.0
"""The shortest such silence (wall seconds): fast plants still get several publishing turns."""


def default_silence_s(spec: PlantSpec) -> float | None:
    """How long a source may hear nothing before it reconnects: None under report by exception."""
    opcua = spec.source.opcua
    if opcua is not None and opcua.report_by_exception:
        return None
    return max(SILENCE_FLOOR_S, SILENCE_PERIODS * spec.plant.sample_period_s)


def _as_utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def to_sample(tag: Tag, dv: ua.DataValue) -> Sample:
    """One OPC-UA DataValue -> Sample with the right quality (never GOOD for NaN/inf/out of range)."""
    ts = _as_utc(dv.SourceTimestamp) or _as_utc(dv.ServerTimestamp) or datetime.now(UTC)
    raw: Any = dv.Value.Value if dv.Value is not None else None
    status = dv.StatusCode
    if isinstance(raw, bool):
        raw = float(raw)
    if not isinstance(raw, int | float):
        return Sample(ts, tag.name, math.nan, Quality.BAD)
    value = float(raw)
    quality = classify(tag, value)
    if status is not None and not status.is_good():
        quality = (
            Quality.UNCERTAIN if status.is_uncertain() and quality == Quality.GOOD else Quality.BAD
        )
    return Sample(ts, tag.name, value, quality)


class OpcuaSource:
    """Live samples from an OPC-UA server; see the module docstring."""

    def __init__(
        self,
        spec: PlantSpec,
        conn: OpcuaConnection,
        tags: list[str] | None = None,
        backfill: bool = True,
        queue_size: int = 1_000_000,
        silence_s: float | None = None,
    ) -> None:
        self.spec = spec
        self.conn = conn
        self.tags = protocol_tags(spec, tags, "opcua")
        self.silence_s = silence_s if silence_s is not None else default_silence_s(spec)
        """Wall seconds without any sample after which the connection is reconnected; None
        under report by exception, where a quiet plant sends nothing."""
        self._heard = time.monotonic()
        self.backfill = backfill
        self.status = SourceStatus()
        self._queue_size = queue_size
        self._period = timedelta(seconds=spec.plant.sample_period_s)
        self._client: Client | None = None
        self._sub: Subscription | None = None
        self._tag_of: dict[ua.NodeId, Tag] = {}
        self._nodes: dict[str, ResolvedNode] = {}
        self._pending: list[Sample] = []
        self._wakeup = asyncio.Event()
        self._last_ts: dict[str, datetime] = {}
        self._outage: Outage | None = None
        self._reconnected = False
        self._closed: list[Outage] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    async def __aenter__(self) -> Self:
        self._closing = False  # a closed source may be entered again
        await self._open()
        self.status.connected = True
        self._heard = time.monotonic()
        self._tasks = self._session_tasks()
        if self.silence_s is not None:
            self._tasks.append(asyncio.create_task(self._watch_silence(self.silence_s)))
        return self

    async def _open(self) -> None:
        """A connected client with its subscription and one monitored item per tag."""
        self._client = await open_client(self.conn)
        try:
            self._nodes = await resolve_nodes(self._client, self.tags, self.conn.endpoint)
            self._tag_of = {n.nodeid: self.spec.tag(name) for name, n in self._nodes.items()}
            interval = self.conn.publishing_interval_ms or min(
                self.spec.plant.sample_period_s * 500.0, 200.0
            )
            self._sub = await self._client.create_subscription(
                interval, None, queue_maxsize=self._queue_size, overflow=OverflowPolicy.WARN
            )
            await self._monitor()
        except BaseException:
            await self._disconnect()
            raise

    def _session_tasks(self) -> list[asyncio.Task[None]]:
        """The tasks bound to the current client: its samples and its connection state."""
        return [asyncio.create_task(self._pump()), asyncio.create_task(self._watch_state())]

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _monitor(self) -> None:
        """One monitored item per tag, reporting every sample, not only changed values."""
        assert self._sub is not None
        # Trigger on the timestamp too: an MV that holds its value still yields a sample per
        # period. A queue per item keeps an accelerated plant's samples between two publishes.
        flt = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
        for attempt_filter in (flt, None):
            requests = []
            for handle, tag in enumerate(self.tags, start=1):
                params = ua.MonitoringParameters(
                    ClientHandle=handle,
                    SamplingInterval=0.0,
                    QueueSize=1000,
                    DiscardOldest=True,
                    Filter=attempt_filter,
                )
                item = ua.ReadValueId(
                    NodeId=self._nodes[tag.name].nodeid, AttributeId=ua.AttributeIds.Value
                )
                requests.append(
                    ua.MonitoredItemCreateRequest(
                        ItemToMonitor=item,
                        MonitoringMode=ua.MonitoringMode.Reporting,
                        RequestedParameters=params,
                    )
                )
            results = await self._sub.create_monitored_items(requests)
            failed = [
                (t, r)
                for t, r in zip(self.tags, results, strict=True)
                if isinstance(r, ua.StatusCode)
            ]
            if not failed:
                return
            if (
                attempt_filter is not None
                and len(failed) == len(self.tags)
                and all("Filter" in r.name for _, r in failed)
            ):
                log.info(
                    "%s refuses timestamp-triggered monitoring; using value changes",
                    self.conn.endpoint,
                )
                continue
            tag, code = failed[0]
            raise ConnectionLost(
                f"tag {tag.name!r}: cannot monitor {tag.opcua} on {self.conn.endpoint}: {code.name}"
            )

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._disconnect()
        self._wakeup.set()

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=self.conn.timeout_s)
        self.status.connected = False

    # ---- stream ---------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[list[Sample]]:
        while not self._closing:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch, self._pending = self._pending, []
            yield batch

    def closed_outages(self) -> list[Outage]:
        out, self._closed = self._closed, []
        return out

    def _emit(self, samples: list[Sample], live: bool = True) -> None:
        if not samples:
            return
        self._pending.extend(samples)
        self._wakeup.set()
        status = self.status
        for s in samples:
            if s.quality == Quality.GAP:
                continue
            status.samples += 1
            if s.quality != Quality.GOOD:
                status.bad_samples += 1
            last = self._last_ts.get(s.tag)
            if last is None or s.ts > last:
                self._last_ts[s.tag] = s.ts
            if status.last_ts is None or s.ts > status.last_ts:
                status.last_ts = s.ts
        if live and self._reconnected and self._outage is not None:
            # The first value after a reconnect (and its back-fill) closes the outage.
            self._outage.end = min(s.ts for s in samples)
            self._closed.append(self._outage)
            self._outage = None
            self._reconnected = False

    async def _pump(self) -> None:
        assert self._sub is not None
        tag_of = self._tag_of
        qlog = QualityLog(log, self.conn.endpoint)
        async for ev in self._sub:
            if not isinstance(ev, DataChangeEvent):
                continue
            tag = tag_of.get(ev.node.nodeid)
            if tag is None:
                continue
            self._heard = time.monotonic()
            sample = to_sample(tag, ev.data.monitored_item.Value)
            qlog.see(sample)
            # Republished (replayed) values count as live: asyncua 2.1 may keep delivering
            # everything through Republish after a reconnect.
            self._emit([sample])

    async def _watch_state(self) -> None:
        assert self._client is not None
        client = self._client
        async with client.subscribe_state() as states:
            while True:
                state = await states.next_change()
                if state is UaClientState.RECONNECTING and self.status.connected:
                    self._on_lost()
                elif state is UaClientState.CONNECTED and not self.status.connected:
                    self.status.connected = True
                    log.info("OPC-UA %s: reconnected", self.conn.endpoint)
                    if self.backfill and self._outage is not None:
                        await self._backfill(self._outage)
                    self._reconnected = True

    async def _watch_silence(self, silence_s: float) -> None:
        """Reconnect a connection that stays up but reports nothing for `silence_s`; rebuild the
        client when a second such silence follows that reconnect."""
        asked_at: float | None = None
        """When asyncua was last asked to reconnect a silent session (None: not waiting)."""
        while True:
            await asyncio.sleep(min(1.0, silence_s / 4))
            now = time.monotonic()
            client = self._client
            if asked_at is not None:
                if self._heard > asked_at:  # a sample came back: asyncua's reconnect did it
                    asked_at = None
                elif now - asked_at > silence_s:
                    await self._rebuild(now - asked_at)
                    asked_at = None
                continue
            if client is None or not self.status.connected:
                self._heard = now  # the silence counts from the reconnect
            elif client.uaclient.state is not UaClientState.CONNECTED:
                self._heard = now
            elif now - self._heard > silence_s:
                log.warning(
                    "OPC-UA %s: no sample of any tag for %.0f s while the session is up "
                    "(the server answers but reports nothing); reconnecting",
                    self.conn.endpoint,
                    now - self._heard,
                )
                asked_at = self._heard = now
                client.uaclient.notify_transport_lost()

    async def _rebuild(self, waited_s: float) -> None:
        """Drop the client and connect a new one, retrying with back-off until it connects."""
        log.warning(
            "OPC-UA %s: still no sample %.0f s after asking to reconnect; dropping the client "
            "and connecting a new one",
            self.conn.endpoint,
            waited_s,
        )
        if self.status.connected:
            self._on_lost()
        self.status.extra["client_rebuilds"] = self.status.extra.get("client_rebuilds", 0) + 1
        me = asyncio.current_task()
        others = [t for t in self._tasks if t is not me]
        for task in others:
            task.cancel()
        for task in others:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._disconnect()
        delay = 1.0
        while not self._closing:
            try:
                await self._open()
                break
            except Exception as exc:  # whatever the server does, keep trying
                log.warning(
                    "OPC-UA %s: new client failed (%s: %s); retrying in %.0f s",
                    self.conn.endpoint,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.conn.reconnect_max_delay_s)
        if self._closing:
            return
        log.info("OPC-UA %s: connected with a new client", self.conn.endpoint)
        self.status.connected = True
        self._heard = time.monotonic()
        self._tasks = [t for t in (me,) if t is not None] + self._session_tasks()
        if self.backfill and self._outage is not None:
            await self._backfill(self._outage)
        self._reconnected = True

    def _on_lost(self) -> None:
        self.status.connected = False
        self.status.last_error = "connection lost"
        log.warning("OPC-UA %s: connection lost; reconnecting", self.conn.endpoint)
        if self._outage is not None:  # lost again before a sample closed the outage: still one
            return
        self.status.gaps += 1
        start = (self.status.last_ts + self._period) if self.status.last_ts else datetime.now(UTC)
        self._outage = Outage(start=start, reason="OPC-UA connection lost")
        markers: list[Sample] = []
        for t in self.tags:
            last = self._last_ts.get(t.name)
            markers += gap_markers([t], last + self._period if last else start)
        self._emit(markers, live=False)

    async def _backfill(self, outage: Outage) -> None:
        """Read what the server's history holds since each tag's last value."""
        assert self._client is not None
        recovered = 0
        for tag in self.tags:
            since = self._last_ts.get(tag.name)
            if since is None:
                continue
            node = self._client.get_node(self._nodes[tag.name].nodeid)
            try:
                values = await node.read_raw_history(
                    since + timedelta(microseconds=1), _FAR_FUTURE, return_bounds=False
                )
            except (ua.UaError, TimeoutError, ConnectionError, OSError) as exc:
                log.info("tag %r: no history back-fill (%s)", tag.name, type(exc).__name__)
                continue
            samples = [to_sample(tag, dv) for dv in values]
            samples = [s for s in samples if s.ts > since]
            self._emit(samples, live=False)
            recovered += len(samples)
        outage.backfilled += recovered
        self.status.backfilled += recovered
        if recovered:
            log.info(
                "OPC-UA %s: back-filled %d values from server history",
                self.conn.endpoint,
                recovered,
            )
