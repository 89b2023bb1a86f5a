"""Disturbance observer: offset-free planning under disturbances nobody measures.

Two disturbance states, each a random walk seen through white noise, filtered by a steady-state
Kalman gain per component:

- a latent disturbance b: the twin's one-interval prediction misses the freshly encoded latent,
  z_k = f(z_{k-1}, u_{k-1}) + b + noise. Rolled out as z_{j+1} = f(z_j, u_j) + b, a plant at
  rest under an unmodelled disturbance is at rest in the prediction too, so the planner sees no
  phantom drift that it would otherwise "correct" into a steady-state offset;
- an output disturbance d: the measured CVs miss the readout of that prediction,
  y_k = g(z_k) + d + noise; every predicted CV and quantile is shifted by d.

Both are updated from measurement minus the *previous* prediction (the freshly encoded latent's
own readout has already explained the disturbance away). At a closed-loop steady state the
innovations vanish, so the prediction under "hold" equals the measurement and the planner's
fixed point is the setpoint: no offset. The gains come from data (`fit_gains`): the one-step
errors of the twin on its validation block, whose differenced autocovariances give the random
walk's and the noise's variances (lag 0: Q + 2R, lag 1: -R).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from twin.plan.world import WorldModel

if TYPE_CHECKING:
    from twin.data import PlantSeries

MIN_GAIN = 0.05
"""Floor under fitted gains: a twin whose validation block shows no drift would otherwise turn
its observer off, and offset-free control with it."""


@dataclass(frozen=True)
class ObserverGains:
    """Steady-state Kalman gains in [0, 1]: per latent dimension and per CV (twin order)."""

    latent: np.ndarray
    output: np.ndarray
    source: str
    """Where the gains come from, for the model card and the benchmark's config."""

    @classmethod
    def constant(cls, latent: float, output: float) -> ObserverGains:
        """One gain for every latent dimension and one for every CV (they broadcast)."""
        return cls(np.array([float(latent)]), np.array([float(output)]), "planner settings")

    def to_dict(self) -> dict[str, Any]:
        return {
            "latent": self.latent.tolist(),
            "output": self.output.tolist(),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ObserverGains:
        return cls(np.asarray(d["latent"], float), np.asarray(d["output"], float), d["source"])


def kalman_gain(q: float, r: float) -> float:
    """Steady-state gain of a random walk (increment variance q) seen through noise of variance r."""
    if q <= 0.0:
        return 0.0
    if r <= 0.0:
        return 1.0
    p = 0.5 * (q + math.sqrt(q * q + 4.0 * q * r))  # predicted variance: p^2 - q p - q r = 0
    return p / (p + r)


def _diff_moments(errors: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Sums of lag-0 and lag-1 products of the differenced errors (N, n), and their count."""
    diff = np.diff(errors, axis=0)
    return (diff * diff).sum(axis=0), (diff[1:] * diff[:-1]).sum(axis=0), len(diff) - 1


def _gains(lag0: np.ndarray, lag1: np.ndarray) -> np.ndarray:
    """Kalman gains from mean lag-0 / lag-1 autocovariances of differenced errors.

    Differencing removes any constant bias; the random walk's increments w and the noise v give
    diff = w_k + v_k - v_{k-1}: autocovariance Q + 2R at lag 0 and -R at lag 1.
    """
    r = np.maximum(-lag1, 0.0)
    q = np.maximum(lag0 - 2.0 * r, 0.0)
    return np.array([kalman_gain(float(qi), float(ri)) for qi, ri in zip(q, r, strict=True)])


def random_walk_gains(errors: np.ndarray) -> np.ndarray:
    """Gain per column of consecutive one-step errors (N, n), N >= 4, no NaN."""
    s0, s1, n = _diff_moments(errors)
    return _gains(s0 / n, s1 / n)


def fit_gains(
    model: WorldModel, values: np.ndarray, samples_per_interval: int, min_gain: float = 0.0
) -> ObserverGains:
    """Identify the gains on held-out history (T, n_tags) on the sample grid, in the twin's tag
    order (the validation block: data the twin was not fitted to).

    Decisions are taken every `samples_per_interval` samples on windows of `model.window`; the
    MV held over each interval is the newest MV value of the next window, as in operation. Every
    sample phase of the interval grid gives its own chain of decisions, and their moments are
    pooled, so a short block still gives a steady estimate. The latent gain is one number for
    every dimension (their variances pooled): per-dimension estimates from a validation block
    are too noisy to trust. `min_gain` keeps a floor under every gain: with none, a twin whose
    validation block shows no drift would turn the observer off, and offset-free control with it.
    """
    w, spi = int(model.window), int(samples_per_interval)
    tags = list(model.tag_names)
    cv = [tags.index(n) for n in model.cv_names]
    mv = [tags.index(n) for n in model.mv_names]
    moments: list[tuple[np.ndarray, np.ndarray, int]] = []
    for phase in range(spi):
        ends = np.arange(w + phase, len(values) + 1, spi)
        if len(ends) < 6:
            continue
        x = torch.as_tensor(np.stack([values[e - w : e] for e in ends]), dtype=torch.float32)
        with torch.inference_mode():
            z = model.encode(torch.nan_to_num(x), torch.isfinite(x))  # (N, D)
            u = torch.as_tensor(values[ends[1:] - 1][:, mv], dtype=z.dtype)  # held k -> k+1
            z_pred = model.rollout(z[:-1], u[:, None])[:, 0]  # (N-1, D)
            y_pred, _ = model.readout(z_pred)
        e_z = (z[1:] - z_pred).double().numpy()
        e_y = values[ends[1:] - 1][:, cv] - y_pred.double().numpy()
        ok = np.all(np.isfinite(e_z), axis=1) & np.all(np.isfinite(e_y), axis=1)
        # A gap joins two stretches: a rare, harmless outlier in the moments.
        if int(ok.sum()) >= 4:
            moments.append(_diff_moments(np.concatenate([e_z[ok], e_y[ok]], axis=1)))
    if not moments:
        raise ValueError(
            f"need at least 6 control intervals of history to fit the observer, got "
            f"{len(values) // max(spi, 1)}"
        )
    count = sum(m[2] for m in moments)
    lag0 = np.sum([m[0] for m in moments], axis=0) / count
    lag1 = np.sum([m[1] for m in moments], axis=0) / count
    d = len(lag0) - len(cv)
    latent = _gains(np.array([lag0[:d].sum()]), np.array([lag1[:d].sum()]))
    output = _gains(lag0[d:], lag1[d:])
    return ObserverGains(
        np.maximum(latent, min_gain),
        np.maximum(output, min_gain),
        f"fitted on {count} held-out control intervals",
    )


def fit_gains_on_series(model: WorldModel, series: PlantSeries) -> ObserverGains:
    """The gains a twin is saved with: fitted on its own validation block (data only, never
    a simulator), floored at MIN_GAIN."""
    lo, hi = series.blocks["val"]
    cols = [series.tag_names.index(n) for n in model.tag_names]
    values = series.raw[lo:hi][:, cols]
    return fit_gains(model, values, series.spi, MIN_GAIN)


@dataclass(frozen=True)
class Estimate:
    """What the planner adds to its predictions."""

    latent: torch.Tensor | None
    """Latent disturbance (D,) added after every predicted interval; None when off or zero."""
    output: np.ndarray
    """Output disturbance (n_cv,) added to every predicted CV and quantile."""


class DisturbanceObserver:
    """Filters the two disturbance states decision by decision (see the module docstring)."""

    def __init__(self, gains: ObserverGains, interval_s: float) -> None:
        self.gains = gains
        self.interval_s = interval_s
        self._latent: torch.Tensor | None = None
        self._output: np.ndarray | None = None
        self._prev: tuple[torch.Tensor, datetime] | None = None

    def reset(self) -> None:
        """Forget the estimates (a data gap, a refusal, a new model)."""
        self._latent, self._output, self._prev = None, None, None

    def update(
        self,
        model: WorldModel,
        z0: torch.Tensor,
        y_meas: np.ndarray,
        u_held: np.ndarray,
        data_ts: datetime,
    ) -> Estimate:
        """Take the decision's fresh latent z0 (1, D), measured CVs (n_cv,) and the MV values held
        over the interval that just ended (n_mv,); return the estimate to plan with."""
        z0 = z0.detach()
        latent = torch.zeros(z0.shape[-1], dtype=z0.dtype) if self._latent is None else self._latent
        prev = self._prev
        after_one_interval = prev is not None and math.isclose(
            (data_ts - prev[1]).total_seconds(), self.interval_s, rel_tol=0.05
        )
        if prev is not None and after_one_interval and self._output is not None:
            u = torch.as_tensor(u_held, dtype=z0.dtype).reshape(1, 1, -1)
            z_pred = model.rollout(prev[0], u)[:, 0] + latent  # (1, D)
            y_pred, _ = model.readout(z_pred)
            e_z = (z0 - z_pred)[0]
            e_y = y_meas - y_pred[0].double().numpy() - self._output
            latent = latent + torch.as_tensor(self.gains.latent, dtype=z0.dtype) * e_z
            self._output = self._output + self.gains.output * e_y
        elif self._output is None:
            # Nothing predicted this moment yet: start from the readout's own residual.
            y0, _ = model.readout(z0)
            self._output = y_meas - y0[0].double().numpy()
        self._latent = latent
        self._prev = (z0, data_ts)
        return self._estimate()

    def current(self, model: WorldModel, z0: torch.Tensor, y_meas: np.ndarray) -> Estimate:
        """The estimate as it stands, without a filter step (a what-if on the same data);
        before the first decision, the readout's own residual."""
        if self._output is None:
            y0, _ = model.readout(z0)
            return Estimate(None, y_meas - y0[0].double().numpy())
        return self._estimate()

    def _estimate(self) -> Estimate:
        assert self._output is not None
        latent = self._latent
        active = latent is not None and bool(torch.any(latent != 0))
        return Estimate(latent if active else None, self._output.copy())


def rollout_disturbed(
    model: WorldModel, z: torch.Tensor, u: torch.Tensor, latent: torch.Tensor | None
) -> torch.Tensor:
    """model.rollout with the latent disturbance added after every interval: (B, H, D)."""
    if latent is None:
        return model.rollout(z, u)
    out = []
    for k in range(u.shape[1]):
        z = model.rollout(z, u[:, k : k + 1])[:, 0] + latent
        out.append(z)
    return torch.stack(out, dim=1)
