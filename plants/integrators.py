"""Integrating a plant's physics over one sample period: an adaptive Dormand-Prince 5(4) (the
default: fast, and batched over candidate states for the planner's oracle) and scipy's Radau
(the stiff-capable reference)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy.integrate import solve_ivp

if TYPE_CHECKING:
    from plants.base import PlantModel

Integrator = Literal["rk45", "solve_ivp"]

# Dormand-Prince 5(4) tableau: the explicit pair behind scipy's RK45 and MATLAB's ode45.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)
# Fifth- minus fourth-order weights (the last entry weighs the FSAL stage f(x_new)).
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


def _rk45(
    f: Callable[[float, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    project: Callable[[np.ndarray], np.ndarray],
    max_step_s: float,
    x: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    t0: float,
    dt: float,
    rtol: float,
    atol: float,
) -> np.ndarray:
    """Adaptive Dormand-Prince over [t0, t0 + dt]; steps shrink where the plant is fast.

    x is one state (n,) or a batch (B, n) under its MVs; a batch shares one step size, set by
    its least smooth row (the error norm is the largest row's).
    """
    t, t_end = t0, t0 + dt
    h = min(dt, max_step_s)
    k0 = f(t, x, u, d)
    while t_end - t > 1e-12 * max(1.0, abs(t_end)):
        h = min(h, t_end - t)
        ks = [k0]
        for i in range(1, 6):
            xi = x + h * sum(a * k for a, k in zip(_A[i], ks, strict=False))
            ks.append(f(t + _C[i] * h, xi, u, d))
        x_new = x + h * sum(b * k for b, k in zip(_B, ks, strict=False))
        k_new = f(t + h, x_new, u, d)
        ks.append(k_new)
        err_vec = h * sum(e * k for e, k in zip(_E, ks, strict=False))
        scale = atol + rtol * np.maximum(np.abs(x), np.abs(x_new))
        err = float(np.sqrt(np.mean((err_vec / scale) ** 2, axis=-1)).max())
        if err <= 1.0 and np.all(np.isfinite(x_new)):
            t += h
            x = project(x_new)
            k0 = k_new if x is x_new else f(t, x, u, d)
            factor = 5.0 if err == 0.0 else min(5.0, 0.9 * err**-0.2)
        else:
            factor = 0.2 if not np.isfinite(err) else max(0.2, 0.9 * err**-0.2)
        h = min(h * factor, max_step_s)
        if h < 1e-9 * dt:
            raise RuntimeError(
                f"step size underflow at t={t:.6g} s: the plant state {x} is not integrable"
            )
    return x


def integrate(
    model: PlantModel,
    x: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    t0: float,
    dt: float,
    method: Integrator = "rk45",
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> np.ndarray:
    """The state after dt seconds with u and d held constant.

    "rk45": our adaptive Dormand-Prince 5(4), steps at most model.max_step_s (fast, default);
    "solve_ivp": scipy's Radau (implicit, stiff-capable) with tight tolerances (the reference).
    """
    x = np.asarray(x, dtype=float)
    if method == "solve_ivp":
        sol = solve_ivp(
            lambda t, y: model.derivatives(t, y, u, d),
            (t0, t0 + dt),
            x,
            method="Radau",
            rtol=1e-10,
            atol=1e-12,
        )
        if not sol.success:
            raise RuntimeError(f"integration failed at t={t0}: {sol.message}")
        return model.project(sol.y[:, -1])
    return _rk45(model.derivatives, model.project, model.max_step_s, x, u, d, t0, dt, rtol, atol)


def integrate_batch(
    model: PlantModel,
    x: np.ndarray,
    u: np.ndarray,
    d: np.ndarray,
    t0: float,
    dt: float,
    rtol: float = 1e-6,
    atol: float = 1e-8,
) -> np.ndarray:
    """`integrate` (Dormand-Prince) of B states at once: x (B, n) under u (B, m) -> (B, n).

    The batch shares one step size, set by its least smooth row, so every row is at least as
    accurate as it would be alone. Raises RuntimeError where a row cannot be integrated.
    """
    x = np.asarray(x, dtype=float)
    return _rk45(
        model.derivatives_batch, model.project_batch, model.max_step_s, x, u, d, t0, dt, rtol, atol
    )
