"""The few verbs of a world model the planner uses (the JEPA twin, an ARX model, a toy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch


class WorldModel(Protocol):
    """Anything with these verbs can be planned on; everything is in engineering units."""

    # Read-only properties, so that a plain attribute of any sequence type conforms (a
    # mutable protocol attribute would have to match its type exactly).
    @property
    def cv_names(self) -> Sequence[str]: ...
    @property
    def mv_names(self) -> Sequence[str]: ...
    @property
    def tag_names(self) -> Sequence[str]: ...
    @property
    def quantile_levels(self) -> Sequence[float]: ...
    @property
    def window(self) -> int: ...
    @property
    def version(self) -> str: ...
    @property
    def ood_threshold(self) -> float: ...

    def encode(self, window: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, W, n_tags) values and presence mask -> latent (B, D)."""
        ...

    def rollout(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Latent (B, D) and absolute MV values (B, H, n_mv) -> latents (B, H, D)."""
        ...

    def readout(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents (..., D) -> CV means (..., n_cv) and quantiles (..., n_cv, n_q)."""
        ...

    def ood_score(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, D) -> out-of-distribution score (B,); above ood_threshold is unseen."""
        ...
