"""What a crashed writer leaves behind is tidied by the next writer, and nothing stored is lost."""

from __future__ import annotations

import shutil

import pytest
from hist_helpers import at

from twin.historian import Historian
from twin.historian.layout import Layout
from twin.sample import Sample


def _crash(h: Historian) -> None:
    """Drop a writer without flushing or cleaning up, as SIGKILL would (the kernel frees the lock)."""
    h._appender._stop.set()
    h._appender.writer._lock.release()


def test_segment_written_but_not_in_manifest_is_adopted(folder, monkeypatch):
    h = Historian(folder, flush_interval_s=60)
    h.append([Sample(at(0), "a", 1.0)])
    h.flush()
    h.append([Sample(at(1), "a", 2.0)])

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # killed between the segment rename and the manifest update

    monkeypatch.setattr(h.layout, "write_manifest", die)
    with pytest.raises(KeyboardInterrupt):
        h.flush()
    _crash(h)
    assert list(Historian(folder).read(at(0), at(5))["a"]) == [1.0]  # not visible yet
    (folder / "date=2024-05-01" / ".tmp-deadbeef.parquet").write_bytes(b"half a file")
    with Historian(folder) as h2:
        h2.append([Sample(at(2), "a", 3.0)])
    assert list(Historian(folder).read(at(0), at(5))["a"]) == [1.0, 2.0, 3.0]
    assert not list(folder.glob("date=*/.tmp-*"))
    assert Historian(folder).latest()["a"].value == 3.0


def test_merge_inputs_left_behind_are_removed_and_not_double_counted(folder):
    with Historian(folder, flush_interval_s=60) as h:
        for i in range(4):
            h.append([Sample(at(i), "a", float(i))])
            h.flush()
        day = folder / "date=2024-05-01"
        inputs = sorted(day.glob("seg-*.parquet"))
        saved = [p.read_bytes() for p in inputs]
        h.compact()
    for p, data in zip(inputs, saved, strict=True):  # as if the crash came before the deletes
        p.write_bytes(data)
    assert list(Historian(folder).read(at(0), at(5))["a"]) == [0.0, 1.0, 2.0, 3.0]
    with Historian(folder) as h:
        h.append([Sample(at(4), "a", 4.0)])
    assert len(list(day.glob("seg-*.parquet"))) == 2
    assert list(Historian(folder).read(at(0), at(5))["a"]) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_stale_latest_file_is_rebuilt(folder):
    with Historian(folder) as h:
        h.append([Sample(at(0), "a", 1.0), Sample(at(3), "b", 2.0)])
    Layout(folder).latest_file.unlink()
    with Historian(folder) as h:
        h.append([Sample(at(1), "a", 5.0)])
    latest = Historian(folder).latest()
    assert latest["a"].value == 5.0 and latest["b"].value == 2.0


def test_reading_an_empty_or_missing_folder(tmp_path):
    h = Historian(tmp_path / "nothing")
    assert h.read(at(0), at(10), tags=["a"]).empty
    assert h.latest() == {}
    assert h.time_range() is None
    assert h.annotations().empty
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)


def test_read_retries_when_a_merge_removes_its_segments_mid_read(folder, monkeypatch):
    import twin.historian.reader as reader_module
    import twin.historian.writer as writer_module

    monkeypatch.setattr(writer_module, "TRASH_GRACE_S", 0.0)
    writer = Historian(folder, flush_interval_s=60)
    for i in range(5):
        writer.append([Sample(at(i), "a", float(i))])
        writer.flush()
    real_read = reader_module.read_segments
    calls = []

    def compact_then_read(paths, *args):
        calls.append(list(paths))
        if len(calls) == 1:
            writer.compact()  # between the manifest read and the file reads: the listed files go
            writer._appender.writer.empty_trash()
        return real_read(paths, *args)

    monkeypatch.setattr(reader_module, "read_segments", compact_then_read)
    frame = Historian(folder).read(at(0), at(10), tags=["a"])
    assert list(frame["a"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert len(calls) == 2 and len(calls[0]) == 5 and len(calls[1]) == 1
    writer.close()
