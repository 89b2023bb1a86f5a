"""Every malformed plant spec is bad input: exit code 2 and a message naming file, key and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from twin.cli import main
from twin.errors import SpecError
from twin.spec import load_spec

GOOD = """\
[plant]
name = "mini"
sample_period_s = 1.0
control_interval_s = 5.0

[source.opcua]
endpoint = "opc.tcp://127.0.0.1:4899/mini/"

[source.modbus]
host = "127.0.0.1"
port = 5099

[[tags]]
name = "level"
role = "cv"
unit = "cm"
opcua = "ns=2;s=mini.level"
modbus = { table = "input", address = 0, type = "float32" }
limits = [0.0, 20.0]
operating = [2.0, 18.0]

[[tags]]
name = "pump"
role = "mv"
unit = "V"
opcua = "ns=2;s=mini.pump"
modbus = { table = "holding", address = 0, type = "float32" }
limits = [0.0, 10.0]
max_move = 0.5

[objective]
setpoints = { level = 10.0 }
"""

# (case, edit of the good text, key the message must name, reason it must give)
BAD = [
    (
        "unknown key",
        ('unit = "cm"', 'unit = "cm"\ncolour = "red"'),
        "tags[0](level).colour",
        "unknown key",
    ),
    ("unknown table", ("[objective]", "[extras]\nx = 1\n\n[objective]"), "extras", "unknown key"),
    (
        "group with blanks",
        ('unit = "cm"', 'unit = "cm"\ngroup = " tanks"'),
        "tags[0](level).group",
        "without surrounding blanks",
    ),
    (
        "lo >= hi",
        ("limits = [0.0, 20.0]", "limits = [20.0, 0.0]"),
        "tags[0](level).limits",
        "lower bound 20.0 must be below upper bound 0.0",
    ),
    (
        "operating outside limits",
        ("operating = [2.0, 18.0]", "operating = [2.0, 25.0]"),
        "tags[0](level).operating",
        "operating limits [2.0, 25.0] lie outside engineering limits [0.0, 20.0]",
    ),
    (
        "MV without max_move",
        ("max_move = 0.5\n", ""),
        "tags[1](pump).max_move",
        "an MV needs max_move",
    ),
    (
        "setpoint outside operating",
        ("setpoints = { level = 10.0 }", "setpoints = { level = 19.0 }"),
        "objective.setpoints.level",
        "setpoint 19.0 lies outside the operating limits [2.0, 18.0]",
    ),
    (
        "duplicate tag names",
        ('name = "pump"', 'name = "level"'),
        "tags[1].name",
        "duplicate tag name 'level'",
    ),
    (
        "interval not a multiple",
        ("control_interval_s = 5.0", "control_interval_s = 2.5"),
        "plant.control_interval_s",
        "must be a whole multiple of sample_period_s",
    ),
    (
        "missing OPC-UA node id",
        ('opcua = "ns=2;s=mini.pump"\n', ""),
        "tags[1].opcua",
        "tag 'pump' has no OPC-UA node id, but the plant has an OPC-UA source (source.opcua)",
    ),
    (
        "missing Modbus address",
        ('modbus = { table = "input", address = 0, type = "float32" }\n', ""),
        "tags[0].modbus",
        "tag 'level' has no Modbus address, but the plant has a Modbus source (source.modbus)",
    ),
    ("bad TOML", ("[objective]", "[objective"), "(syntax)", "not valid TOML"),
    (
        "a string for a number",
        ("sample_period_s = 1.0", 'sample_period_s = "1.0"'),
        "plant.sample_period_s",
        "Input should be a valid number",
    ),
    (
        "an infinite interval",
        ("control_interval_s = 5.0", "control_interval_s = inf"),
        "plant.control_interval_s",
        "Input should be a finite number",
    ),
    (
        "a missing required key",
        ("limits = [0.0, 10.0]\n", ""),
        "tags[1](pump).limits",
        "required key is missing",
    ),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "outside" / "plant.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _flat(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines anywhere on the terminal


def test_the_base_spec_is_valid(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, GOOD))
    assert spec.name == "mini" and [t.name for t in spec.mvs] == ["pump"]


@pytest.mark.parametrize(("case", "edit", "key", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_spec_names_key_and_reason(tmp_path: Path, case, edit, key, reason) -> None:
    old, new = edit
    assert old in GOOD, case
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("case", "edit", "key", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_spec_exits_2_through_the_cli(tmp_path: Path, capsys, case, edit, key, reason) -> None:
    path = _write(tmp_path, GOOD.replace(*edit, 1))
    for argv in (
        ["plants", str(path)],
        ["generate", str(path), "--hours", "1", "--home", str(tmp_path)],
    ):
        assert main(argv) == 2, case
        err = _flat(capsys.readouterr().err)
        assert _flat(f"{path}: {key}: ") in err and _flat(reason) in err


def test_unknown_plant_name_exits_2(capsys) -> None:
    assert main(["plants", "no_such_plant"]) == 2
    assert _flat("no built-in plant named 'no_such_plant'") in _flat(capsys.readouterr().err)


def test_console_script_exit_code(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace("max_move = 0.5\n", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "twin.cli", "plants", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "max_move" in proc.stderr


def test_simulator_file_setting(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, GOOD + '\n[simulator]\nfile = "missing.py"\n')
    assert main(["plants", str(path)]) == 2
    assert _flat("simulator.file:") in _flat(capsys.readouterr().err)
