"""`twin users ...` and `twin audit ...` through the real command line entry point."""

import csv
import sqlite3

from twin.auth import Role, authenticate
from twin.cli import main
from twin.state import Store


def test_users_and_audit_commands(tmp_path, monkeypatch, capsys) -> None:
    home = str(tmp_path / "home")
    monkeypatch.setenv("NEW_PW", "a good long password")
    assert (
        main(
            [
                "users",
                "add",
                "alice",
                "--role",
                "engineer",
                "--password-env",
                "NEW_PW",
                "--home",
                home,
            ]
        )
        == 0
    )
    assert (
        main(["users", "add", "bob", "--role", "boss", "--password-env", "NEW_PW", "--home", home])
        == 2
    )
    assert "role 'boss'" in capsys.readouterr().err
    assert main(["users", "add", "carol", "--password-env", "UNSET_VAR", "--home", home]) == 2
    assert (
        main(
            [
                "users",
                "add",
                "alice",
                "--role",
                "viewer",
                "--password-env",
                "NEW_PW",
                "--home",
                home,
            ]
        )
        == 2
    )
    assert main(["users", "list", "--home", home]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "engineer" in out
    with Store(tmp_path / "home" / "state.db") as store:
        assert authenticate(store, "alice", "a good long password").role == Role.ENGINEER
        for i in range(4):
            store.log_event(user="alice", kind="note", what={"i": i}, why="test")

    assert main(["audit", "verify", "--home", home]) == 0
    assert "5 entries verified" in capsys.readouterr().out
    assert main(["audit", "export", "-o", str(tmp_path / "a.csv"), "--home", home]) == 0
    rows = list(csv.DictReader((tmp_path / "a.csv").open()))
    assert [r["kind"] for r in rows] == ["user_add"] + ["note"] * 4

    raw = sqlite3.connect(tmp_path / "home" / "state.db")
    raw.execute("DROP TRIGGER audit_no_update")
    raw.execute("UPDATE audit SET why = 'edited' WHERE seq = 3")
    raw.commit()
    raw.close()
    assert main(["audit", "verify", "--home", home]) == 1
    assert "BROKEN at entry 3" in capsys.readouterr().err


def test_usage_errors_print_the_usage_and_exit_2_without_a_traceback(tmp_path, capsys) -> None:
    home = str(tmp_path / "home")
    assert main(["health-report", "cstr", "--home", home]) == 2
    err = capsys.readouterr().err
    assert "--since" in err and "twin health-report" in err and "Traceback" not in err
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err
    assert "no-such-command" in err and "Traceback" not in err
    assert main(["plants", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err
    assert main(["--help"]) == 0
