"""`twin train`, `twin evaluate`, `twin models` and `twin steptest`: the twin's life cycle."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from twin import train_events
from twin.cli.common import HomeOption, PlantArg, home_of, spec_of
from twin.cli.model_tables import bands_table, evaluation_table, fmt, monitors_table, ood_table
from twin.errors import BadInput
from twin.paths import Home
from twin.spec import PlantSpec

console = Console()
err = Console(stderr=True)

QUICK_HELP = "Tiny model and a few seconds of training (smoke tests and demos)."


def train_cmd(
    plant: PlantArg,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, help="Most epochs (early stopping may end sooner)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    seed: Annotated[int, typer.Option("--seed", help="Seed: same seed and data, same model.")] = 0,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            min=1,
            help="Wall-clock safety net of each fit (reported when it binds; default 600 s).",
        ),
    ] = None,
    ablations: Annotated[
        str | None,
        typer.Option(
            "--ablations",
            help="Comma-separated JEPA ablations to train beside the twin for its model card "
            "(latent_losses_off, probe, sigreg_off, sigreg_off_no_batchnorm); each costs a fit.",
        ),
    ] = None,
    false_alarm: Annotated[
        float | None,
        typer.Option(
            "--ood-false-alarm",
            min=0.001,
            max=0.5,
            help="False-alarm rate the OOD gate is calibrated for (default: "
            "twin.model.ood.DESIGN_FALSE_ALARM, half the rate promised on held-out data).",
        ),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help=QUICK_HELP)] = False,
    events: Annotated[
        Path | None,
        typer.Option(
            "--events",
            help="Append training progress as JSON lines to this file (twin.train_events).",
        ),
    ] = None,
    home: HomeOption = None,
) -> None:
    """Train a new twin version from the plant's history; prints the new version id last."""
    from twin import registry
    from twin.train import train_plant
    from twin.train_presets import train_configs

    spec = spec_of(plant)
    model_cfg, data_cfg, cfg = train_configs(
        device=device, seed=seed, quick=quick, epochs=epochs, max_seconds=max_seconds
    )
    if ablations:
        from twin.model.config import ABLATIONS

        names = tuple(a.strip() for a in ablations.split(",") if a.strip())
        unknown = [a for a in names if a not in ABLATIONS]
        if unknown:
            raise BadInput(f"--ablations: unknown {unknown}; known: {', '.join(ABLATIONS)}")
        cfg = replace(cfg, ablations=names)
    if false_alarm is not None:
        cfg = replace(cfg, ood_false_alarm=false_alarm)
    h = home_of(home)
    with train_events.recording(events):
        train_events.emit("start", plant=spec.name, pid=os.getpid())
        try:
            version = train_plant(h, spec, model_cfg, data_cfg, cfg)
        except Exception as exc:
            train_events.emit("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        seconds = registry.load_checkpoint(h, spec, version)["card"]["training"]["seconds"]
        train_events.emit("done", version=version, seconds=seconds)
    card = registry.load_checkpoint(h, spec, version)["card"]
    err.print(evaluation_table(card["evaluation"], f"{spec.name} {version} (held-out block)"))
    active = registry.active_version(h, spec)
    err.print(
        f"trained in {card['training']['seconds']} s; active version: {active}", highlight=False
    )
    typer.echo(version)


def evaluate_cmd(
    plant: PlantArg,
    version: Annotated[
        str | None, typer.Option("--version", help="Model version (default: the active one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    home: HomeOption = None,
) -> None:
    """Held-out accuracy of a version against persistence, ARX and an observation-space model."""
    from twin import registry
    from twin.data import PlantSeries, load_frame
    from twin.evaluate import Baselines, evaluate
    from twin.train import torch_threads

    spec = spec_of(plant)
    h = home_of(home)
    ckpt = registry.load_checkpoint(h, spec, version)
    tw = registry._twin_from(ckpt, spec)
    arx, om = registry.load_baselines(ckpt)
    data = ckpt["card"]["data"]
    import pandas as pd

    # The same data window and split as at training time: the held-out block stays held out.
    end = pd.Timestamp(data["end"]) + pd.Timedelta(seconds=spec.plant.sample_period_s)
    frame = load_frame(h, spec, pd.Timestamp(data["start"]).to_pydatetime(), end.to_pydatetime())
    series = PlantSeries(frame, spec, tw.data_config, normalizer=tw.normalizer)
    with torch_threads(1):
        report = evaluate(tw, series, Baselines(arx=arx, obs_model=om))
    report["version"] = ckpt["version"]
    report["plant"] = spec.name
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console.print(
        evaluation_table(
            report, f"{spec.name} {ckpt['version']} (held-out block, {report['anchors']} anchors)"
        )
    )
    console.print(bands_table(report))
    console.print(ood_table(report["ood"]))
    console.print(monitors_table(report["monitors"]))


def models_cmd(
    first: Annotated[
        str,
        typer.Argument(
            metavar="PLANT | promote | shadow-report",
            help="A plant (list its versions), `promote` or `shadow-report`.",
        ),
    ],
    rest: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PLANT VERSION]",
            help="With promote: the plant and the version to make active.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    gated: Annotated[
        bool, typer.Option(help="Promote only if the shadow run beat the active twin.")
    ] = False,
    margin: Annotated[
        float, typer.Option(help="With --gated: relative error reduction required.")
    ] = 0.1,
    min_intervals: Annotated[
        int, typer.Option(help="With --gated: matured intervals the shadow score needs.")
    ] = 10,
    min_acting: Annotated[
        float,
        typer.Option(
            help="With --gated: share of its shadow intervals the candidate must propose on."
        ),
    ] = 0.5,
    home: HomeOption = None,
) -> None:
    """List a plant's model versions (`twin models PLANT`) or make one active (`twin models promote PLANT V`)."""
    from twin import registry

    h = home_of(home)
    rest = rest or []
    if first == "promote":
        if len(rest) != 2:
            raise BadInput("usage: twin models promote PLANT VERSION")
        spec = spec_of(rest[0])
        if gated:
            gated_promote(h, spec, rest[1], margin, min_intervals, min_acting)
            return
        registry.promote(h, spec, rest[1])
        console.print(f"{spec.name}: {rest[1]} is now the active version", highlight=False)
        return
    if first == "shadow-report":
        shadow_report(h, rest, as_json)
        return
    if rest:
        raise BadInput(
            f"unexpected arguments {rest}; usage: twin models PLANT | twin models promote PLANT VERSION"
        )
    spec = spec_of(first)
    rows = registry.list_models(h, spec)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print(f"{spec.name}: no model versions yet (run `twin train {spec.name}`)")
        return
    table = Table(title=f"Models of {spec.name}", box=box.SIMPLE_HEAD)
    for col in (
        "version",
        "active",
        "created",
        "jepa h1",
        "jepa h10",
        "best baseline h10",
        "eff. rank",
        "SIGReg x iid / x corr",
        "train s",
    ):
        table.add_column(col)
    for r in rows:
        n = r["nrmse"]
        base = [n[m].get("10") for m in ("persistence", "arx", "observation_model") if m in n]
        base = [b for b in base if b is not None]
        table.add_row(
            r["version"],
            "*" if r["active"] else "",
            (r["created"] or "")[:19],
            fmt(n.get("jepa", {}).get("1")),
            fmt(n.get("jepa", {}).get("10")),
            fmt(min(base) if base else None),
            fmt(r["monitors"].get("effective_rank")),
            sigreg_ratios(r["monitors"]),
            str(r["train_seconds"]),
        )
    console.print(table)


def sigreg_ratios(monitors: dict[str, Any]) -> str:
    """The held-out SIGReg statistic over its iid Gaussian floor and over the level of a
    Gaussian latent with the same time correlation (cards older than that level: the first)."""
    held = monitors.get("sigreg_heldout")
    parts = []
    for key in ("sigreg_gaussian_floor", "sigreg_correlated_level"):
        level = monitors.get(key)
        if held is not None and level:
            parts.append(f"{held / level:.0f}x")
    return " / ".join(parts) or "-"


def steptest_cmd(
    plant: PlantArg,
    run: Annotated[
        bool, typer.Option("--run", help="Run it now on the plant's simulator into the historian.")
    ] = False,
    kind: Annotated[str, typer.Option("--kind", help="prbs or gbn.")] = "gbn",
    hours: Annotated[
        float | None, typer.Option("--hours", help="Duration (default: enough levels per MV).")
    ] = None,
    amplitude: Annotated[
        float, typer.Option("--amplitude", help="Fraction of the operating half-band.")
    ] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the signal and the simulator.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the design as JSON.")] = False,
    home: HomeOption = None,
) -> None:
    """Design an excitation campaign for each MV (and, with --run on a simulator, run it)."""
    from twin.steptest import SteptestConfig, design_campaign, run_on_simulator

    spec = spec_of(plant)
    config = SteptestConfig(kind=kind, hours=hours, amplitude=amplitude, seed=seed)
    campaign = design_campaign(spec, config)
    summary = campaign.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        table = Table(
            title=f"{spec.name}: {kind} campaign, {summary['duration_h']} h, "
            f"levels held {summary['hold_s']:g} s",
            box=box.SIMPLE_HEAD,
        )
        for col in ("MV", "band", "range used", "moves", "largest move", "max_move"):
            table.add_column(col)
        for name, m in summary["mvs"].items():
            table.add_row(
                name,
                f"{m['band'][0]:g} .. {m['band'][1]:g}",
                f"{m['min']:g} .. {m['max']:g}",
                str(m["moves"]),
                f"{m['largest_move']:g}",
                f"{spec.tag(name).max_move:g}",
            )
        err.print(table)
    if not run:
        err.print(
            "design only: add --run to run it on the simulator (a live plant runs it "
            "through the runtime after approval)"
        )
        return
    start, end = run_on_simulator(home_of(home), spec, campaign, seed=seed)
    err.print(
        f"campaign recorded {start.isoformat()} .. {end.isoformat()} and annotated as a campaign",
        highlight=False,
    )


def shadow_report(h: Home, rest: list[str], as_json: bool) -> None:
    """`twin models shadow-report PLANT VERSION`: the shadow candidate vs the active twin."""
    from twin.serve.shadow import score
    from twin.state import Store

    if len(rest) != 2:
        raise BadInput("usage: twin models shadow-report PLANT VERSION")
    spec = spec_of(rest[0])
    with Store.open(h) as store:
        result = score(h, spec, store, rest[1]).to_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(title=f"Shadow {rest[1]} vs active on {spec.name}", box=box.SIMPLE_HEAD)
    table.add_column("figure")
    table.add_column("value")
    for k, v in result.items():
        table.add_row(k, fmt(v) if isinstance(v, float) else str(v))
    console.print(table)


def gated_promote(
    h: Home, spec: PlantSpec, version: str, margin: float, least: int, acting: float
) -> None:
    """Promote only a candidate whose shadow score beats the active twin; audited either way."""
    import getpass

    from twin import registry
    from twin.serve.shadow import gate, score
    from twin.state import Store

    if not 0.0 <= acting <= 1.0:
        raise BadInput(f"--min-acting {acting:g}: must lie in [0, 1]")
    with Store.open(h) as store:
        active = registry.active_version(h, spec)
        result = score(h, spec, store, version)
        reasons = gate(result, active, margin, least, acting)
        evidence = {
            **result.to_dict(),
            "active": active,
            "margin": margin,
            "min_acting": acting,
            "refused": reasons,
        }
        kind = "model_promote_refused" if reasons else "model_promote"
        if not reasons:
            registry.promote(h, spec, version)
        why = "; ".join(reasons) or f"shadow score beats {active} by at least {margin:g}"
        store.log_event(
            user=f"cli:{getpass.getuser()}",
            kind=kind,
            plant=spec.name,
            subject=f"model:{version}",
            what=evidence,
            why=why,
        )
    if reasons:
        raise BadInput(f"{spec.name}: {version} not promoted: {why}")
    console.print(f"{spec.name}: {version} is now the active version ({why})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the `twin` app."""
    app.command("train")(train_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("models")(models_cmd)
    app.command("steptest")(steptest_cmd)
