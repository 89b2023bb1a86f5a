"""When not to propose: stale data, a plant outside what the twin has seen, no trusted model."""

from __future__ import annotations

import math
import weakref
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

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


class NeighbourReference(Protocol):
    """The reference of a k-nearest-neighbour latent score (twin.model.ood.LatentGate):
    score(z) = mean distance of z - center to its k nearest rows of bank, over scale."""

    center: torch.Tensor
    """(D,) subtracted from every latent."""
    bank: torch.Tensor
    """(N, D) reference latents, centred."""
    scale: torch.Tensor
    """() divides the mean distance."""
    k: int
    """Neighbours averaged."""


@runtime_checkable
class NeighbourScored(Protocol):
    """A world model whose ood_score is the k-NN score of `gate` (the JEPA twin)."""

    @property
    def gate(self) -> NeighbourReference: ...


SUBSET_ROWS = 256
"""Reference rows of the trust score's bounds (an evenly strided subset of the bank)."""
COARSE_STEP = 8
"""The first bound's rows: every COARSE_STEP-th row of the subset (32 of 256)."""
BOUND_MARGIN = 1e-2
"""Relative margin under 1 within which the bounds leave a latent to the exact score (cdist
rounds distances near 0 to about 1e-3; the exact score itself is only that exact)."""


_PREPARED: weakref.WeakKeyDictionary[object, tuple[tuple, Any]] = weakref.WeakKeyDictionary()
"""Per model: the state of its gate when last prepared, and what TrustRatio._prepare made of it
(a decision reuses it; a refitted or replaced bank is prepared again)."""


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        x is y if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b, strict=True)
    )


class TrustRatio:
    """The planner's trust-region ratio of predicted latents: ood_score / ood_threshold / slack,
    exact wherever it can exceed 1, for a fraction of the k-NN's cost.

    The trust cost only sees relu(ratio - 1), so a latent whose ratio is certainly below 1
    costs nothing whatever its exact value. Two upper bounds of the mean distance to the k
    nearest bank rows, against an evenly strided subset S of the bank, settle most latents:

    - through a neighbour: for s in S, the mean distance from z to s's own k nearest bank rows,
      at most |z - s| + knn(s), bounds knn(z); the least over S costs one distance matrix;
      it is taken first over every COARSE_STEP-th row of S (a smaller matrix; most predicted
      latents of a plant in its known region are settled there), then over all of S for the
      latents it left unsure;
    - the mean distance to the k nearest rows of S (a subset's k nearest are no nearer).

    Only latents that neither bound puts clearly below 1 are scored exactly (model.ood_score
    itself). `bounded(z)` returns the exact ratio there and a bound below 1 elsewhere:
    relu(ratio - 1) and its gradient are those of the exact ratio. `exact(z)` is the plain one.

    The shortcut is taken only for a model whose score is such a k-NN score (NeighbourScored)
    and only when a replica of its score agrees with model.ood_score on probe latents; otherwise
    every latent is scored exactly.
    """

    def __init__(
        self, model: WorldModel, threshold: float, slack: float, coarse: bool = True
    ) -> None:
        self.model = model
        self.threshold, self.slack = threshold, slack
        self.coarse = coarse
        """Whether the bound through a neighbour is taken on the coarse rows first."""
        self._ref: NeighbourReference | None = None
        self._subset = self._subset_knn = torch.zeros(0)
        if isinstance(model, NeighbourScored):
            ref = model.gate
            state: tuple = (ref.bank, ref.bank._version, ref.center, ref.center._version)
            state += (ref.k, float(ref.scale))
            known = _PREPARED.get(model)
            if known is not None and _same(known[0], state):
                prepared = known[1]
            else:
                prepared = self._prepare(ref)
                _PREPARED[model] = (state, prepared)
            if prepared is not None:
                self._ref = ref
                self._subset, self._subset_knn = prepared

    @property
    def shortcut(self) -> bool:
        """Whether the bounds are in use (else every latent is scored exactly)."""
        return self._ref is not None

    def exact(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, D) -> ratio (N,)."""
        return self.model.ood_score(z) / self.threshold / self.slack

    def bounded(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (N, D) -> ratio (N,), exact where it may exceed 1, a bound below 1 elsewhere."""
        ref = self._ref
        if ref is None:
            return self.exact(z)
        cut = 1.0 - BOUND_MARGIN
        per = ref.scale * self.threshold * self.slack  # a raw distance over this is a ratio
        with torch.no_grad():
            zc = z.detach() - ref.center  # (N, D)
            if self.coarse:
                rows, rows_knn = self._subset[::COARSE_STEP], self._subset_knn[::COARSE_STEP]
                d = torch.cdist(zc, rows)  # (N, S / COARSE_STEP)
                bound = (d + rows_knn).amin(1) / per  # (N,) through a neighbour of the coarse rows
                unsure = torch.nonzero(bound > cut).flatten()
            else:
                bound = torch.full((len(zc),), math.inf, dtype=zc.dtype)
                unsure = torch.arange(len(zc))
            if len(unsure):
                d = torch.cdist(zc[unsure], self._subset)  # (U, S)
                via = (d + self._subset_knn).amin(1) / per  # through a neighbour of all of S
                near = d.topk(ref.k, dim=1, largest=False).values.mean(1) / per
                bound[unsure] = torch.minimum(bound[unsure], torch.minimum(via, near))
                unsure = unsure[bound[unsure] > cut]
        if len(unsure) == 0:
            return bound
        return bound.index_put((unsure,), self.exact(z[unsure]).to(bound.dtype))

    def _prepare(self, ref: NeighbourReference) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The subset and each of its rows' raw k-NN distance in the bank; None when the
        bank is too small to gain from it or the model's score is not the gate's k-NN."""
        n = len(ref.bank)
        if n <= SUBSET_ROWS or n < ref.k:
            return None
        self._ref = ref
        try:
            if not self._agrees():
                return None
            subset = ref.bank[:: math.ceil(n / SUBSET_ROWS)]
            with torch.no_grad():
                near = self._knn(subset + ref.center, ref.bank)  # (S,) over the scale
            return subset, near * ref.scale
        finally:
            self._ref = None

    def _knn(self, z: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Raw k-NN score of latents (N, D) against centred rows, over the scale."""
        assert self._ref is not None
        d = torch.cdist(z - self._ref.center, rows)  # (N, rows)
        return d.topk(self._ref.k, dim=1, largest=False).values.mean(1) / self._ref.scale

    def _agrees(self) -> bool:
        """The replica of the score matches model.ood_score on probe latents (a model whose
        score is computed some other way gets no shortcut)."""
        assert self._ref is not None
        ref = self._ref
        with torch.no_grad():
            probes = torch.cat([ref.center + ref.bank[:2], ref.center + 3.0 * ref.bank[-2:]])
            want = self.model.ood_score(probes)
            return bool(torch.allclose(self._knn(probes, ref.bank), want, rtol=1e-4, atol=1e-6))
