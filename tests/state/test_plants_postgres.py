"""A site on one PostgreSQL state store: two plants (cstr and four_tank), each behind its own
OPC-UA server that logs every MV write it receives, each with its own `twin serve` on its own
host (its own twin home; the site's one audit key on each), and two control rooms (`twin app`),
one per host. cstr runs supervised and an operator approves its proposals; four_tank runs in
auto mode. In Chromium the operator signs in to both rooms, and the room on four_tank's host
shows cstr's pending proposal, which only the shared store brings there. Judged from the
plants' own write logs and the shared store: every write the store records as done arrived at
its own plant exactly once, no plant received a write of the other, every decision was acted
on once, both rooms recorded their sessions, and the audit verifies from both hosts."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.app.room_plant import healthy
from tests.faults.fault_plant import FaultPlant, PlantThread
from tests.faults.procs import train_tiny
from tests.runtime.plant import start_serve, twin_cmd
from tests.state.backends import fresh_schema_url, postgres_url
from tests.support.browser import go_to, launch, require_chromium
from tests.support.procs import free_port, stop, wait_for
from tests.support.specs import ports, spec_copy
from twin import api, audit
from twin.audit_keys import AuditFiles
from twin.paths import Home
from twin.spec import PlantSpec, load_spec
from twin.state import Store
from twin.users import create_user

pytestmark = [pytest.mark.slow, pytest.mark.browser]


PASSWORD = "operator password"
MODE = {"cstr": "supervised", "four_tank": "auto"}
SPEED = {"cstr": 20.0, "four_tank": 10.0}
STEPS = {"four_tank": 20}
"""four_tank's runtime ends itself after this many control intervals: a stop between steps
never cuts a move short (SIGTERM cancels a move in flight; its restart settles it)."""
MOVES = 3
"""Moves written on each plant, at least."""


def plant_on_free_port(name: str, folder: Path) -> PlantSpec:
    """A built-in plant's spec whose OPC-UA endpoint is a free port on 127.0.0.1."""
    return load_spec(spec_copy(name, folder))


def start_room(home: Home, log: Path, plant: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            twin_cmd("app", "--port", str(port), "--plant", plant, "--home", str(home.root)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return f"http://127.0.0.1:{port}", proc


def sign_in_and_see_cstr(rooms: dict[str, str], shot: Path) -> int | str:
    """Sign in to both rooms in Chromium; the id of the cstr proposal that the room on
    four_tank's host shows (only the shared store brings cstr there), or the error it shows."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        pages = {}
        for name, room_url in rooms.items():
            page = browser.new_context().new_page()
            page.set_default_timeout(120_000)  # a loaded 2-core runner: slow first runs
            page.goto(room_url)
            page.get_by_role("textbox", name="User name").fill("olga")
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.get_by_text("Signed in as olga").wait_for()
            pages[name] = page
        page = pages["four_tank"]
        try:
            heading = page.get_by_role("heading", name="Proposals: cstr")
            failed = page.get_by_text("cannot load the spec")
            go_to(page, "Proposals", heading.or_(failed))
            if failed.count():
                return " ".join(failed.first.inner_text().split())
            shown = page.locator('[data-testid="stMetric"]').filter(has_text="Proposal").first
            return int(shown.locator('[data-testid="stMetricValue"]').inner_text().strip("# \n"))
        finally:
            page.screenshot(path=str(shot), full_page=True)
            browser.close()


def written(store: Store, plant: str) -> int:
    return len(store.list_proposals(plant, status="written", limit=1000))


@pytest.mark.timeout(400)
def test_two_plants_two_runtimes_two_rooms_on_one_postgres_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_chromium()
    url = fresh_schema_url(postgres_url())
    specs = {name: plant_on_free_port(name, tmp_path / name) for name in MODE}
    hosts = {name: Home.at(tmp_path / f"host-{name}") for name in MODE}
    for name, spec in specs.items():  # each host serves one plant with its own tiny twin
        models = train_tiny(tmp_path / f"train-{name}", spec)
        shutil.copytree(models, hosts[name].models_dir(name))
    store = Store(url, home=hosts["cstr"])
    create_user(store, "olga", "operator", PASSWORD, actor="test")  # makes the audit key
    shutil.copytree(hosts["cstr"].keys_dir, hosts["four_tank"].keys_dir)  # one key per site
    op = api.log_in(store, "olga", PASSWORD)
    monkeypatch.setenv("TWIN_STATE_URL", url)  # what every child process opens
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    plants = {
        name: FaultPlant(spec, ports(spec)[0], speed=SPEED[name]) for name, spec in specs.items()
    }
    approved: list[int] = []
    with PlantThread(plants["cstr"]), PlantThread(plants["four_tank"]):
        logs = {name: tmp_path / f"serve-{name}.log" for name in MODE}
        serves = {
            name: start_serve(
                specs[name], hosts[name].root, logs[name], MODE[name], "opcua", STEPS.get(name)
            )
            for name in MODE
        }
        # Each room shows cstr first: on four_tank's host only the shared store knows it.
        rooms = {n: start_room(hosts[n], tmp_path / f"app-{n}.log", "cstr") for n in MODE}
        try:
            for room_url, proc in rooms.values():
                wait_for(lambda u=room_url: healthy(u), 120, "a control room", proc)
            urls = {name: room_url for name, (room_url, _) in rooms.items()}
            shown = sign_in_and_see_cstr(urls, tmp_path / "room-four_tank.png")
            while len(approved) < MOVES:  # an operator approves cstr's proposals

                def approve_one() -> int | None:
                    p = store.pending_proposal("cstr")
                    if p is None or p.id in approved:
                        return None
                    try:
                        api.approve(store, p.id, op, "site on one store")
                    except api.ProposalClosed:
                        return None  # superseded by a newer proposal meanwhile
                    return p.id

                pid = wait_for(approve_one, 120, "a cstr proposal", serves["cstr"], logs["cstr"])
                approved.append(pid)

                def acted_on(pid: int = pid) -> bool:
                    d = store.get_decision(pid)
                    return d is not None and d.applied not in (None, "writing")

                wait_for(acted_on, 60, f"cstr's runtime to act on {pid}", serves["cstr"])
            # cstr's last approval is acted on, so no move is in flight when it is stopped.
            assert serves["four_tank"].wait(120) == 0, logs["four_tank"].read_text()[-3000:]
        finally:
            for proc in [*serves.values(), *(p for _, p in rooms.values())]:
                stop(proc, signal.SIGTERM)
    for name, proc in serves.items():
        assert proc.returncode == 0, logs[name].read_text()[-3000:]

    mvs = {name: {t.name for t in spec.mvs} for name, spec in specs.items()}
    for name, plant in plants.items():
        rows = store.writes_for(plant=name, limit=100_000)
        assert rows, f"{name}: no write recorded"
        assert {w.status for w in rows} <= {"done", "refused"}, [(w.tag, w.status) for w in rows]
        assert {w.tag for w in rows} <= mvs[name]
        # The plant's own log: exactly the store's done writes, each once; nothing of the other.
        received = Counter((w.tag, w.requested) for w in plant.writes)
        done = Counter((w.tag, w.written) for w in rows if w.status == "done")
        assert received == done, f"{name}: plant received {received}, store done {done}"
        assert {w.tag for w in plant.writes} <= mvs[name]
        proposals = {p.id: p for p in store.list_proposals(name, limit=100_000)}
        assert written(store, name) >= MOVES
        decided = [(p, store.get_decision(p.id)) for p in proposals.values()]
        for p, decision in decided:
            if decision is None:
                continue
            moves = store.writes_for(decision_id=decision.id)
            # An approval still waiting for its interval when the runtime stopped is not acted on.
            assert decision.applied in ("written", "refused") or (
                decision.applied is None and not moves
            ), decision
            assert all(proposals[w.proposal_id or 0].plant == name for w in moves)
            tags = [w.tag for w in moves]
            assert len(tags) == len(set(tags)), f"{name} proposal {p.id}: {tags}"
            acted = [
                e
                for e in audit.entries(store, kind="write_")
                if e["subject"] == f"proposal:{p.id}"
                and e["kind"] in ("write_intent", "write_refused")
            ]
            times = 0 if decision.applied is None else 1
            assert len(acted) == times, f"{name} proposal {p.id} acted on {len(acted)} times"
    assert all(store.get_decision(pid).user == "olga" for pid in approved)  # type: ignore[union-attr]
    # Both rooms and the operator's API session are recorded in the one store.
    assert len(store.live_sessions("olga", time.time())) == 3
    assert [e["user"] for e in audit.entries(store, kind="login")] == ["olga"] * 3
    for name in MODE:  # each host anchored the heads it committed; the log verifies from both
        assert hosts[name].audit_anchor.read_text().strip(), f"{name}'s host committed nothing"
        result = audit.verify(store, files=AuditFiles.of_home(hosts[name]))
        assert result.ok, str(result)
    assert isinstance(shown, int), f"the room on four_tank's host shows: {shown}"
    assert store.get_proposal(shown).plant == "cstr"
    store.close()
