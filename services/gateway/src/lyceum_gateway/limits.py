"""Request size caps from the settings, checked at the edge so oversized requests never reach a predictor.

Shape and type rules live in the pydantic schemas; these are the deployment-tunable limits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lyceum_core.errors import InvalidArgument
from lyceum_gateway.config import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    max_tasks_per_request: int
    max_events_per_request: int
    max_forecast_sequences: int
    max_forecast_length: int
    max_learner_id_len: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_tasks_per_request=settings.max_tasks_per_request,
            max_events_per_request=settings.max_events_per_request,
            max_forecast_sequences=settings.max_forecast_sequences,
            max_forecast_length=settings.max_forecast_length,
            max_learner_id_len=settings.max_learner_id_len,
        )

    def learner_id(self, learner_id: str, field: str = "learner_id") -> str:
        if len(learner_id) > self.max_learner_id_len:
            limit = self.max_learner_id_len
            raise InvalidArgument(
                f"{field} is {len(learner_id)} characters long; at most {limit} are allowed", field=field
            )
        return learner_id

    def tasks(self, tasks: Sequence[object], field: str = "tasks") -> None:
        _at_most(len(tasks), self.max_tasks_per_request, field)

    def events(self, events: Sequence[object], field: str = "events") -> None:
        _at_most(len(events), self.max_events_per_request, field)

    def forecast(self, task_sequences: Sequence[Sequence[object]], field: str = "task_sequences") -> None:
        _at_most(len(task_sequences), self.max_forecast_sequences, field)
        longest = max((len(seq) for seq in task_sequences), default=0)
        if longest > self.max_forecast_length:
            raise InvalidArgument(
                f"{field} has sequences of {longest} tasks; at most {self.max_forecast_length} are allowed",
                field=field,
            )


def _at_most(count: int, limit: int, field: str) -> None:
    if count > limit:
        raise InvalidArgument(f"{field} has {count} items; at most {limit} are allowed", field=field)
