"""The write guard: the last check between an approval and the plant (safety rule 2).

A pure function of the spec, the approval and the live plant values, re-run at the moment of
writing because everything may have changed since the proposal was made: the plant moved,
an engineer narrowed an operator limit, the data went stale, the proposal expired. It never
adjusts a value to make it pass — a value that fails any check refuses the whole write, since
writing some MVs of a coordinated move and not others could be worse than writing none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from twin.sample import Quality, Sample
from twin.spec import PlantSpec

# Float slack for comparisons: a value exactly at a bound, after a JSON round trip, still passes.
_EPS = 1e-9


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _EPS * max(1.0, abs(a), abs(b))


@dataclass(frozen=True)
class GuardDecision:
    """What the guard allows: either every value to write, or nothing and the reasons why."""

    values: dict[str, float] = field(default_factory=dict)
    """Tag -> value to write; empty when refused."""
    reasons: tuple[str, ...] = ()
    """Why the write is refused; empty when allowed."""

    @property
    def allowed(self) -> bool:
        return not self.reasons and bool(self.values)

    def __str__(self) -> str:
        if self.allowed:
            return "allowed: " + ", ".join(f"{k}={v:g}" for k, v in self.values.items())
        return "refused: " + "; ".join(self.reasons)


def effective_limits(
    spec: PlantSpec, tag: str, operator_limits: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, float]:
    """The tighter of the engineering limits and the operator limits (store's override first)."""
    t = spec.tag(tag)
    lo, hi = t.limits
    olo, ohi = (operator_limits or {}).get(tag, t.operating_limits)
    return max(lo, olo), min(hi, ohi)


def check_write(
    spec: PlantSpec,
    *,
    approved: Mapping[str, float],
    proposed: Mapping[str, float],
    live: Mapping[str, Sample],
    now: datetime,
    expires_at: datetime | None,
    operator_limits: Mapping[str, tuple[float, float]] | None = None,
    modification: Mapping[str, float] | None = None,
    ood_score: float | None = None,
    ood_threshold: float | None = None,
    written: Mapping[str, float] | None = None,
) -> GuardDecision:
    """Re-check an approved write against the plant as it is now.

    approved: the values about to be written; proposed: what the proposal said; modification:
    the re-evaluated modification an operator approved (then approved must equal it instead);
    live: the newest sample of each tag; now: the plant clock; expires_at: the proposal's expiry
    (None for step-test moves, which are not proposals); written: values the runtime wrote that
    the live samples do not show yet (max_move is checked from them too).
    """
    reasons: list[str] = []
    mv_names = {t.name for t in spec.mvs}
    if not approved:
        reasons.append("nothing to write")
    if expires_at is not None and now > expires_at:
        reasons.append(
            f"the proposal expired at {expires_at.isoformat()} (plant clock now {now.isoformat()})"
        )
    reasons.extend(f.message for f in sensor_faults(spec, live, now))
    if ood_score is not None and ood_threshold is not None:
        if not math.isfinite(ood_score) or ood_score > ood_threshold:
            reasons.append(
                f"the plant is out of distribution (OOD score {ood_score:.3g} > {ood_threshold:.3g})"
            )
    expected = modification if modification is not None else proposed
    for tag, value in approved.items():
        if tag not in mv_names:
            reasons.append(f"{tag}: not a manipulated variable of plant {spec.name!r}")
            continue
        if not isinstance(value, int | float) or not math.isfinite(value):
            reasons.append(f"{tag}: value {value!r} is not a finite number")
            continue
        reasons.extend(_value_checks(spec, tag, float(value), expected, live, operator_limits))
        reasons.extend(_from_written(spec, tag, float(value), written))
    if reasons:
        return GuardDecision({}, tuple(reasons))
    return GuardDecision({k: float(v) for k, v in approved.items()}, ())


@dataclass(frozen=True)
class SensorFault:
    """Why one tag's newest sample cannot be trusted (safety rule 3)."""

    tag: str
    kind: str
    """missing, bad, out_of_range, stale."""
    message: str


def sensor_faults(spec: PlantSpec, live: Mapping[str, Sample], now: datetime) -> list[SensorFault]:
    """Every tag whose newest sample is missing, not good, out of range or too old.

    `live` holds the newest sample of each tag as received, whatever its quality: an older good
    value never stands in for a newer bad one. Age is the tag's own (its sample's source
    timestamp), limited by `max_staleness_s`, or by the tag's max age when its source reports by
    exception and an unchanged value legitimately sends nothing.
    """
    faults = []
    for tag in spec.tags:
        s = live.get(tag.name)
        if s is None:
            faults.append(SensorFault(tag.name, "missing", f"{tag.name}: no live data"))
            continue
        lo, hi = tag.limits
        if s.quality == Quality.OUT_OF_RANGE or (
            math.isfinite(s.value) and not lo <= s.value <= hi
        ):
            faults.append(
                SensorFault(
                    tag.name,
                    "out_of_range",
                    f"{tag.name}: {s.value:g} is outside its engineering limits [{lo:g}, {hi:g}]",
                )
            )  # noqa: E501
        elif not s.usable:
            faults.append(
                SensorFault(
                    tag.name, "bad", f"{tag.name}: newest sample is {s.quality.name} ({s.value:g})"
                )
            )  # noqa: E501
        age = (now - s.ts).total_seconds()
        limit = spec.max_age_s(tag.name)
        if age > limit:
            faults.append(
                SensorFault(
                    tag.name,
                    "stale",
                    f"{tag.name}: stale, newest sample is {age:.1f} s old (limit {limit:g} s)",
                )
            )  # noqa: E501
    return faults


def _from_written(
    spec: PlantSpec, tag: str, value: float, written: Mapping[str, float] | None
) -> list[str]:
    """max_move also from the value the runtime last wrote, while the live samples may not show
    it yet (a lagging or reconnecting source): a move is within max_move of both."""
    max_move = spec.tag(tag).max_move
    if not written or tag not in written or max_move is None:
        return []
    last = written[tag]
    if abs(value - last) > max_move * (1 + _EPS) + _EPS:
        return [
            f"{tag}: move {value - last:+g} from the value last written {last:g} "
            f"exceeds max_move {max_move:g} (the live samples do not show that write yet)"
        ]
    return []


def _value_checks(
    spec: PlantSpec,
    tag: str,
    value: float,
    expected: Mapping[str, float],
    live: Mapping[str, Sample],
    operator_limits: Mapping[str, tuple[float, float]] | None,
) -> list[str]:
    reasons = []
    if tag not in expected or not _close(value, float(expected[tag])):
        want = expected.get(tag)
        reasons.append(
            f"{tag}: {value:g} is not the value proposed or approved as a modification ({want})"
        )
    lo, hi = spec.tag(tag).limits
    if not lo - _EPS <= value <= hi + _EPS:
        reasons.append(f"{tag}: {value:g} is outside the engineering limits [{lo:g}, {hi:g}]")
    olo, ohi = effective_limits(spec, tag, operator_limits)
    if not olo - _EPS <= value <= ohi + _EPS:
        reasons.append(f"{tag}: {value:g} is outside the operator limits [{olo:g}, {ohi:g}]")
    sample = live.get(tag)
    max_move = spec.tag(tag).max_move
    if sample is None or not sample.usable:
        reasons.append(f"{tag}: no good live value to check max_move against")
    elif max_move is not None and abs(value - sample.value) > max_move * (1 + _EPS) + _EPS:
        reasons.append(
            f"{tag}: move {value - sample.value:+g} from the live value {sample.value:g} "
            f"exceeds max_move {max_move:g}"
        )
    return reasons
