"""Least-squares ARX model on the control-interval grid, in engineering units.

    y[k+1] = sum_{i=0}^{na-1} A_i y[k-i] + sum_{i=0}^{nb-1} B_i u[k-i] + C d[k] + c

y: CVs, u: MV values held over interval k -> k+1, d: measured disturbances (held at their
latest value over a prediction). Used as an evaluation baseline and, by the linear MPC
baseline, as a plant model: `coefficients` exposes A, B, C, c; `rollout` predicts under a
given MV sequence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from twin.data import move_phase, regularise
from twin.errors import BadInput
from twin.spec import PlantSpec


@dataclass(frozen=True)
class ArxConfig:
    """Model orders and regularisation."""

    na: int = 2
    """Past CV values used (output lags)."""
    nb: int = 2
    """Past and current held MV values used (input lags)."""
    ridge: float = 0.0
    """Ridge penalty on the column-scaled regressors; 0: plain least squares (SVD, minimum norm)."""

    def __post_init__(self) -> None:
        if self.na < 1 or self.nb < 1:
            raise BadInput(f"ARX orders must be at least 1, got na={self.na}, nb={self.nb}")


@dataclass
class ArxHistory:
    """What an ARX prediction starts from (batched): the recent past on the interval grid."""

    y_past: np.ndarray
    """(B, na, n_cv), oldest first; the last row is the current measurement."""
    u_past: np.ndarray
    """(B, nb-1, n_mv) held MV values of the previous intervals, oldest first."""
    d: np.ndarray
    """(B, n_dv) latest disturbance values (held over the prediction)."""


class ArxModel:
    def __init__(self, config: ArxConfig, cv: list[str], mv: list[str], dv: list[str]) -> None:
        self.config, self.cv, self.mv, self.dv = config, cv, mv, dv
        ny, nu, nd = len(cv), len(mv), len(dv)
        self.A = np.zeros((config.na, ny, ny))
        self.B = np.zeros((config.nb, ny, nu))
        self.C = np.zeros((ny, nd))
        self.c = np.zeros(ny)

    # ---- identification -----------------------------------------------------------------

    @classmethod
    def fit(cls, frame: pd.DataFrame, spec: PlantSpec, config: ArxConfig | None = None) -> ArxModel:
        """Identify from a wide frame (DatetimeIndex, tag columns) of the plant's history."""
        grid = regularise(frame, spec)
        return cls.fit_grid(grid.to_numpy(float), spec, config)

    @classmethod
    def fit_grid(
        cls,
        values: np.ndarray,
        spec: PlantSpec,
        config: ArxConfig | None = None,
        spans: list[tuple[int, int]] | None = None,
    ) -> ArxModel:
        """Identify from sample-grid values (T, n_tags) in spec order, rows spans (default all)."""
        config = config or ArxConfig()
        names = spec.tag_names
        model = cls(
            config,
            [t.name for t in spec.cvs],
            [t.name for t in spec.mvs],
            [t.name for t in spec.dvs],
        )
        spi = spec.plant.samples_per_interval
        # When MV moves sit on a grid only that phase has exactly held inputs; otherwise every
        # sample phase gives an interval-grid series.
        aligned = move_phase(values[:, [names.index(t) for t in model.mv]], spi)
        rows_x, rows_y = [], []
        for lo, hi in spans or [(0, len(values))]:
            block = values[lo:hi]
            phases = range(spi) if aligned is None else [(aligned - lo) % spi]
            for phase in phases:
                y, u, d = model._interval_series(block, names, spi, phase)
                x, t = model._regressors(y, u, d)
                rows_x.append(x)
                rows_y.append(t)
        X = np.concatenate(rows_x)
        Y = np.concatenate(rows_y)
        ok = np.isfinite(X).all(1) & np.isfinite(Y).all(1)
        if ok.sum() < X.shape[1] + 1:
            raise BadInput(
                f"plant {spec.name!r}: {int(ok.sum())} complete ARX rows for {X.shape[1]} "
                "coefficients; more data is needed"
            )
        model._solve(X[ok], Y[ok])
        return model

    def _interval_series(self, block: np.ndarray, names: list[str], spi: int, phase: int):
        idx = np.arange(phase, len(block), spi)
        cols = lambda tags: [names.index(t) for t in tags]  # noqa: E731
        y = block[idx][:, cols(self.cv)]
        d = block[idx][:, cols(self.dv)]
        mv = pd.DataFrame(block[:, cols(self.mv)]).ffill().to_numpy()
        held = pd.DataFrame(mv).rolling(spi, min_periods=spi).mean().to_numpy()
        u = np.full((len(idx), len(self.mv)), np.nan)
        nxt = idx + spi
        inside = nxt < len(block)
        u[inside] = held[nxt[inside]]  # mean over the samples of the interval after idx
        return y, u, d

    def _regressors(
        self, y: np.ndarray, u: np.ndarray, d: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        na, nb = self.config.na, self.config.nb
        start = max(na, nb) - 1
        n = len(y) - 1 - start
        if n <= 0:
            return np.zeros((0, self._n_coef())), np.zeros((0, len(self.cv)))
        ks = np.arange(start, start + n)
        parts = [y[ks - i] for i in range(na)] + [u[ks - i] for i in range(nb)] + [d[ks]]
        parts.append(np.ones((n, 1)))
        return np.concatenate(parts, axis=1), y[ks + 1]

    def _n_coef(self) -> int:
        ny, nu, nd = len(self.cv), len(self.mv), len(self.dv)
        return self.config.na * ny + self.config.nb * nu + nd + 1

    def _solve(self, X: np.ndarray, Y: np.ndarray) -> None:
        scale = X.std(0)
        scale[scale < 1e-12] = 1.0
        scale[-1] = 1.0
        Xs = X / scale
        if self.config.ridge > 0:
            reg = self.config.ridge * len(Xs) * np.eye(Xs.shape[1])
            reg[-1, -1] = 0.0  # the intercept is not penalised
            theta = np.linalg.solve(Xs.T @ Xs + reg, Xs.T @ Y)
        else:
            # SVD least squares: exact on exact data, and a constant regressor (a DV that never
            # moved) gets the minimum-norm zero coefficient instead of a singular solve.
            theta = np.linalg.lstsq(Xs, Y, rcond=None)[0]
        theta = theta / scale[:, None]  # (n_coef, ny)
        ny, nu, nd = len(self.cv), len(self.mv), len(self.dv)
        na, nb = self.config.na, self.config.nb
        o = 0
        for i in range(na):
            self.A[i] = theta[o : o + ny].T
            o += ny
        for i in range(nb):
            self.B[i] = theta[o : o + nu].T
            o += nu
        self.C = theta[o : o + nd].T
        o += nd
        self.c = theta[o]

    @classmethod
    def select(
        cls,
        values: np.ndarray,
        spec: PlantSpec,
        train: tuple[int, int],
        val: tuple[int, int],
        candidates: tuple[tuple[int, int], ...] = ((1, 1), (2, 2), (3, 3)),
        horizon: int = 10,
    ) -> ArxModel:
        """Fit each (na, nb) on the train rows; keep the best open-loop `horizon`-step NRMSE on val.

        Higher orders fit noisy one-step data better yet can be unstable over many steps (a
        strongly nonlinear plant), so the order is chosen on what the model is used for.
        """
        best, best_err = None, np.inf
        spi = spec.plant.samples_per_interval
        lo, hi = val
        phase = move_phase(values[:, [spec.tag_names.index(t.name) for t in spec.mvs]], spi)
        first = lo + 3 * spi
        if phase is not None:
            first += (phase - first) % spi
        anchors = np.arange(first, hi - horizon * spi, spi)
        for na, nb in candidates:
            model = cls.fit_grid(values, spec, ArxConfig(na=na, nb=nb), spans=[train])
            if len(anchors) == 0:
                return model
            err = model.validation_error(values, spec, anchors, horizon)
            if err < best_err:
                best, best_err = model, err
        return best if best is not None else cls.fit_grid(values, spec, None, spans=[train])

    def validation_error(
        self, values: np.ndarray, spec: PlantSpec, anchors: np.ndarray, horizon: int
    ) -> float:
        """Mean NRMSE over CVs of `horizon`-step open-loop predictions from the anchors."""
        spi = spec.plant.samples_per_interval
        names = spec.tag_names
        hist = self.history_from_grid(values, names, spi, anchors)
        filled = pd.DataFrame(values).ffill().bfill().to_numpy()
        mv = [names.index(t) for t in self.mv]
        held = pd.DataFrame(filled[:, mv]).rolling(spi, min_periods=1).mean().to_numpy()
        steps = anchors[:, None] + spi * np.arange(1, horizon + 1)[None, :]
        y = self.rollout(hist, held[steps])[:, -1]
        target = values[anchors + horizon * spi][:, [names.index(t) for t in self.cv]]
        std = np.nanstd(target, axis=0)
        err = np.sqrt(np.nanmean((y - target) ** 2, axis=0)) / np.where(std > 0, std, 1.0)
        return float(np.mean(err)) if np.all(np.isfinite(err)) else np.inf

    # ---- prediction ---------------------------------------------------------------------

    def rollout(self, history: ArxHistory, u_future: np.ndarray) -> np.ndarray:
        """Predict CVs after each of H intervals under u_future (B, H, n_mv) -> (B, H, n_cv)."""
        na, nb = self.config.na, self.config.nb
        ys = [history.y_past[:, i] for i in range(na)]  # oldest first
        us = [history.u_past[:, i] for i in range(nb - 1)]
        const = history.d @ self.C.T + self.c  # (B, ny)
        out = []
        for k in range(u_future.shape[1]):
            us.append(u_future[:, k])
            y_next = const.copy()
            for i in range(na):
                y_next += ys[-1 - i] @ self.A[i].T
            for i in range(nb):
                y_next += us[-1 - i] @ self.B[i].T
            ys.append(y_next)
            out.append(y_next)
        return np.stack(out, axis=1)

    def history_from_grid(
        self, values: np.ndarray, names: list[str], spi: int, anchors: np.ndarray
    ) -> ArxHistory:
        """ArxHistory at anchor rows of sample-grid values (T, n_tags); missing values ffilled."""
        filled = pd.DataFrame(values).ffill().bfill().to_numpy()
        cols = lambda tags: [names.index(t) for t in tags]  # noqa: E731
        na, nb = self.config.na, self.config.nb
        yi = anchors[:, None] - spi * np.arange(na - 1, -1, -1)[None, :]
        y_past = filled[np.clip(yi, 0, None)][..., cols(self.cv)]
        held = pd.DataFrame(filled[:, cols(self.mv)]).rolling(spi, min_periods=1).mean().to_numpy()
        ui = anchors[:, None] - spi * np.arange(nb - 2, -1, -1)[None, :]  # interval ends
        u_past = held[np.clip(ui, 0, None)] if nb > 1 else np.zeros((len(anchors), 0, len(self.mv)))
        d = filled[anchors][:, cols(self.dv)]
        return ArxHistory(y_past=y_past, u_past=u_past, d=d)

    def history_from_frame(self, frame: pd.DataFrame, spec: PlantSpec) -> ArxHistory:
        """The ARX starting point at the latest sample of a wide frame (batch of one)."""
        grid = regularise(frame, spec).to_numpy(float)
        return self.history_from_grid(
            grid, spec.tag_names, spec.plant.samples_per_interval, np.array([len(grid) - 1])
        )

    # ---- persistence --------------------------------------------------------------------

    def coefficients(self) -> dict[str, np.ndarray]:
        """A (na, ny, ny), B (nb, ny, nu), C (ny, nd), c (ny), engineering units."""
        return {"A": self.A, "B": self.B, "C": self.C, "c": self.c}

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "cv": self.cv,
            "mv": self.mv,
            "dv": self.dv,
            **{k: v.tolist() for k, v in self.coefficients().items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> ArxModel:
        m = cls(ArxConfig(**d["config"]), d["cv"], d["mv"], d["dv"])
        ny, nu, nd = len(m.cv), len(m.mv), len(m.dv)
        m.A = np.asarray(d["A"], float).reshape(m.config.na, ny, ny)
        m.B = np.asarray(d["B"], float).reshape(m.config.nb, ny, nu)
        m.C = np.asarray(d["C"], float).reshape(ny, nd)
        m.c = np.asarray(d["c"], float).reshape(ny)
        return m
