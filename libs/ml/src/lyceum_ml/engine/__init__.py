"""The batched decoding engine every generation goes through (see `core`)."""

from lyceum_ml.engine.beam import GenStep, beam_search
from lyceum_ml.engine.core import Engine, StepStats, Stream
from lyceum_ml.engine.generate import engine_forward, generate
from lyceum_ml.engine.request import Finish, Hook, Request, StepView, TokenEvent

__all__ = [
    "Engine",
    "Finish",
    "GenStep",
    "Hook",
    "Request",
    "StepStats",
    "StepView",
    "Stream",
    "TokenEvent",
    "beam_search",
    "engine_forward",
    "generate",
]
