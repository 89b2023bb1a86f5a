"""The Limits page: every tag's engineering and operator limits; engineers change the latter."""

from __future__ import annotations

import math

import pandas as pd

from twin import api
from twin.auth import Session
from twin.errors import BadInput
from twin.spec import PlantSpec
from twin.state import Store


def limits_frame(store: Store, spec: PlantSpec) -> pd.DataFrame:
    """One row per tag: role, unit, engineering limits, operator limits in force, their origin."""
    overrides = store.operator_limits(spec.name)
    ops = api.operator_limits(store, spec)
    rows = []
    for t in spec.tags:
        lo, hi = ops[t.name]
        rows.append(
            {
                "tag": t.name,
                "role": t.role,
                "unit": t.unit,
                "engineering lo": t.limits[0],
                "engineering hi": t.limits[1],
                "operator lo": lo,
                "operator hi": hi,
                "from": "control room" if t.name in overrides else "plant.toml",
                "max_move": t.max_move,
            }
        )
    return pd.DataFrame(rows)


def changes(before: pd.DataFrame, after: pd.DataFrame) -> list[tuple[str, float, float]]:
    """Tags whose operator limits differ between two limits frames: (tag, lo, hi)."""
    out = []
    b = before.set_index("tag")
    for _, row in after.iterrows():
        old = b.loc[row["tag"]]
        lo, hi = float(row["operator lo"]), float(row["operator hi"])
        if not (math.isclose(lo, old["operator lo"]) and math.isclose(hi, old["operator hi"])):
            out.append((str(row["tag"]), lo, hi))
    return out


def apply_changes(
    store: Store, user: Session, spec: PlantSpec, edits: list[tuple[str, float, float]], reason: str
) -> list[str]:
    """Apply each edit through twin.api (role-checked, audited); returns one message per refusal.

    Edits are independent: a refused tag does not stop the others, and the message says which.
    """
    if edits and not reason.strip():
        raise BadInput("limits: give a reason for the change (it goes to the audit log)")
    problems = []
    for tag, lo, hi in edits:
        try:
            api.set_operator_limits(store, user, spec, tag, lo, hi, reason)
        except BadInput as exc:
            problems.append(str(exc))
    return problems
