"""`twin export --resample` with `--fill hold|none`: a report-by-exception tag sends only its
changes, so by default it holds its value into quiet intervals (up to its max age)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from twin.cli import main
from twin.errors import BadInput
from twin.historian import Historian
from twin.io import export_file
from twin.sample import Quality, Sample
from twin.spec import load_spec, parse_spec

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def rbe(tmp_path):
    spec = load_spec("cstr")
    raw = tomllib.loads(spec.path.read_text())
    raw["source"]["opcua"]["report_by_exception"] = True
    raw["source"]["opcua"]["max_age_s"] = 60
    path = tmp_path / "rbe" / "plant.toml"
    path.parent.mkdir()
    path.write_text(
        spec.path.read_text().replace(
            "[source.opcua]", "[source.opcua]\nreport_by_exception = true\nmax_age_s = 60"
        )
    )
    return parse_spec(raw, spec.path), path


def test_report_by_exception_tags_hold_by_default(rbe, tmp_path) -> None:
    spec, _ = rbe
    h = Historian(tmp_path / "hist")
    # Tc changed once, 20 s before the window; Ca changed at 0 s and 90 s.
    h.append(
        [
            Sample(T0 - timedelta(seconds=20), "Tc", 300.0, Quality.GOOD),
            Sample(T0, "Ca", 0.5, Quality.GOOD),
            Sample(T0 + timedelta(seconds=90), "Ca", 0.6, Quality.GOOD),
        ]
    )
    h.flush()
    end = T0 + timedelta(minutes=2)
    out = tmp_path / "held.csv"
    export_file(h, spec, T0, end, out, ["Tc", "Ca"], "10s")
    held = pd.read_csv(out, index_col=0)
    # Tc holds for its 60 s max age from its sample (-20 s): bins 0..30 s, then blank.
    assert held["Tc"].notna().sum() == 5 and held["Tc"].iloc[:5].eq(300.0).all()
    assert held["Ca"].iloc[:7].eq(0.5).all() and held["Ca"].iloc[-1] == 0.6
    export_file(h, spec, T0, end, out, ["Tc", "Ca"], "10s", fill="none")
    blank = pd.read_csv(out, index_col=0)
    assert "Tc" not in blank or blank["Tc"].notna().sum() == 0
    assert blank["Ca"].notna().sum() == 2
    with pytest.raises(BadInput, match="--fill 'zero'"):
        export_file(h, spec, T0, end, out, None, "10s", fill="zero")
    with pytest.raises(BadInput, match="only with --resample"):
        export_file(h, spec, T0, end, out, None, None, fill="hold")
    h.close()


def test_cli_fill_option(rbe, tmp_path, capsys) -> None:
    _, path = rbe
    home = tmp_path / "home"
    code = main(
        [
            "export",
            str(path),
            "--start",
            T0.isoformat(),
            "--end",
            (T0 + timedelta(minutes=1)).isoformat(),
            "-o",
            str(tmp_path / "x.csv"),
            "--fill",
            "hold",
            "--home",
            str(home),
        ]
    )
    assert code == 2 and "--fill applies only with --resample" in capsys.readouterr().err
