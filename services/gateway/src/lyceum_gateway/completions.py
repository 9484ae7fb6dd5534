"""Runs the generations of one completion request together (OpenAI's `n` choices, and a legacy request's
several prompts): each is its own `Generate` stream on the samplers, started concurrently; they are gathered
whole, or merged step by step as they arrive for streaming. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lyceum_core.context import RequestContext
from lyceum_core.errors import Internal, LyceumError
from lyceum_fleet.routed import SamplerRouter
from lyceum_fleet.sampler import GenerateSpec, GenerationStep

T = TypeVar("T")
Steps = AsyncGenerator[GenerationStep, None]


@dataclass(frozen=True, slots=True)
class Completion:
    """One finished generation: its token steps in order and its final step (finish reason, counts, id)."""

    index: int
    steps: list[GenerationStep]
    final: GenerationStep


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The error to report for a failed group: a domain error if any (a bad argument, not its echo as a
    cancellation of the others), else the first."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            errors.append(exc)
    return next((e for e in errors if isinstance(e, LyceumError)), errors[0])


async def _all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Awaits all concurrently; the first failure cancels the rest and is raised (not as a group)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_await(a)) for a in awaitables]
    except BaseExceptionGroup as failed:
        raise _first_error(failed) from None
    return [task.result() for task in tasks]


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _first(steps: Steps) -> GenerationStep:
    try:
        return await anext(steps)
    except StopAsyncIteration:
        raise Internal("the sampler ended the generation without a result") from None


class Generations:
    """Generations started together, each with its first step already received: a bad model or argument
    fails `start` before any response is begun. Use as an async context manager; leaving it cancels
    whatever is still running."""

    def __init__(self, streams: list[Steps], firsts: list[GenerationStep]) -> None:
        self._streams = streams
        self._firsts = firsts
        self._pumps: list[asyncio.Task[None]] = []

    @classmethod
    async def start(
        cls, samplers: SamplerRouter, ctx: RequestContext, specs: Sequence[GenerateSpec]
    ) -> Generations:
        """One stream per spec, each on the next serving replica (stateless: any replica may serve it)."""
        streams = [samplers.spread().generate(ctx, spec) for spec in specs]
        try:
            firsts = await _all([_first(steps) for steps in streams])
        except BaseException:
            await _close(streams)
            raise
        return cls(streams, firsts)

    def __len__(self) -> int:
        return len(self._streams)

    async def __aenter__(self) -> Generations:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancels the pumps (a generator runs in one task at a time), then closes every stream, which
        cancels its call on the sampler."""
        for pump in self._pumps:
            pump.cancel()
        for pump in self._pumps:
            with contextlib.suppress(BaseException):
                await pump
        await _close(self._streams)

    async def gather(self) -> list[Completion]:
        """Every generation to its end, concurrently, in spec order."""
        return await _all([self._collect(i) for i in range(len(self._streams))])

    async def _collect(self, index: int) -> Completion:
        steps: list[GenerationStep] = []
        step: GenerationStep | None = self._firsts[index]
        while step is not None:
            if step.token is None:
                return Completion(index, steps, step)
            steps.append(step)
            step = await anext(self._streams[index], None)
        raise Internal("the sampler ended the generation without a final message")

    async def merged(self) -> AsyncIterator[tuple[int, GenerationStep]]:
        """(index, step) of every generation as the steps arrive, until each has sent its final step. A
        bounded queue: a slow reader holds the samplers back rather than piling steps up here."""
        queue: asyncio.Queue[tuple[int, GenerationStep | BaseException | None]] = asyncio.Queue(
            maxsize=2 * len(self._streams)
        )
        self._pumps = [asyncio.create_task(self._pump(i, queue)) for i in range(len(self._streams))]
        finished = 0
        while finished < len(self._streams):
            index, item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                raise Internal("the sampler ended the generation without a final message")
            if item.token is None:
                finished += 1
            yield index, item

    async def _pump(
        self, index: int, queue: asyncio.Queue[tuple[int, GenerationStep | BaseException | None]]
    ) -> None:
        try:
            await queue.put((index, self._firsts[index]))
            if self._firsts[index].token is None:
                return
            async for step in self._streams[index]:
                await queue.put((index, step))
                if step.token is None:
                    return
            await queue.put((index, None))  # ended without a final step
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
            await queue.put((index, exc))


async def _close(streams: Sequence[Steps]) -> None:
    for steps in streams:
        with contextlib.suppress(Exception):
            await steps.aclose()
