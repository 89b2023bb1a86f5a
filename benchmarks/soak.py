"""Soak: the demo's parts for a shift of plant time with the control room open in a real browser.

Starts what `twin demo` starts, with the same commands and the demo's settings (built-in cstr plant,
scenario, seed, history and training budget), on free 127.0.0.1 ports so that it can run beside
other work: `twin generate` + `twin train`, `twin sim --speed S`, `twin serve --mode supervised`,
`twin app`. Headless Chromium (Playwright, /usr/bin/chromium) is logged in as the demo's engineer
and acts as an operator would: it walks the pages, reloads, opens deep links, approves or rejects
pending proposals and acknowledges standing alarms.

Recorded: every process's resident memory (its whole process tree) as a time series, the first
sample after warm-up ("start") and the last ("end"); every log scanned for tracebacks and error
lines; the browser's page errors and Streamlit exception boxes; the achieved plant-time speed
(newest historian sample against the wall clock); and, at the end, whether every proposal and every
alarm in the state store is accounted for in the audit log (twin.state and twin.audit only).

    nice -n 10 python benchmarks/soak.py [--plant-hours 12] [--speed 20] [--quick]

Prints a table and writes benchmarks/results/soak.json (--out to change).
Targets: no process grows more than 20 % in memory, 0 unhandled errors, every proposal and alarm
in the audit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.browser import launch  # noqa: E402
from tests.support.procs import free_port  # noqa: E402
from tests.support.specs import spec_copy  # noqa: E402

PAGES = [
    "Overview",
    "Proposals",
    "Twin",
    "Replay",
    "Audit",
    "Limits",
    "Alarms",
    "Shift log",
    "Health",
]
DEEP_LINKS = ["proposals", "alarms", "replay", "audit", "shift", "health"]
# A log line that reports an error nobody handled (a traceback, an ERROR/CRITICAL record).
ERROR_LINE = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|\bCRITICAL\b|Unhandled")
# The runtime annunciates each alarm it raises as an ERROR record (twin.serve.alarms): handled by
# design, counted apart and checked against the alarms table instead.
ALARM_LINE = re.compile(r"ERROR twin\.serve\.alarms: ALARM ")
GROWTH_LIMIT = 0.20
console = Console(width=140)


# ---- processes ----------------------------------------------------------------------------


def twin(*args: str, home: Path) -> list[str]:
    return [sys.executable, "-m", "twin.cli", *args, "--home", str(home)]


def rss_tree_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process and all its descendants (KiB), from /proc.

    field "VmRSS": all resident pages; "RssAnon": only anonymous ones (heap, stacks), which is
    what a leak grows; file-backed pages (libraries) come and go with the machine's memory
    pressure, so VmRSS can fall while nothing was freed.
    """
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@dataclass
class Part:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    rss: list[tuple[float, int]] = field(default_factory=list)
    anon: list[tuple[float, int]] = field(default_factory=list)


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> Part:
    log = logs / f"{name}.log"
    out = log.open("ab")
    proc = subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    return Part(name, proc, log)


def run_step(args: list[str], env: dict[str, str], log: Path, what: str) -> None:
    console.print(f"[bold]soak:[/] {what}")
    with log.open("ab") as out:
        code = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise SystemExit(f"soak: {what} failed ({code}); see {log}")


def wait_for(check: Any, timeout: float, what: str, parts: list[Part]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in parts:
            if p.proc.poll() is not None:
                raise SystemExit(f"soak: {p.name} exited ({p.proc.returncode}); see {p.log}")
        if check():
            return
        time.sleep(0.5)
    raise SystemExit(f"soak: {what} did not come up within {timeout:.0f} s")


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:  # noqa: S310
            return r.status == 200
    except OSError:
        return False


def spec_on_free_ports(folder: Path) -> tuple[Path, int, int]:
    """The built-in cstr spec (the demo's plant) with only its ports changed."""
    op, mb = free_port(), free_port()
    return spec_copy("cstr", folder, opcua_port=op, modbus_port=mb), op, mb


def stop(parts: list[Part]) -> dict[str, int | None]:
    """SIGTERM in reverse order, each gone before the next (as `twin demo` stops)."""
    codes: dict[str, int | None] = {}
    for p in reversed(parts):
        if p.proc.poll() is None:
            p.proc.send_signal(signal.SIGTERM)
        try:
            codes[p.name] = p.proc.wait(30)
        except subprocess.TimeoutExpired:
            p.proc.kill()
            p.proc.wait()
            codes[p.name] = None
    return codes


def scan_log(log: Path) -> tuple[list[str], int]:
    """The log's error lines (tracebacks, ERROR/CRITICAL records) and its alarm annunciations."""
    if not log.exists():
        return [], 0
    lines = log.read_text(errors="replace").splitlines()
    alarms = sum(1 for ln in lines if ALARM_LINE.search(ln))
    return [ln for ln in lines if ERROR_LINE.search(ln) and not ALARM_LINE.search(ln)], alarms


# ---- the operator in the browser --------------------------------------------------------------


@dataclass
class Operator:
    page: Any
    url: str
    user: str
    password: str
    counts: dict[str, int] = field(default_factory=dict)
    render_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def signed_in(self) -> bool:
        return bool(self.page.get_by_text(f"Signed in as {self.user}").count())

    def log_in(self) -> None:
        page = self.page
        page.get_by_role("textbox", name="User name").fill(self.user)
        page.get_by_role("textbox", name="Password").fill(self.password)
        page.get_by_role("button", name="Log in").click()
        page.get_by_text(f"Signed in as {self.user}").wait_for()
        self.bump("log_ins")

    def settle(self) -> None:
        """Wait for the page's script run to finish, then look for exception boxes."""
        page = self.page
        page.wait_for_timeout(300)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=60_000)
        if page.get_by_role("textbox", name="User name").count() and not self.signed_in():
            self.bump("session_lost")
            self.log_in()
        boxes = page.locator('[data-testid="stException"]')
        if boxes.count():
            text = boxes.first.inner_text()[:400]
            self.bump("exception_boxes")
            self.problems.append(f"{page.url}: {text}")

    def visit(self, title: str) -> None:
        t0 = time.monotonic()
        nav = self.page.locator('[data-testid="stSidebarNav"]')
        nav.get_by_role("link", name=title).click()
        self.page.get_by_role("heading", name=re.compile(f"^{title}")).first.wait_for()
        self.settle()
        self.render_s.append(time.monotonic() - t0)
        self.bump("page_visits")

    def deep_link(self, path: str) -> None:
        self.page.goto(f"{self.url}/{path}")
        self.settle()
        self.bump("deep_links")

    def reload(self) -> None:
        self.page.reload()
        self.settle()
        self.bump("reloads")

    def decide(self, approve: bool) -> None:
        """On the Proposals page: approve (re-authenticating if asked) or reject what is pending."""
        page = self.page
        if approve:
            box = page.get_by_text("Confirm your password to approve writes")
            if box.count():
                box.first.click()
                page.locator('input[type="password"]').last.fill(self.password)
                page.get_by_role("button", name="Confirm").click()
                self.settle()
                self.bump("reauthentications")
            button = page.get_by_role("button", name="Approve", exact=True)
        else:
            tab = page.get_by_role("tab", name="Reject")
            if tab.count():
                tab.first.click()
            button = page.get_by_role("button", name="Reject", exact=True)
        if button.count():
            button.first.click(timeout=10_000)
            self.settle()
            self.bump("approve_clicks" if approve else "reject_clicks")

    def acknowledge(self) -> None:
        button = self.page.get_by_role("button", name="Acknowledge", exact=True)
        if button.count():
            self.page.get_by_label("Note or reason (goes to the audit log)").fill("soak: seen")
            button.first.click(timeout=10_000)
            self.settle()
            self.bump("ack_clicks")

    def cycle(self, n: int) -> None:
        """One round of an operator's attention: every page, a decision, an acknowledgement."""
        for title in PAGES:
            self.visit(title)
            if title == "Proposals":
                self.decide(approve=n % 3 != 2)
            if title == "Alarms":
                self.acknowledge()
        self.reload()
        self.deep_link(DEEP_LINKS[n % len(DEEP_LINKS)])


# ---- accounting --------------------------------------------------------------------------


def account(home: Path, plant: str) -> dict[str, Any]:
    """Every proposal and alarm in the store, its creation and current state in the audit."""
    from twin import audit
    from twin.state import Store

    store = Store.open(home)
    try:
        entries = audit.entries(store, plant=plant)
        proposals = store.list_proposals(plant, limit=1_000_000)
        alarms = store.alarm_history(plant, limit=1_000_000)
        verified = audit.verify(store)
    finally:
        store.close()
    by_subject: dict[str, list[dict[str, Any]]] = {}
    superseded: set[int] = set()
    by_alarm: dict[int, list[dict[str, Any]]] = {}
    for e in entries:
        by_subject.setdefault(e["subject"] or "", []).append(e)
        what = e["what"] if isinstance(e["what"], dict) else {}
        if e["kind"] == "proposal":
            superseded.update(what.get("superseded", []))
        if e["kind"].startswith("alarm") or (e["subject"] or "").startswith("alarm:"):
            if isinstance(what.get("id"), int):
                by_alarm.setdefault(what["id"], []).append(e)
    decision_status = {"approve": "approved", "modify": "modified", "reject": "rejected"}
    missing: list[str] = []
    for p in proposals:
        es = by_subject.get(f"proposal:{p.id}", [])
        if not any(e["kind"] == "proposal" for e in es):
            missing.append(f"proposal {p.id}: no creation entry")
            continue
        states = {e["what"].get("status") for e in es if e["kind"] == "proposal"}
        states |= {e["what"].get("to") for e in es}
        states |= {decision_status.get(e["kind"]) for e in es}
        if p.status == "superseded":
            ok = p.id in superseded
        else:
            ok = p.status in states
        if not ok:
            missing.append(f"proposal {p.id}: status {p.status} not in the audit")
    for a in alarms:
        es = by_alarm.get(a.id, [])
        if not any(e["kind"] in ("alarm", "alarm_suppressed") for e in es):
            missing.append(f"alarm {a.id}: no entry for its raising")
        if a.cleared_at is not None and not any(
            e["kind"] == "alarm_clear" or "cleared_at" in e["what"] for e in es
        ):
            missing.append(f"alarm {a.id}: cleared but no clearing entry")
        if a.acked_at is not None and not any("acked_at" in e["what"] for e in es):
            missing.append(f"alarm {a.id}: acknowledged but no acknowledgement entry")
    statuses: dict[str, int] = {}
    for p in proposals:
        statuses[p.status] = statuses.get(p.status, 0) + 1
    return {
        "proposals": len(proposals),
        "proposal_statuses": statuses,
        "alarms": len(alarms),
        "alarm_kinds": sorted({a.kind for a in alarms}),
        "audit_entries": len(entries),
        "audit_chain_ok": verified.ok,
        "unaccounted": missing,
    }


def newest_sample(home: Path, plant: str) -> datetime | None:
    """The newest sample in the plant's historian (the plant clock as the runtime stored it)."""
    from twin.historian import Historian
    from twin.paths import Home

    with Historian(Home(home).historian_dir(plant)) as h:
        span = h.time_range()
    return None if span is None else span[1]


# ---- the run -------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plant-hours", type=float, default=12.0)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--warmup-s", type=float, default=120.0, help="Wall seconds before 'start'.")
    ap.add_argument("--sample-s", type=float, default=30.0, help="Memory sampling period.")
    ap.add_argument("--quick", action="store_true", help="`twin train --quick` (smoke runs).")
    ap.add_argument("--keep", action="store_true", help="Keep the soak's folder.")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = ap.parse_args()

    from twin.demo import DemoConfig

    cfg = DemoConfig()
    root = Path(tempfile.mkdtemp(prefix="twin-soak-"))
    home, logs = root / "home", root / "logs"
    logs.mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TWIN_HOME": str(home)}
    user, password = cfg.user, "soak-" + os.urandom(4).hex()
    setup = logs / "setup.log"
    t_setup = time.monotonic()
    history_start = (datetime.now(UTC) - timedelta(hours=cfg.history_hours)).replace(microsecond=0)
    run_step(
        twin(
            "generate",
            cfg.plant,
            "--hours",
            f"{cfg.history_hours:g}",
            "--seed",
            str(cfg.seed),
            "--start",
            history_start.isoformat(),
            home=home,
        ),
        env,
        setup,
        f"generating {cfg.history_hours:g} h of history",
    )
    train = ["--quick"] if args.quick else ["--max-seconds", f"{cfg.train_budget_s:.0f}"]
    run_step(
        twin("train", cfg.plant, "--seed", str(cfg.seed), *train, home=home),
        env,
        setup,
        "training the twin",
    )
    run_step(
        twin("users", "add", user, "--role", "engineer", "--password-env", "SOAK_PW", home=home),
        {**env, "SOAK_PW": password},
        setup,
        "adding the demo user",
    )
    setup_s = time.monotonic() - t_setup
    spec_path, op, mb = spec_on_free_ports(root / "spec")
    app_port = free_port()
    url = f"http://127.0.0.1:{app_port}"
    parts: list[Part] = []
    console.print(f"[bold]soak:[/] starting sim x{args.speed:g}, serve, app in {root}")
    parts.append(
        start(
            "sim",
            twin(
                "sim",
                str(spec_path),
                "--opcua-port",
                str(op),
                "--modbus-port",
                str(mb),
                "--speed",
                f"{args.speed:g}",
                "--scenario",
                cfg.scenario,
                "--seed",
                str(cfg.seed),
                home=home,
            ),
            env,
            logs,
        )
    )
    wait_for(lambda: accepts(op), 90, "the simulated plant", parts)
    parts.append(
        start(
            "serve",
            twin("serve", str(spec_path), "--mode", "supervised", "--source", "opcua", home=home),
            env,
            logs,
        )
    )
    parts.append(
        start(
            "app",
            twin(
                "app",
                "--host",
                "127.0.0.1",
                "--port",
                str(app_port),
                "--plant",
                cfg.plant,
                home=home,
            ),
            env,
            logs,
        )
    )
    wait_for(lambda: healthy(url), 120, "the control room", parts)

    wall_s = args.plant_hours * 3600 / args.speed
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    browser_errors: list[str] = []
    t0 = time.monotonic()
    plant_series: list[tuple[float, datetime | None]] = []
    start_mark: dict[str, int] = {}
    cycles = cycle_failures = 0
    codes: dict[str, int | None] = {}
    chromium_rss: list[tuple[float, int]] = []
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            page.on("pageerror", lambda e: browser_errors.append(f"pageerror: {e}"))
            page.on("crash", lambda *_: browser_errors.append("page crashed"))
            op_ = Operator(page, url, user, password)
            page.goto(url)
            op_.log_in()
            next_sample = 0.0
            while True:
                elapsed = time.monotonic() - t0
                for p in parts:
                    if p.proc.poll() is not None:
                        raise SystemExit(
                            f"soak: {p.name} exited ({p.proc.returncode}); see {p.log}"
                        )
                if elapsed >= next_sample:
                    for p in parts:
                        p.rss.append((round(elapsed, 1), rss_tree_kib(p.proc.pid)))
                        p.anon.append((round(elapsed, 1), rss_tree_kib(p.proc.pid, "RssAnon")))
                    chromium_rss.append((round(elapsed, 1), _chromium_rss()))
                    plant_series.append((round(elapsed, 1), newest_sample(home, cfg.plant)))
                    if not start_mark and elapsed >= args.warmup_s:
                        start_mark = {p.name: len(p.rss) - 1 for p in parts}
                    next_sample = elapsed + args.sample_s
                if elapsed >= wall_s:
                    break
                try:
                    op_.cycle(cycles)
                except PlaywrightError as exc:
                    cycle_failures += 1
                    op_.problems.append(f"cycle {cycles}: {type(exc).__name__}: {str(exc)[:300]}")
                    try:
                        page.goto(url)
                        op_.settle()
                    except PlaywrightError:
                        pass
                cycles += 1
            for p in parts:
                p.rss.append((round(time.monotonic() - t0, 1), rss_tree_kib(p.proc.pid)))
                p.anon.append((p.rss[-1][0], rss_tree_kib(p.proc.pid, "RssAnon")))
            browser.close()
    finally:
        run_wall = time.monotonic() - t0
        plant_series.append((round(run_wall, 1), newest_sample(home, cfg.plant)))
        codes = stop(parts)
    accounting = account(home, cfg.plant)

    procs: dict[str, Any] = {}
    for p in parts:
        i0 = start_mark.get(p.name, 0)
        first, base, end = p.rss[0][1], p.rss[i0][1], p.rss[-1][1]
        a0, a1 = p.anon[i0][1], p.anon[-1][1]
        errors, alarm_lines = scan_log(p.log)
        procs[p.name] = {
            "rss_first_kib": first,
            "rss_start_kib": base,
            "rss_end_kib": end,
            "rss_peak_kib": max(v for _, v in p.rss),
            "rss_growth": round(end / base - 1, 4) if base else None,
            "anon_start_kib": a0,
            "anon_end_kib": a1,
            "anon_peak_kib": max(v for _, v in p.anon),
            "growth": round(a1 / a0 - 1, 4) if a0 else None,
            "tracebacks": sum(1 for e in errors if e.startswith("Traceback")),
            "exit_code": codes.get(p.name),
            "error_lines": len(errors),
            "error_samples": errors[:20],
            "alarm_lines": alarm_lines,
            "rss_series": p.rss,
            "anon_series": p.anon,
        }
    setup_errors, _ = scan_log(setup)
    # Plant speed from the first sample after warm-up (the live loop running) to the end.
    timed = [(w, t) for w, t in plant_series if t is not None and w >= args.warmup_s]
    (w0, t0_), (w1, t1_) = (timed[0], timed[-1]) if len(timed) > 1 else ((0.0, None), (1.0, None))
    plant_s = (t1_ - t0_).total_seconds() if t0_ and t1_ else None
    speed = round(plant_s / (w1 - w0), 2) if plant_s else None
    result = {
        "benchmark": "soak",
        "commit": _commit(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs, shared; niced",
        "settings": {
            "plant_hours_target": args.plant_hours,
            "speed_target": args.speed,
            "wall_s_target": wall_s,
            "warmup_s": args.warmup_s,
            "sample_s": args.sample_s,
            "train": train,
            "history_hours": cfg.history_hours,
            "seed": cfg.seed,
            "scenario": cfg.scenario,
            "mode": "supervised",
            "source": "opcua",
        },
        "setup_s": round(setup_s, 1),
        "run_wall_s": round(run_wall, 1),
        "plant_s_measured": plant_s,
        "plant_speed_achieved": speed,
        "plant_hours_covered": round(speed * run_wall / 3600, 2) if speed else None,
        "plant_clock_series": [(w, t.isoformat() if t else None) for w, t in plant_series],
        "processes": procs,
        "chromium_rss_kib": chromium_rss,
        "browser": {
            "cycles": cycles,
            "cycle_failures": cycle_failures,
            **op_.counts,
            "render_median_s": _median(op_.render_s),
            "render_max_s": max(op_.render_s, default=None),
            "page_errors": browser_errors[:50],
            "problems": op_.problems[:50],
        },
        "setup_error_lines": setup_errors[:20],
        "accounting": accounting,
    }
    unhandled = sum(v["error_lines"] for v in procs.values()) + len(browser_errors)
    unhandled += op_.counts.get("exception_boxes", 0)
    worst = max((v["growth"] or 0.0) for v in procs.values())
    result["targets"] = {
        "max_growth": worst,
        "growth_ok": worst <= GROWTH_LIMIT,
        "unhandled_errors": unhandled,
        "errors_ok": unhandled == 0,
        "unaccounted": len(accounting["unaccounted"]),
        "audit_ok": not accounting["unaccounted"],
        "clean_exit": all(c == 0 for c in codes.values()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print_table(result)
    console.print(f"logs: {logs}    results: {args.out}")
    if not args.keep and result["targets"]["errors_ok"]:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _chromium_rss() -> int:
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if "chrom" not in (d / "comm").read_text():
                continue
            if str(os.getpid()) not in _ancestors(int(d.name)):
                continue
            for line in (d / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _ancestors(pid: int) -> set[str]:
    seen: set[str] = set()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        seen.add(str(pid))
    return seen


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[len(s) // 2], 3)


def _commit() -> str:
    """The commit under test (SOAK_COMMIT when the soak runs from an exported tree)."""
    if os.environ.get("SOAK_COMMIT"):
        return os.environ["SOAK_COMMIT"]
    run = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return run.stdout.strip()


def print_table(r: dict[str, Any]) -> None:
    t = Table(title=f"Soak: {r['run_wall_s']:.0f} s wall, plant x{r['plant_speed_achieved']}")
    for col in (
        "process",
        "anon start MiB",
        "anon end MiB",
        "anon peak MiB",
        "growth (anon)",
        "RSS start / end MiB",
        "error lines",
        "tracebacks",
        "exit",
    ):
        t.add_column(col)
    for name, v in r["processes"].items():
        t.add_row(
            name,
            f"{v['anon_start_kib'] / 1024:.0f}",
            f"{v['anon_end_kib'] / 1024:.0f}",
            f"{v['anon_peak_kib'] / 1024:.0f}",
            f"{100 * (v['growth'] or 0):+.1f} %",
            f"{v['rss_start_kib'] / 1024:.0f} / {v['rss_end_kib'] / 1024:.0f}",
            str(v["error_lines"]),
            str(v["tracebacks"]),
            str(v["exit_code"]),
        )
    console.print(t)
    a, b, tg = r["accounting"], r["browser"], r["targets"]
    console.print(
        f"plant time covered {r['plant_hours_covered']} h (x{r['plant_speed_achieved']}); browser cycles "
        f"{b['cycles']} ({b['cycle_failures']} failed), page errors {len(b['page_errors'])}, "
        f"exception boxes {b.get('exception_boxes', 0)}; proposals {a['proposals']} "
        f"{a['proposal_statuses']}, alarms {a['alarms']}, unaccounted {len(a['unaccounted'])}"
    )
    console.print(
        f"targets: growth {100 * tg['max_growth']:+.1f} % (<= 20 %: {tg['growth_ok']}), "
        f"unhandled errors {tg['unhandled_errors']} ({tg['errors_ok']}), "
        f"audit {tg['audit_ok']}, clean exit {tg['clean_exit']}"
    )


if __name__ == "__main__":
    main()
