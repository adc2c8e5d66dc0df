"""DIN and the paper's Base Model (EmbeddingMLP)."""

from dinrec.models.config import ModelConfig
from dinrec.models.din import DIN, EmbeddingMLP, build_model
from dinrec.models.network import InterestNetwork

__all__ = ["DIN", "EmbeddingMLP", "InterestNetwork", "ModelConfig", "build_model"]
