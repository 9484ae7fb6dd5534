"""The predictor's batcher: concurrent calls share batches, deferred calls run first in the next one, parked
calls wait their delay without holding a thread, and a failing runner fails only its batch."""

from __future__ import annotations

import threading

import pytest

from lyceum_predictor.batcher import Batcher, Work


class Item(Work):
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n


def test_calls_queued_while_a_batch_runs_share_the_next_batch() -> None:
    gate, batches = threading.Event(), []

    def run(batch: list[Item]) -> None:
        batches.append([w.n for w in batch])
        if len(batches) == 1:
            gate.wait(5)  # hold the first batch while more calls queue
        for w in batch:
            w.future.set_result(w.n * 10)

    batcher: Batcher[Item] = Batcher(run, max_rows=4, max_delay_s=0.0)
    first = batcher.submit(Item(0))
    while not batches:
        pass
    rest = [batcher.submit(Item(n)) for n in range(1, 7)]
    gate.set()
    assert [f.result(5) for f in [first, *rest]] == [0, 10, 20, 30, 40, 50, 60]
    batcher.close()
    assert batches == [[0], [1, 2, 3, 4], [5, 6]]  # at most max_rows per batch, in arrival order


def test_deferred_calls_run_first_and_parked_ones_after_their_delay() -> None:
    order: list[list[int]] = []
    batcher: Batcher[Item] = Batcher(lambda b: None, max_rows=3, max_delay_s=5.0)  # 0, 1, 2: one batch

    def run(batch: list[Item]) -> None:
        order.append([w.n for w in batch])
        for w in batch:
            if w.n == 1 and len(order) == 1:
                batcher.defer([w], delay_s=0.05)  # e.g. a write waiting out another process's lease
            elif w.n == 2 and len(order) == 1:
                batcher.defer([w])  # its learner had an earlier write in this batch
            else:
                w.future.set_result(w.n)

    batcher._run = run  # the runner needs the batcher to defer into
    futures = [batcher.submit(Item(n)) for n in (0, 1, 2)]
    assert [f.result(5) for f in futures] == [0, 1, 2]
    batcher.close()
    assert order == [[0, 1, 2], [2], [1]]  # the parked call ran after the merely deferred one


def test_a_failing_batch_fails_its_calls_and_the_next_batch_runs() -> None:
    def run(batch: list[Item]) -> None:
        if batch[0].n == 0:
            raise RuntimeError("boom")
        for w in batch:
            w.future.set_result(w.n)

    batcher: Batcher[Item] = Batcher(run, max_rows=1, max_delay_s=0.0)
    bad, good = batcher.submit(Item(0)), batcher.submit(Item(1))
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(5)
    assert good.result(5) == 1
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(Item(2))


def test_a_batch_waits_up_to_max_delay_for_more_calls() -> None:
    batches: list[int] = []

    def run(batch: list[Item]) -> None:
        batches.append(len(batch))
        for w in batch:
            w.future.set_result(None)

    batcher: Batcher[Item] = Batcher(run, max_rows=3, max_delay_s=5.0)
    futures = [batcher.submit(Item(n)) for n in range(3)]  # the third fills the batch: no 5 s wait
    for f in futures:
        f.result(4)
    batcher.close()
    assert batches == [3]
