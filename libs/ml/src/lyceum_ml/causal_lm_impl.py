"""`CausalLM` adapters: Lyceum's gated TransformerLM over its KVCache, and Hugging Face causal LMs (GPT-2 and
similar) over a `DynamicCache`, both loaded from local directories by `load_causal_lm`."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from lyceum_ml.adapters import AdapterHost
from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.kv_cache import KVCache
from lyceum_ml.lm.checkpoint import LoadedLM, load_lm
from lyceum_ml.lm.ragged import forward_rows, token_adapters
from lyceum_ml.tokenization import eos_id as lyceum_eos_id

_BYTE_TOKEN = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece byte-fallback tokens


@cache
def _unicode_to_byte() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 bytes for
    the characters U+0100 onwards, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = {b: chr(b) for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in chars):
        chars[b] = chr(256 + n)
    return {c: b for b, c in chars.items()}


def is_byte_level(tokenizer: Tokenizer) -> bool:
    """Whether a `tokenizers` pipeline decodes GPT-2 style (each vocabulary character one byte)."""
    return tokenizer.decoder is not None and b'"ByteLevel"' in tokenizer.decoder.__getstate__()  # its JSON


def piece_bytes(piece: str, byte_level: bool) -> bytes:
    """A vocabulary entry -> the bytes it stands for: byte-level BPE characters map back to single bytes;
    otherwise a SentencePiece byte token `<0xNN>` is that byte and `▁` a space."""
    table = _unicode_to_byte()
    if byte_level and all(c in table for c in piece):
        return bytes(table[c] for c in piece)
    if m := _BYTE_TOKEN.fullmatch(piece):
        return bytes([int(m.group(1), 16)])
    return piece.replace("▁", " ").encode("utf-8")


def _check_context(lm: CausalLM, have: int, token_ids: list[int]) -> None:
    if not token_ids:
        raise ValueError("token_ids is empty")
    if have + len(token_ids) > lm.max_context:
        raise ValueError(f"context of {have + len(token_ids)} tokens exceeds max_context={lm.max_context}")


class LyceumCausalLM:
    """Lyceum's TransformerLM with its `tokenizers` byte-level BPE; batches pack every row's tokens into one
    forward (`lyceum_ml.lm.ragged`), adapters and gate signals per row. The distribution covers the
    tokenizer's ids only: embedding rows past the vocabulary (padding) are never offered."""

    kind = "lyceum-lm"
    shares_prefix = True

    def __init__(self, loaded: LoadedLM, name: str) -> None:
        self.model, self.tokenizer, self.name = loaded.model.eval(), loaded.tokenizer, name
        self.vocab_size = min(self.model.cfg.vocab_size, self.tokenizer.get_vocab_size())
        self.max_context = self.model.cfg.max_seq_len
        try:
            self.eos_id: int | None = lyceum_eos_id(self.tokenizer)
        except ValueError:
            self.eos_id = None
        self._special = {i: t.content for i, t in self.tokenizer.get_added_tokens_decoder().items()}
        self._byte_level = is_byte_level(self.tokenizer)
        self.gated = self.model.cfg.gated
        self.adapters = AdapterHost(self.model)

    def new_cache(self) -> KVCache:
        return self.model.new_cache()

    def copy_cache(self, cache: KVCache) -> KVCache:
        return copy.deepcopy(cache)

    def cache_len(self, cache: KVCache) -> int:
        return cache.length

    def cache_nbytes(self, cache: KVCache) -> int:
        return cache.nbytes

    def forward_rows(self, feeds: Sequence[Feed]) -> list[Tensor]:
        for f in feeds:
            _check_context(self, f.cache.length + (f.prefix.length if f.prefix else 0), f.token_ids)
        with self.adapters.applied(token_adapters(feeds)):
            out = forward_rows(self.model, feeds)
        for f in feeds:
            if f.hidden is not None:
                f.hidden = f.hidden.cpu()
        return [logits[..., : self.vocab_size].cpu() for logits in out]

    def extend(self, cache: KVCache, token_ids: list[int]) -> Tensor:
        return self.forward_rows([Feed(cache, token_ids)])[0]

    def truncate(self, cache: KVCache, length: int) -> None:
        if not 0 <= length <= cache.length:
            raise ValueError(f"cannot truncate a cache of {cache.length} tokens to {length}")
        cache.length = length

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        if token_id in self._special:
            return self._special[token_id].encode("utf-8")
        piece = self.tokenizer.id_to_token(token_id) if 0 <= token_id < self.vocab_size else None
        if piece is None:
            raise ValueError(f"token id {token_id} is not in the vocabulary of {self.vocab_size}")
        return piece_bytes(piece, self._byte_level)


class ChunkedLayer(DynamicLayer):
    """A DynamicLayer whose keys/values (B, H, T, hd) are views into buffers grown `chunk` tokens at a time: a
    step writes its token in place where DynamicLayer concatenates, copying the whole cache every token.
    `crop` (inherited) shortens the views; the next update overwrites the buffers past them."""

    chunk = 256

    def update(
        self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.buffers: tuple[Tensor, Tensor] | None = None
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if self.buffers is None or end > self.buffers[0].shape[-2]:
            capacity = -(-end // self.chunk) * self.chunk
            grown = tuple(
                t.new_empty(*t.shape[:-2], capacity, t.shape[-1]) for t in (key_states, value_states)
            )
            if start:
                grown[0][..., :start, :], grown[1][..., :start, :] = self.keys, self.values
            self.buffers = grown
        for buf, new in zip(self.buffers, (key_states, value_states), strict=True):
            buf[..., start:end, :] = new
        self.keys, self.values = (buf[..., :end, :] for buf in self.buffers)
        return self.keys, self.values


class HFCausalLM:
    """A transformers causal LM with its tokenizer; the cache is a `DynamicCache` grown by `extend` and
    cropped by `truncate`. Text is encoded without added special tokens (no BOS) and decoded verbatim."""

    kind = "hf-causal-lm"
    gated = False
    shares_prefix = False

    def __init__(self, model: PreTrainedModel, tokenizer: Any, name: str) -> None:
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        cfg = model.config
        self.vocab_size = min(model.get_output_embeddings().weight.shape[0], len(tokenizer))
        self.max_context = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        if self.max_context is None:
            raise ValueError(f"{name}: the config names no context length (max_position_embeddings)")
        eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else cfg.eos_token_id
        self.eos_id: int | None = eos[0] if isinstance(eos, list) else eos
        self._special = {i: t.content for i, t in tokenizer.added_tokens_decoder.items()}
        backend = getattr(tokenizer, "backend_tokenizer", None)  # a `tokenizers` pipeline, when there is one
        self._byte_level = backend is not None and is_byte_level(backend)
        self.adapters = AdapterHost(model)

    def copy_cache(self, cache: DynamicCache) -> DynamicCache:
        return copy.deepcopy(cache)

    def new_cache(self) -> DynamicCache:
        cache = DynamicCache(config=self.model.config)
        cache.layers = [ChunkedLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
        return cache

    def cache_len(self, cache: DynamicCache) -> int:
        return cache.get_seq_length()

    def cache_nbytes(self, cache: DynamicCache) -> int:
        """Bytes allocated (a ChunkedLayer's whole buffers, not just the valid part)."""
        layers = [layer for layer in cache.layers if layer.is_initialized]
        held = [getattr(layer, "buffers", None) or (layer.keys, layer.values) for layer in layers]
        return sum(t.numel() * t.element_size() for tensors in held for t in tensors)

    def forward_rows(self, feeds: Sequence[Feed]) -> list[Tensor]:
        """Row by row (a transformers model's cache is one rectangular batch): correct, not batched."""
        for f in feeds:
            if f.gate is not None:
                raise ValueError("this model has no gates but a gate signal was given")
            if f.prefix is not None:
                raise ValueError("this model cannot share a prefix cache")
            _check_context(self, f.cache.get_seq_length(), f.token_ids)
        return [self._forward(f) for f in feeds]

    def _forward(self, feed: Feed) -> Tensor:
        idx = torch.tensor([list(feed.token_ids)], device=self.model.device)  # (1, n)
        keep = 0 if feed.all_logits else 1
        with torch.no_grad(), self.adapters.applied([feed.adapter]):
            out = self.model(
                input_ids=idx,
                past_key_values=feed.cache,
                use_cache=True,
                logits_to_keep=keep,
                output_hidden_states=feed.want_hidden,
            )
        if feed.want_hidden:  # transformers' last hidden state is after the final norm
            feed.hidden = out.hidden_states[-1][0, -1].float().cpu()
        logits = out.logits[0, :, : self.vocab_size].float().cpu()  # (n or 1, V)
        return logits if feed.all_logits else logits[-1]

    def extend(self, cache: DynamicCache, token_ids: list[int]) -> Tensor:
        return self.forward_rows([Feed(cache, token_ids)])[0]

    def truncate(self, cache: DynamicCache, length: int) -> None:
        have = cache.get_seq_length()
        if not 0 <= length <= have:
            raise ValueError(f"cannot truncate a cache of {have} tokens to {length}")
        if length < have:  # a negative count drops that many tokens (transformers 4 and 5 alike)
            cache.crop(length - have)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def token_bytes(self, token_id: int) -> bytes:
        if token_id in self._special:
            return self._special[token_id].encode("utf-8")
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"token id {token_id} is not in the vocabulary of {self.vocab_size}")
        return piece_bytes(self.tokenizer.convert_ids_to_tokens(token_id), self._byte_level)


def load_causal_lm(
    path: str | Path,
    name: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> CausalLM:
    """A model directory -> its CausalLM: a Lyceum LM checkpoint (config.json with kind "lm") or a Hugging
    Face causal LM (config.json with model_type). Reads local files only."""
    path = Path(path)
    config = path / "config.json"
    if not config.exists():
        raise ValueError(f"{path} has no config.json")
    doc = json.loads(config.read_text())
    name = name or path.name
    if doc.get("kind") == "lm":
        return LyceumCausalLM(load_lm(path, device=device, dtype=dtype), name)
    if "model_type" in doc:
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype).to(device)
        return HFCausalLM(model, AutoTokenizer.from_pretrained(path, local_files_only=True), name)
    raise ValueError(f"{path}/config.json is neither a Lyceum LM (kind 'lm') nor a transformers model")
