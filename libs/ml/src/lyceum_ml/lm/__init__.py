"""The language model: config, gated TransformerLM with its KV cache, data, training and checkpoints."""

from lyceum_ml.kv_cache import KVCache
from lyceum_ml.lm.config import LMConfig
from lyceum_ml.lm.model import DynamicGate, TransformerLM

__all__ = ["DynamicGate", "KVCache", "LMConfig", "TransformerLM"]
