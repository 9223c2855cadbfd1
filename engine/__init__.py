"""Loopwise engine: live profiles, decisions, rewards, durable store.

>>> from engine import Engine
>>> with Engine(policy="uniform", seed=1, clock=lambda: 0.0) as eng:
...     d = eng.rank("u1", ["a", "b", "c"])
...     [round(p, 3) for p in d.probabilities]
[0.333, 0.333, 0.333]
"""

from engine.config import EngineConfig
from engine.decisions import Decision, RewardResult
from engine.engine import Engine, IngestResult
from engine.errors import LoopwiseError, StoreError, UnknownDecisionError, ValidationError
from engine.events import Event, EventTypes, validate_event, validate_events
from engine.profile import ProfileConfig

__all__ = [
    "Decision", "Engine", "EngineConfig", "Event", "EventTypes", "IngestResult", "LoopwiseError",
    "ProfileConfig", "RewardResult", "StoreError", "UnknownDecisionError", "ValidationError",
    "validate_event", "validate_events",
]
