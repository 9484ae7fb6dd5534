"""`generate`: one continuation as a stream of `GenStep`s, through an engine (the service's, shared with
other requests) or a private one driven here (scripts, tests, training loops)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from concurrent.futures import Future

from torch import Tensor

from lyceum_ml.causal_lm import CausalLM, Feed
from lyceum_ml.engine.beam import Forward, GenStep, beam_search
from lyceum_ml.engine.core import Engine, Stream
from lyceum_ml.engine.request import Event, Finish, Request
from lyceum_ml.sampling import SamplingParams

STRATEGIES = ("greedy", "sample", "beam")


def engine_forward(engine: Engine) -> Forward:
    """Forward passes through a started engine's steps (beam search inside a service)."""

    def forward(feeds: Sequence[Feed]) -> list[Tensor]:
        futures: list[Future[Tensor]] = [engine.forward(f) for f in feeds]
        return [f.result() for f in futures]

    return forward


def events(engine: Engine, stream: Stream, driven: bool) -> Iterator[Event]:
    """A stream's events; `driven`: this thread steps the engine (no engine thread)."""
    while True:
        if driven:
            engine.step()
        for event in stream.poll() if driven else stream.wait():
            yield event
            if isinstance(event, Finish):
                return


def generate(
    lm: CausalLM,
    prompt_ids: Sequence[int],
    strategy: str = "sample",
    params: SamplingParams | None = None,
    max_new_tokens: int = 64,
    stop: Sequence[str] = (),
    seed: int | None = None,
    num_beams: int = 4,
    *,
    engine: Engine | None = None,
    adapter: str | None = None,
    gate: float | None = None,
) -> Iterator[GenStep]:
    """Continues a prompt, yielding each chosen token, then a last step with token_id None, the whole
    continuation and the finish reason. EOS ends generation without being yielded; a stop string ends it with
    the text cut before it. Probabilities are under the shaped distribution; penalties see prompt + output.
    With `engine` (started), the rows join its batches; without, a private engine runs here."""
    params = params or SamplingParams()
    params.validate()
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'greedy', 'sample' or 'beam', got {strategy!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not prompt_ids:
        raise ValueError("prompt_ids is empty")
    if strategy == "beam":
        forward = engine_forward(engine) if engine is not None else lm.forward_rows
        yield from beam_search(
            lm, forward, list(prompt_ids), params, max_new_tokens, stop, num_beams, adapter, gate
        )
        return
    request = Request(
        tuple(prompt_ids),
        max_new_tokens,
        params,
        greedy=strategy == "greedy",
        seed=secrets.randbits(63) if seed is None else seed,
        stop=tuple(stop),
        adapter=adapter,
        gate=gate,
    )
    driven = engine is None
    engine = engine or Engine(lm, max_rows=1)
    stream = engine.submit(request)
    try:
        for event in events(engine, stream, driven):
            if isinstance(event, Finish):
                if event.error is not None:
                    raise event.error
                yield GenStep(None, 0.0, event.text, event.reason)
            else:
                yield GenStep(event.token_id, event.probability, event.text)
    finally:
        stream.cancel()
