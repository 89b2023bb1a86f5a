"""One writer process, reader processes, SIGKILL: readers never see torn data, nothing stored is lost."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from hist_helpers import at, start_proc
from procs import BASE, TAGS, check, tick

from twin.errors import HistorianError
from twin.historian import Historian
from twin.sample import Sample


def _finish(proc, timeout: float = 60) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out, err


@pytest.mark.timeout(90)
def test_reader_process_sees_only_complete_data_while_writer_appends(folder, tmp_path):
    result = tmp_path / "reader.json"
    # 0.1 s flushes, merges every 4 segments, and the run crosses midnight, so the reader also
    # reads while small segments are merged and the closed day is compacted.
    writer = start_proc("writer", folder, 0.1, 240, 0.01, 4)
    reader = start_proc("reader", folder, 4.0, result)
    _finish(writer)
    _finish(reader)
    summary = json.loads(result.read_text())
    assert summary["errors"] == []
    assert summary["reads"] >= 5
    assert max(summary["seen"]) > 0
    frame = Historian(folder).read(BASE, BASE + timedelta(days=2), tags=TAGS)
    assert len(frame) == 240 and check(frame) is None


@pytest.mark.timeout(90)
def test_sigkill_loses_at_most_the_unflushed_buffer(folder):
    flush_s, tick_s = 0.2, 0.005
    writer = start_proc("writer", folder, flush_s, 100_000, tick_s)
    appended = []

    def follow() -> None:
        for line in writer.stdout:
            if line.startswith("appended"):
                appended.append(int(line.split()[1]))

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    reader = Historian(folder)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline
        and len(reader.read(BASE, BASE + timedelta(days=2), tags=TAGS)) < 150
    ):
        time.sleep(0.05)
    seen_before_kill = len(reader.read(BASE, BASE + timedelta(days=2), tags=TAGS))
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    follower.join(timeout=10)
    assert seen_before_kill >= 150

    frame = Historian(folder).read(BASE, BASE + timedelta(days=2), tags=TAGS)
    assert check(frame) is None  # a complete, correct prefix: nothing torn
    assert len(frame) >= seen_before_kill  # everything flushed before the kill is still there
    last_appended = appended[-1]
    lost = last_appended + 1 - len(frame)
    # Ticks appended in one flush interval, plus slack for a flush in progress on a busy machine.
    assert 0 <= lost <= (flush_s + 1.0) / tick_s
    for f in folder.glob("date=*/seg-*.parquet"):
        pq.read_table(f)  # every file on disk is whole

    with Historian(folder) as h:  # the lock died with the writer: a new writer opens
        h.append(tick(len(frame)))
    after = Historian(folder).read(BASE, BASE + timedelta(days=2), tags=TAGS)
    assert len(after) == len(frame) + 1 and check(after) is None


@pytest.mark.timeout(90)
def test_compaction_under_a_concurrent_reader(folder, tmp_path, monkeypatch):
    import twin.historian.writer as writer_module

    monkeypatch.setattr(writer_module, "TRASH_GRACE_S", 0.0)  # delete merge inputs at once
    h = Historian(folder, flush_interval_s=60)
    for i in range(60):  # 60 one-tick segments
        h.append(tick(i))
        h.flush()
    result = tmp_path / "reader.json"
    reader = start_proc("reader", folder, 3.0, result)
    time.sleep(0.5)
    for round_ in range(4):
        for i in range(60 + round_ * 20, 80 + round_ * 20):
            h.append(tick(i))
            h.flush()
        h.compact()
    h.close()
    _finish(reader)
    summary = json.loads(result.read_text())
    assert summary["errors"] == []
    assert summary["reads"] >= 3
    frame = Historian(folder).read(BASE, BASE + timedelta(days=2), tags=TAGS)
    assert len(frame) == 140 and check(frame) is None
    assert len(list(folder.glob("date=*/seg-*.parquet"))) == 2  # one per day


def test_a_second_writer_gets_a_clear_error_and_readers_are_unaffected(folder):
    first = Historian(folder)
    first.append([Sample(at(0), "a", 1.0)])
    second = Historian(folder)
    with pytest.raises(HistorianError, match="already writing"):
        second.append([Sample(at(1), "a", 2.0)])
    first.flush()
    assert list(second.read(at(0), at(5))["a"]) == [1.0]  # reading needs no lock
    first.close()
    second.append([Sample(at(1), "a", 2.0)])  # free once the first writer is gone
    second.close()
    assert list(Historian(folder).read(at(0), at(5))["a"]) == [1.0, 2.0]
