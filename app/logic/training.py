"""The Twin page: model versions, their metrics, comparisons, and retraining in the background.

A retraining run is the `twin train` command in its own process (a UI rerun must never block
or kill it). Its progress comes from the structured events it appends beside its log in the
home's runs folder (`twin train --events`, twin.train_events); the log keeps its text output
for people, and a small wrapper writes the exit code when it ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from twin import registry, train_events
from twin.paths import Home

EPOCH_FIELDS = {"event", "ts", "stage", "epoch", "epochs"}
"""Fields of an epoch event that are not the epoch's metrics."""


@dataclass(frozen=True)
class TrainingRun:
    """A background `twin train` started from the control room."""

    id: str
    plant: str
    pid: int
    log: Path
    rc_file: Path
    started_at: datetime
    user: str

    @property
    def events(self) -> Path:
        """The run's training events (JSON lines), beside its log."""
        return self.log.with_suffix(".events.jsonl")


@dataclass(frozen=True)
class TrainingProgress:
    running: bool
    fraction: float | None
    """Share of the current stage's epochs done (0..1), None before the first epoch."""
    returncode: int | None
    last_line: str
    stage: str
    """The stage being trained (jepa, observation model, ...)."""
    version: str | None
    """The new version id, once the run succeeded."""


def train_command(
    home: Home,
    plant: str,
    epochs: int | None = None,
    seed: int | None = None,
    quick: bool = False,
    events: Path | None = None,
) -> list[str]:
    cmd = [sys.executable, "-m", "twin.cli", "train", plant, "--home", str(home.root)]
    if events is not None:
        cmd += ["--events", str(events)]
    if quick:
        cmd.append("--quick")
    if epochs is not None:
        cmd += ["--epochs", str(int(epochs))]
    if seed is not None:
        cmd += ["--seed", str(int(seed))]
    return cmd


def start_training(
    home: Home,
    plant: str,
    user: str,
    epochs: int | None = None,
    seed: int | None = None,
    quick: bool = False,
) -> TrainingRun:
    """Start `twin train` detached from the UI; its log and exit code land in the runs folder."""
    runs = home.runs_dir
    runs.mkdir(parents=True, exist_ok=True)
    run_id = datetime.now(UTC).strftime("train-%Y%m%dT%H%M%S%f")
    log, rc = runs / f"{run_id}.log", runs / f"{run_id}.rc"
    # sh writes the exit code after the command ends, so any later page run can read it.
    wrapper = [
        "sh",
        "-c",
        '"$@"; echo $? > "$0"',
        str(rc),
        *train_command(home, plant, epochs, seed, quick, events=log.with_suffix(".events.jsonl")),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TWIN_HOME": str(home.root)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            wrapper, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    run = TrainingRun(run_id, plant, proc.pid, log, rc, datetime.now(UTC), user)
    (runs / f"{run_id}.json").write_text(
        json.dumps(
            {
                "id": run_id,
                "plant": plant,
                "pid": proc.pid,
                "log": str(log),
                "rc_file": str(rc),
                "started_at": run.started_at.isoformat(),
                "user": user,
            }
        )
    )
    return run


def list_runs(home: Home, plant: str | None = None) -> list[TrainingRun]:
    """Training runs started from the control room, newest first."""
    out = []
    for f in (
        sorted(home.runs_dir.glob("train-*.json"), reverse=True) if home.runs_dir.is_dir() else []
    ):
        d = json.loads(f.read_text())
        if plant is None or d["plant"] == plant:
            out.append(
                TrainingRun(
                    d["id"],
                    d["plant"],
                    d["pid"],
                    Path(d["log"]),
                    Path(d["rc_file"]),
                    datetime.fromisoformat(d["started_at"]),
                    d["user"],
                )
            )
    return out


def progress(run: TrainingRun) -> TrainingProgress:
    events = train_events.read(run.events)
    text = run.log.read_text(errors="replace") if run.log.is_file() else ""
    lines = [p.strip() for p in text.replace("\r", "\n").splitlines() if p.strip()]
    rc = None
    if run.rc_file.is_file():
        raw = run.rc_file.read_text().strip()
        rc = int(raw) if raw.lstrip("-").isdigit() else 1
    elif not _alive(run.pid):
        rc = STOPPED  # gone without writing its exit code: killed (host restart, OOM, kill -9)
    epochs = [e for e in events if e["event"] == "epoch"]
    last = epochs[-1] if epochs else None
    fraction = None
    if last is not None and last.get("epochs"):
        fraction = min(1.0, (int(last.get("epoch", 0)) + 1) / int(last["epochs"]))
    done = [e for e in events if e["event"] == "done"]
    version = done[-1].get("version") if rc == 0 and done else None
    stage = str(last["stage"]) if last is not None else ""
    return TrainingProgress(
        rc is None,
        1.0 if rc == 0 else fraction,
        rc,
        lines[-1] if lines else "",
        stage,
        version,
    )


STOPPED = -int(signal.SIGTERM)
"""Exit code recorded for a run stopped from the control room."""


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop_training(run: TrainingRun) -> None:
    """Stop a run: SIGTERM to its process group (the wrapper and `twin train`), exit code noted."""
    try:
        os.killpg(run.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not run.rc_file.exists():
        run.rc_file.write_text(f"{STOPPED}\n")


def curves(run: TrainingRun) -> dict[str, list[dict[str, float]]]:
    """Per stage (jepa, observation model), each epoch's mean losses and validation error."""
    out: dict[str, list[dict[str, float]]] = {}
    for e in train_events.read(run.events):
        if e["event"] != "epoch":
            continue
        values = {
            k: float(v)
            for k, v in e.items()
            if k not in EPOCH_FIELDS and isinstance(v, int | float)
        }
        out.setdefault(str(e.get("stage", "")), []).append(values)
    return out


def versions_frame(home: Home, plant: str) -> pd.DataFrame:
    """One row per version: active, created, training seconds, NRMSE of the twin per horizon."""
    rows = []
    for m in registry.list_models(home, plant):
        jepa = m["nrmse"].get("jepa", {})
        row = {
            "version": m["version"],
            "active": m["active"],
            "created": m["created"],
            "train s": m["train_seconds"],
        }
        row.update({f"NRMSE h{h}": v for h, v in sorted(jepa.items(), key=lambda kv: int(kv[0]))})
        row["effective rank"] = m["monitors"].get("effective_rank")
        rows.append(row)
    return pd.DataFrame(rows)


def card(home: Home, plant: str, version: str) -> dict[str, Any]:
    path = home.models_dir(plant) / version / "card.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def evaluation_table(c: dict[str, Any]) -> pd.DataFrame:
    """Models (twin and baselines) x horizons, NRMSE on the held-out block."""
    ev = c.get("evaluation") or {}
    hs = [str(h) for h in ev.get("horizons", [])]
    return pd.DataFrame(
        [
            {"model": name, **{f"h{h}": (r.get("nrmse") or {}).get(h) for h in hs}}
            for name, r in (ev.get("models") or {}).items()
        ]
    )


def compare(home: Home, plant: str, a: str, b: str) -> pd.DataFrame:
    """The twin's NRMSE per horizon for two versions and the change from a to b."""
    na = (
        (card(home, plant, a).get("evaluation") or {})
        .get("models", {})
        .get("jepa", {})
        .get("nrmse", {})
    )
    nb = (
        (card(home, plant, b).get("evaluation") or {})
        .get("models", {})
        .get("jepa", {})
        .get("nrmse", {})
    )
    rows = []
    for h in sorted(set(na) | set(nb), key=int):
        va, vb = na.get(h), nb.get(h)
        change = None if va in (None, 0) or vb is None else 100.0 * (vb - va) / va
        rows.append({"horizon": int(h), a: va, b: vb, "change %": change})
    return pd.DataFrame(rows)


def monitors_frame(c: dict[str, Any]) -> pd.DataFrame:
    mon = (c.get("evaluation") or {}).get("monitors") or {}
    # One text column: Arrow (st.dataframe) refuses a column mixing numbers and dicts.
    return pd.DataFrame(
        [
            {
                "monitor": k,
                "value": json.dumps(v)
                if isinstance(v, dict)
                else (f"{v:.4g}" if isinstance(v, float) else str(v)),
            }
            for k, v in mon.items()
        ]
    )
