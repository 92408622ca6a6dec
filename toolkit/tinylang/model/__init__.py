"""The byte-level MEGABYTE model: ``from tinylang.model import MegabyteConfig, Megabyte``."""

from .config import BOS_ID, EOS_ID, PAD_ID, VOCAB_SIZE, MegabyteConfig
from .megabyte import Megabyte
from .sampling import LogitsProcessor, sample_next_byte

__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "VOCAB_SIZE", "MegabyteConfig", "Megabyte", "LogitsProcessor",
           "sample_next_byte"]
