"""The Developmental Foundation Model: config, model, KV cache, serving operations, training and data."""

from lyceum_ml.dfm.config import DFMConfig
from lyceum_ml.dfm.model import DFM
from lyceum_ml.dfm.vocab import TaskVocab, UnknownTask

__all__ = ["DFM", "DFMConfig", "TaskVocab", "UnknownTask"]
