"""The JEPA world model: encoder, action encoder, predictor, readout heads, SIGReg, losses."""

from twin.model.config import ModelConfig
from twin.model.net import JepaNet
from twin.model.sigreg import sigreg
from twin.model.twin_model import TwinModel

__all__ = ["JepaNet", "ModelConfig", "TwinModel", "sigreg"]
