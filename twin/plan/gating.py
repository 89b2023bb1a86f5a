"""When not to propose: stale data, a plant outside what the twin has seen, no trusted model."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from twin.plan.proposal import NoProposal
from twin.plan.world import WorldModel


@runtime_checkable
class WindowGated(Protocol):
    """A world model whose out-of-distribution check sees the whole input window."""

    def ood_ratio(
        self,
        window: torch.Tensor,
        mask: torch.Tensor | None = None,
        latent: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, W, n_tags) eng units -> (B,) ratio to the threshold; above 1 is unseen.
        `latent`: the window already encoded (B, D), so it is not encoded twice."""
        ...


def ood_ratio(
    model: WorldModel, window: np.ndarray, latent: torch.Tensor | None = None
) -> float | None:
    """The one OOD check of the planner and the write guard: the current window (W, n_tags),
    engineering units, NaN where missing -> its ratio to the model's threshold (> 1: refuse).

    The JEPA twin answers with its calibrated window gate (TwinModel.ood_ratio: latent k-NN
    and window checks); other world models with ood_score of the encoded window over
    ood_threshold. None when the model has no finite threshold (no gate to ask). `latent`:
    model.encode of this window (1, D) when the caller (the planner) has encoded it already.
    """
    with torch.inference_mode():
        x = torch.as_tensor(np.asarray(window, dtype=np.float32))[None]  # (1, W, n_tags)
        ok = torch.isfinite(x)
        if isinstance(model, WindowGated):
            return float(model.ood_ratio(torch.nan_to_num(x), ok, latent)[0])
        threshold = float(model.ood_threshold)
        if not math.isfinite(threshold) or threshold <= 0:
            return None
        z = model.encode(torch.nan_to_num(x), ok) if latent is None else latent
        return float(model.ood_score(z)[0]) / threshold


def gate(
    plant: str,
    *,
    model_version: str | None,
    data_ts: datetime | None,
    now: datetime,
    max_staleness_s: float,
    ood_score: float | None = None,
    ood_threshold: float | None = None,
) -> NoProposal | None:
    """The reason no proposal may be made, or None when planning may go ahead.

    Checked in the order an engineer would fix them: a model, then data, then its age, then
    whether the plant is in a state the model knows.
    """
    if not model_version:
        return NoProposal(
            plant,
            "no_model",
            f"no active twin for plant {plant!r} (train one with `twin train {plant}`)",
            data_ts,
        )
    if data_ts is None:
        return NoProposal(plant, "no_data", f"no data for plant {plant!r} in the historian")
    age_s = (now - data_ts).total_seconds()
    if age_s > max_staleness_s:
        return NoProposal(
            plant,
            "stale",
            f"newest data is {age_s:.0f} s old, more than max_staleness_s={max_staleness_s:g}",
            data_ts,
        )
    if ood_score is not None and ood_threshold is not None and math.isfinite(ood_threshold):
        if not math.isfinite(ood_score) or ood_score > ood_threshold:
            return NoProposal(
                plant,
                "ood",
                f"the plant is out of the twin's distribution (OOD score {ood_score:.3g} > "
                f"threshold {ood_threshold:.3g}); the twin has not seen this state",
                data_ts,
            )
    return None
