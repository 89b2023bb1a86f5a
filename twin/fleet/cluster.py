"""Connecting to Ray: a cluster by address, or a local one started on demand.

Ray is imported here and only here (and by the sweep), so every other command works without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from twin.errors import BadInput, TwinError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the fleet extra: pip install 'plant-twin[fleet]'"
# A local Ray started on demand keeps its object store small: results are tiny dicts, and
# the default (30 % of RAM) would take memory the twins need.
LOCAL_OBJECT_STORE_BYTES = 80 * 1024 * 1024


class RayUnavailable(TwinError):
    """Ray is not installed or the cluster cannot be reached."""


def keep_on_loopback() -> None:
    """A Ray on this host only: every Ray service on 127.0.0.1.

    Ray picks its node address from the machine's outward interface even when told
    --node-ip-address 127.0.0.1; with this setting (read when Ray is imported) it keeps to the
    loopback address, so a single-host fleet never listens on or talks over the plant network."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            f"twin fleet needs Ray, which is not installed here; {INSTALL_HINT}"
        ) from None
    return ray


@contextmanager
def connected(address: str | None, cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, connected for the block: `address` (ray://HOST:PORT, HOST:PORT or auto; else
    RAY_ADDRESS) or, with neither, a local Ray started now on 127.0.0.1 and stopped after
    (cpus: its CPU count)."""
    # Ray's own convention: RAY_ADDRESS names the cluster when --address does not.
    address = address if address is not None else (os.environ.get("RAY_ADDRESS") or None)
    if address is None or address.split("://")[-1].startswith(("127.", "localhost")):
        keep_on_loopback()
    ray = import_ray()
    if address is not None and not address.strip():
        raise BadInput("--address: give ray://HOST:PORT, HOST:PORT or auto")
    if address is not None and cpus is not None:
        raise BadInput("--cpus sizes a local Ray; a cluster at --address has its own resources")
    started_here = not ray.is_initialized()
    try:
        if started_here and address is None:
            ray.init(
                address="local",  # a new Ray of our own, never some other cluster on this host
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _node_ip_address="127.0.0.1",
                configure_logging=False,
                log_to_driver=False,
            )
        elif started_here:
            ray.init(address=address, configure_logging=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local Ray"
        raise RayUnavailable(f"cannot start or reach Ray at {where}: {exc}") from exc
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def cluster_cpus(ray: ModuleType) -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))
