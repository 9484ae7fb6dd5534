"""Sampling and scoring for probes, on the module being judged: a base model (`BaseLM.model`) or a peft model
over it (adapter on, or off under `disable_adapter()`). Prompts are rendered and tokenized the way the
sampler serves chats (the tokenizer's chat template, no special tokens added), so probes see what users do.

Figures per sampled token are of the model's own next-token distribution (temperature 1), whatever the
sampling temperature: the log-prob of the chosen token and the distribution's entropy in nats. So entropy
and log-prob drift measure the model, not the sampler setting, and compare across temperatures.

Sampling is seeded: the same module, prompt, settings and seed give the same tokens. Each sampled row draws
one uniform per step from a generator of its own (seeded by its prompt's seed and its index), so what a row
samples does not depend on the rows decoded beside it: a Hugging Face model decodes many prompts' rows as one
left-padded batch (on a CPU, about the cost of one row), a Lyceum LM one prompt's rows at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from lyceum_ml.chat import Message, render
from lyceum_ml.probes.collapse import token_entropy
from lyceum_ml.sft.base import BaseLM

STOP_WINDOW = 8  # trailing tokens decoded to look for a multi-token stop string
MAX_ROWS = 32  # rows decoded together (HF models)
ROW_SEED_STRIDE = 64  # sample j of a prompt seeded `seed` draws from seed * ROW_SEED_STRIDE + j


@dataclass(frozen=True)
class Sample:
    """One sampled response: its token ids (stop token included when one ended it), the visible text (cut
    before any stop), and per token the model's log-prob of it and the entropy of its distribution."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prompt_ids": self.prompt_ids,
            "response_ids": self.response_ids,
            "text": self.text,
            "logprobs": self.logprobs,
            "entropies": self.entropies,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Sample:
        return cls(
            list(doc["prompt_ids"]),
            list(doc["response_ids"]),
            doc["text"],
            list(doc["logprobs"]),
            list(doc["entropies"]),
        )


# --- text ---------------------------------------------------------------------------------------------------


def chat_prompt(base: BaseLM, prompt: str, system: str | None = None) -> tuple[list[int], tuple[str, ...]]:
    """(prompt ids, stop strings) of a one-turn chat, rendered with the model's chat template and
    tokenized as the sampler does."""
    messages = ([Message("system", system)] if system else []) + [Message("user", prompt)]
    text, stops = render(messages, base.chat_tokenizer)
    return list(base.tokenize(text)), stops


def decode(base: BaseLM, ids: Sequence[int]) -> str:
    """Text of token ids, special tokens kept (as the sampler returns them)."""
    if base.kind == "lyceum":
        return base.tokenizer.decode(list(ids), skip_special_tokens=False)
    return base.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def vocab_size(base: BaseLM) -> int:
    """Tokens the tokenizer can decode (a model's embedding may be padded past it)."""
    if base.kind == "lyceum":
        return base.tokenizer.get_vocab_size()
    return len(base.tokenizer)


def max_context(base: BaseLM) -> int:
    if base.kind == "lyceum":
        return base.model.cfg.max_seq_len
    cfg = base.model.config
    return getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048


def stop_ids(base: BaseLM, stops: Sequence[str]) -> set[int]:
    """Token ids that end a response: end of sequence, and each stop string that is one token."""
    found: set[int] = set()
    eos = base.eos_text
    for text in (eos, *stops):
        if not text:
            continue
        ids = base.tokenize(text)
        if len(ids) == 1:
            found.add(ids[0])
    if base.kind == "hf" and base.tokenizer.eos_token_id is not None:
        found.add(base.tokenizer.eos_token_id)
    return found


# --- compute ------------------------------------------------------------------------------------------------


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class _Rows:
    """The rows being decoded together: left-padded prompts (HF models), or one prompt's rows (a Lyceum
    LM, which reruns the whole sequence each step and takes no padding)."""

    def __init__(self, base: BaseLM, module: nn.Module, prompts: list[list[int]]) -> None:
        self.base, self.module, self.device = base, module, _device(module)
        width = max(len(p) for p in prompts)
        pad = base.pad_id
        self.ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        self.mask = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device
        )  # (R, width)
        self.cache: Any = None

    def first(self) -> Tensor:
        return self._forward(self.ids, self.mask.cumsum(-1).sub(1).clamp_min(0))

    def next(self, step: Tensor) -> Tensor:
        """Logits (R, V) after appending `step` (R, 1) to every row."""
        self.ids = torch.cat([self.ids, step], dim=-1)
        self.mask = torch.cat([self.mask, torch.ones_like(step)], dim=-1)
        if self.base.kind == "hf":
            positions = self.mask.sum(-1, keepdim=True) - 1  # (R, 1)
            return self._forward(step, positions)
        return self._forward(self.ids, None)

    def _forward(self, ids: Tensor, positions: Tensor | None) -> Tensor:
        if self.base.kind == "hf":
            out = self.module(
                input_ids=ids,
                attention_mask=self.mask,
                position_ids=positions,
                past_key_values=self.cache,
                use_cache=True,
            )
            self.cache = out.past_key_values
            return out.logits[:, -1]
        return self.base.forward(self.module)(ids, None)[:, -1]


@torch.no_grad()
def generate(
    base: BaseLM,
    module: nn.Module,
    prompt_ids: Sequence[int],
    *,
    n: int = 1,
    max_new_tokens: int,
    temperature: float,
    seed: int,
    stops: Sequence[str] = (),
) -> list[Sample]:
    """`n` responses to one prompt: temperature 0 is greedy (all rows alike), else sampling at
    `temperature`. Each ends at a stop token or string, or after `max_new_tokens` (fewer where the
    model's context ends)."""
    return generate_many(
        base,
        module,
        [prompt_ids],
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seeds=[seed],
        stops=stops,
    )[0]


@torch.no_grad()
def generate_many(
    base: BaseLM,
    module: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    n: int = 1,
    max_new_tokens: int,
    temperature: float,
    seeds: Sequence[int],
    stops: Sequence[str] = (),
) -> list[list[Sample]]:
    """`n` responses to each prompt, as `generate` gives them one prompt at a time (prompt i with seeds[i]);
    a Hugging Face model decodes up to MAX_ROWS rows at once (prompts left-padded), which costs little
    more than one row on a CPU."""
    if len(seeds) != len(prompts):
        raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
    if any(not p for p in prompts):
        raise ValueError("a prompt has no tokens")
    per_chunk = max(1, MAX_ROWS // n) if base.kind == "hf" else 1
    out: list[list[Sample]] = []
    was_training = module.training
    module.eval()
    try:
        for start in range(0, len(prompts), per_chunk):
            chunk = [list(p) for p in prompts[start : start + per_chunk]]
            rows = [p for p in chunk for _ in range(n)]
            gens = [
                torch.Generator(device="cpu").manual_seed(seed * ROW_SEED_STRIDE + j)
                for seed in seeds[start : start + per_chunk]
                for j in range(n)
            ]
            samples = _decode(base, module, rows, gens, max_new_tokens, temperature, stops)
            out += [samples[i * n : (i + 1) * n] for i in range(len(chunk))]
    finally:
        module.train(was_training)
    return out


def _decode(
    base: BaseLM,
    module: nn.Module,
    prompts: list[list[int]],
    gens: list[torch.Generator],
    max_new_tokens: int,
    temperature: float,
    stops: Sequence[str],
) -> list[Sample]:
    """Decodes one row per prompt; row r draws one uniform per step from gens[r] (its own stream, so what
    a row samples does not depend on the rows beside it)."""
    R, V = len(prompts), vocab_size(base)
    ends = stop_ids(base, stops)
    budget = min(max_new_tokens, max_context(base) - max(len(p) for p in prompts))
    if budget < 1:
        raise ValueError(f"a prompt of {max(map(len, prompts))} tokens leaves no room in the model's context")
    state = _Rows(base, module, prompts)
    rows: list[list[int]] = [[] for _ in range(R)]
    lps: list[list[float]] = [[] for _ in range(R)]
    ents: list[list[float]] = [[] for _ in range(R)]
    done = [False] * R
    logits = state.first()
    for _ in range(budget):
        logp = torch.log_softmax(logits[:, :V].float(), dim=-1)  # (R, V): the model's distribution
        entropy = token_entropy(logp)  # (R,)
        u = torch.cat([torch.rand(1, generator=g) for g in gens])  # (R,): every row draws every step
        if temperature > 0:
            probs = torch.softmax(logp.double() / temperature, dim=-1).cpu()
            cdf = probs.cumsum(-1)
            chosen = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1)).squeeze(-1).clamp_max(V - 1)
        else:
            chosen = logp.argmax(-1).cpu()
        step = chosen.to(state.device).unsqueeze(-1)  # (R, 1)
        picked = logp.gather(-1, step).squeeze(-1).tolist()  # one device sync per step, not per row
        tokens, spread = chosen.tolist(), entropy.tolist()
        for i in range(R):
            if done[i]:
                continue
            rows[i].append(tokens[i])
            lps[i].append(picked[i])
            ents[i].append(spread[i])
            if tokens[i] in ends or _ends_with_stop(base, rows[i], stops):
                done[i] = True
        if all(done):
            break
        logits = state.next(step)  # a finished row's later tokens are never read
    return [
        Sample(prompts[i], rows[i], _visible(base, rows[i], ends, stops), lps[i], ents[i]) for i in range(R)
    ]


def _ends_with_stop(base: BaseLM, ids: list[int], stops: Sequence[str]) -> bool:
    if not stops:
        return False
    tail = decode(base, ids[-STOP_WINDOW:])
    return any(s in tail for s in stops)


def _visible(base: BaseLM, ids: list[int], ends: set[int], stops: Sequence[str]) -> str:
    """The response's text: without its final stop token, cut at the first stop string."""
    if ids and ids[-1] in ends:
        ids = ids[:-1]
    text = decode(base, ids)
    for s in (*stops, base.eos_text):
        if s and s in text:
            text = text[: text.index(s)]
    return text


@torch.no_grad()
def score(
    base: BaseLM, module: nn.Module, prompt_ids: Sequence[int], response_ids: Sequence[int]
) -> list[float]:
    """Teacher-forced log-prob of each response token given the prompt and the tokens before it, under the
    model's own distribution (temperature 1)."""
    if not prompt_ids or not response_ids:
        raise ValueError("scoring needs prompt ids and at least one response token")
    n = len(response_ids)
    ids = torch.tensor([[*prompt_ids, *response_ids]], dtype=torch.long, device=_device(module))
    was_training = module.training
    module.eval()
    try:
        if base.kind == "hf":
            logits = module(input_ids=ids, use_cache=False).logits
        else:
            logits = base.forward(module)(ids, None)
    finally:
        module.train(was_training)
    logp = torch.log_softmax(logits[0, -(n + 1) : -1, : vocab_size(base)].float(), dim=-1)  # (n, V)
    target = ids[0, -n:].unsqueeze(-1)
    return logp.gather(-1, target).squeeze(-1).tolist()
