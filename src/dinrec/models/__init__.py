"""DIN and the paper's Base Model (EmbeddingMLP).

Importing this package registers DIN and EmbeddingMLP with the bundle format, so its
load_model (dinrec.bundle.load_model) can rebuild either from a bundle directory.
"""

from dinrec.bundle import load_model
from dinrec.models.config import ModelConfig
from dinrec.models.din import DIN, EmbeddingMLP, build_model
from dinrec.models.network import InterestNetwork

__all__ = ["DIN", "EmbeddingMLP", "InterestNetwork", "ModelConfig", "build_model", "load_model"]
