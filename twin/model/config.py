"""The JEPA twin's architecture and loss settings (one typed config, saved in every checkpoint)."""

from __future__ import annotations

from dataclasses import dataclass, field

from twin.errors import BadInput


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the encoder, action encoder, predictor and readout heads, and loss weights."""

    latent_dim: int = 32
    """Learned dimensions of the latent z; with measured_latent the n_cv measured coordinates
    come on top (the latent has n_cv + latent_dim dimensions: its size follows the plant)."""
    hidden: int = 128
    """Width of the hidden layers of encoder and predictor."""
    action_dim: int = 16
    """Width of the action embedding."""
    readout_hidden: int = 64
    """Width of the readout heads' hidden layer."""
    quantiles: tuple[float, ...] = (0.05, 0.95)
    """Quantile levels of the readout bands."""
    sigreg_lambda: float = 0.1
    """Weight of SIGReg in the loss. Light on purpose: LeJEPA's default (0.05 on N x our
    statistic) is about 13 here. At 0.1 the latent is far from N(0, I) (held-out statistic
    100-150x its iid level, effective rank 5-7 of 32), and BatchNorm and the readout keep it
    from collapsing. 20 with target_stop_grad reaches 10x on cstr at equal accuracy in 20-epoch
    runs but doubles four_tank's error, and under the full recipe's early stopping it lost on
    both: a few-dimensional plant state must be padded with unpredictable content to look
    Gaussian in 32 dimensions (benchmarks/predict_sigreg.py, docs/model.md)."""
    sigreg_projections: int = 128
    """Random 1-D projections drawn afresh every step."""
    sigreg_samples: int = 256
    """Latents sampled from the batch for SIGReg (keeps its cost in check)."""
    w_pred: float = 1.0
    """Weight of the teacher-forced one-step latent prediction loss."""
    w_rollout: float = 1.0
    """Weight of the multi-step latent rollout loss."""
    w_readout: float = 1.0
    """Weight of the readout loss (mean squared error + pinball), on encoded and rolled-out latents."""
    target_stop_grad: bool = False
    """Latent targets (encodings of the future windows) under stop-gradient, as in LeJEPA: the
    latent losses move the predictor and the context encoding, never the target towards it.
    Off by default: over 3 seeds it measured worse (twin/model/losses.py says by how much).
    With a heavy SIGReg it is what lets the latent approach the Gaussian (cstr, lambda 20:
    held-out statistic 0.037 without, 0.013 with)."""
    readout_detach: bool = False
    """Train the readout on detached latents (a probe: the representation comes from the JEPA
    terms alone). An ablation, not the default."""
    batchnorm: bool = True
    """BatchNorm in the encoder's projector (ablation: off)."""
    measured_latent: bool | None = False
    """The latent's first n_cv coordinates are the CVs' latest measurements (normalised),
    followed by latent_dim learned ones, and the readout's mean is those coordinates (its
    quantiles are learned from the whole latent): the now-cast is the measurement itself
    whatever the operating point, the predictor moves the CVs in their own units, and a rollout
    that changes nothing reads out persistence. SIGReg shapes the learned part only. None:
    decided from the data when the twin is fitted (twin.train.measured_latent_for), which is
    what `twin train` does."""
    extra: dict = field(default_factory=dict)
    """Free-form notes stored with the config (not used by the code)."""

    def __post_init__(self) -> None:
        if self.latent_dim < 2 or self.hidden < 4 or self.action_dim < 1:
            raise BadInput("latent_dim >= 2, hidden >= 4 and action_dim >= 1 are required")
        if any(not 0 < q < 1 for q in self.quantiles):
            raise BadInput(f"quantile levels must lie in (0, 1), got {self.quantiles}")


ABLATIONS: dict[str, dict[str, float | bool]] = {
    "latent_losses_off": {"w_pred": 0.0, "w_rollout": 0.0},
    "probe": {"readout_detach": True},
    "sigreg_off": {"sigreg_lambda": 0.0},
    "sigreg_off_no_batchnorm": {"sigreg_lambda": 0.0, "batchnorm": False},
}
"""The JEPA ablations of the predict benchmark and the model card, as ModelConfig overrides:
latent prediction and rollout losses off; readout on detached latents (a probe of what the
JEPA terms alone learn); SIGReg off; SIGReg and BatchNorm off."""
