"""The task vocabulary: the model's task ids (strings) and their rows in the task encoder."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class UnknownTask(KeyError):
    """A task id the model does not know; `.task` names it and `.index` its position in the request."""

    def __init__(self, task: str, index: int) -> None:
        super().__init__(task)
        self.task, self.index = task, index


class TaskVocab:
    def __init__(self, tasks: Iterable[str]) -> None:
        self.tasks: list[str] = list(tasks)
        self._index = {t: i for i, t in enumerate(self.tasks)}
        if len(self._index) != len(self.tasks):
            raise ValueError("task ids must be unique")

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, task: object) -> bool:
        return task in self._index

    def encode(self, tasks: Sequence[str]) -> list[int]:
        """Task ids -> rows; raises UnknownTask for the first id not in the vocabulary."""
        try:
            return [self._index[t] for t in tasks]
        except KeyError:
            i = next(i for i, t in enumerate(tasks) if t not in self._index)
            raise UnknownTask(tasks[i], i) from None
