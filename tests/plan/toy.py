"""A toy linear world model whose optimal plans are known in closed form.

Latent z = the CVs themselves; z_{k+1} = A z_k + B u_k + c; readout y = z with a fixed band;
OOD score = distance from a centre in units of a radius.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from twin.spec import PlantSpec, parse_spec


class ToyLinearModel:
    def __init__(
        self,
        a: np.ndarray,
        b: np.ndarray,
        c: np.ndarray,
        cv_names: list[str],
        mv_names: list[str],
        band: float = 0.0,
        centre: np.ndarray | None = None,
        radius: float = float("inf"),
    ) -> None:
        self.a = torch.as_tensor(a, dtype=torch.float32)  # (n_cv, n_cv)
        self.b = torch.as_tensor(b, dtype=torch.float32)  # (n_cv, n_mv)
        self.c = torch.as_tensor(c, dtype=torch.float32)  # (n_cv,)
        self.cv_names = cv_names
        self.mv_names = mv_names
        self.tag_names = cv_names + mv_names
        self.quantile_levels = [0.05, 0.5, 0.95]
        self.window = 3
        self.version = "toy-1"
        self.band = band
        self.centre = (
            torch.zeros(len(cv_names))
            if centre is None
            else torch.as_tensor(centre, dtype=torch.float32)
        )
        self.radius = radius
        self.ood_threshold = 1.0 if np.isfinite(radius) else float("inf")

    def encode(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return window[:, -1, : len(self.cv_names)].float()  # (B, n_cv)

    def predict(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return z @ self.a.T + u.float() @ self.b.T + self.c

    def rollout(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        out = []
        for k in range(u.shape[1]):
            z = self.predict(z, u[:, k])
            out.append(z)
        return torch.stack(out, dim=1)  # (B, H, D)

    def readout(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        offsets = torch.tensor([-self.band, 0.0, self.band])
        return z, z[..., None] + offsets  # (..., n_cv), (..., n_cv, 3)

    def ood_score(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.centre).norm(dim=-1) / self.radius


def spec_dict(
    cvs: list[dict[str, Any]], mvs: list[dict[str, Any]], objective: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A plant spec document with the given CV and MV tags (no sources)."""
    tags = [{"role": "cv", **t} for t in cvs] + [{"role": "mv", **t} for t in mvs]
    return {
        "plant": {"name": "toy", "sample_period_s": 1.0, "control_interval_s": 10.0},
        "tags": tags,
        "objective": objective or {},
        "safety": {"max_staleness_s": 30},
    }


def toy_spec(
    cvs: list[dict[str, Any]], mvs: list[dict[str, Any]], objective: dict[str, Any] | None = None
) -> PlantSpec:
    return parse_spec(spec_dict(cvs, mvs, objective))
