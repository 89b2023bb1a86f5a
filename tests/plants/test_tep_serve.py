"""Tennessee Eastman (tep) as the rest of the project sees it: generated history and `twin sim`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from connectors.opcua import OpcuaSource
from connectors.opcua_client import OpcuaConnection
from connectors.opcua_sink import OpcuaSink
from plants.tep.tags import analyser_period_s
from tests.support.procs import free_port
from tests.support.specs import spec_copy
from twin.generate import generate
from twin.spec import load_spec

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_generate_writes_analysers_at_their_own_interval() -> None:
    spec = load_spec("tep")
    frame = generate(spec, 2.0, "steps", None, 4, START, progress=False)
    wide = frame.pivot(index="ts", columns="tag", values="value")[spec.tag_names]
    assert len(wide) == 200 and not wide.isna().any().any()
    period = spec.plant.sample_period_s
    for tag in spec.tag_names:
        changes = np.flatnonzero(np.diff(wide[tag].to_numpy())) + 1  # sample indices
        analyser = analyser_period_s(tag)
        if tag.startswith("sp_"):
            # Setpoints move only at control intervals, by the excitation.
            assert all(i % spec.plant.samples_per_interval == 0 for i in changes), tag
        elif analyser is None:
            assert len(changes) >= 190, tag  # noisy continuous transmitters change every scan
        else:
            # An analyser reports once per cycle (the kernel's clock puts it within a scan of
            # the cycle's end) and holds its reading in between.
            gaps = np.diff(changes) * period
            assert len(changes) >= 7200 / analyser - 1, tag
            assert np.all(np.abs(gaps - analyser) <= period), (tag, gaps)
    assert wide["sp_reactor_pressure"].nunique() > 1  # the excitation moved the setpoints


@pytest.mark.timeout(180)
async def test_twin_sim_tep_is_readable_and_writable_over_opcua(tmp_path: Path) -> None:
    port, modbus_port = free_port(), free_port()
    spec = load_spec(
        spec_copy("tep", tmp_path, opcua_port=port, modbus_port=modbus_port, simulator=False)
    )
    cmd = [sys.executable, "-m", "twin.cli", "sim", "tep", "--opcua-port", str(port)]
    cmd += ["--modbus-port", str(modbus_port), "--speed", "200", "--home", str(tmp_path / "h")]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("serving"):
                break
        assert line.startswith("serving tep"), line
        conn = OpcuaConnection.from_spec(spec)
        samples = []
        async with OpcuaSource(spec, conn) as source:
            async for batch in source.batches():
                samples += batch
                if len({s.ts for s in samples}) >= 5:
                    break
        assert {s.tag for s in samples} == set(spec.tag_names)
        pressure = {s.ts: s.value for s in samples if s.tag == "reactor_pressure"}
        assert all(2600.0 < v < 2800.0 for v in pressure.values())
        stamps = sorted(pressure)
        steps = {(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)}
        assert steps and all(s % spec.plant.sample_period_s == 0 for s in steps)  # plant clock

        async with OpcuaSink(spec, conn, tags=["sp_reactor_pressure"]) as sink:
            (res,) = await sink.write({"sp_reactor_pressure": 2750.0})
        assert (res.requested, res.written, res.read_back) == (2750.0, 2750.0, 2750.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Traceback" not in out
