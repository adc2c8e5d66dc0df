"""dinrec: the Deep Interest Network (Zhou et al., KDD 2018) in PyTorch."""

__version__ = "0.1.0"
