"""The model commands' tables: held-out accuracy, band coverage, the OOD gate, monitors."""

from __future__ import annotations

from rich import box
from rich.table import Table

from twin.model.faults import DETECTION_COLUMNS, detection_rows


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def evaluation_table(report: dict, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("model")
    for h in report["horizons"]:
        table.add_column(f"NRMSE h{h}", justify="right")
    for name, res in report["models"].items():
        table.add_row(name, *[fmt(res["nrmse"].get(str(h))) for h in report["horizons"]])
    return table


def monitors_table(monitors: dict) -> Table:
    table = Table(title="monitors", box=box.SIMPLE_HEAD)
    table.add_column("monitor")
    table.add_column("value", justify="right")
    for k, v in monitors.items():
        if isinstance(v, dict):
            v = ", ".join(f"h{h}: {x:.2f}" for h, x in v.items())
        elif isinstance(v, float):
            v = f"{v:.4g}"
        table.add_row(k, str(v))
    return table


def bands_table(report: dict) -> Table:
    bands = report["bands"]
    lo, hi = bands["band"]
    table = Table(
        title=f"calibrated {lo:.0%}-{hi:.0%} band: coverage (pinball, CV std units)",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("CV")
    hs = [str(h) for h in report["horizons"]]
    for h in hs:
        table.add_column(f"h{h}", justify="right")
    for cv in bands["coverage"][hs[0]]:
        table.add_row(
            cv, *[f"{bands['coverage'][h][cv]:.2f} ({bands['pinball'][h][cv]:.3f})" for h in hs]
        )
    return table


def ood_table(ood: dict) -> Table:
    table = Table(
        title=f"OOD gate: {ood['false_alarm']:.2%} false alarms on held-out windows "
        f"(calibrated for {ood['false_alarm_target']:.0%}, limit {ood['false_alarm_limit']:.0%})",
        box=box.SIMPLE_HEAD,
    )
    for i, heading in enumerate(DETECTION_COLUMNS):
        table.add_column(heading, justify="right" if i >= 2 else "left")
    for row in detection_rows(ood):
        table.add_row(*row)
    return table
