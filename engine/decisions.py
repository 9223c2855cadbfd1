"""The records of the loop: a decision, a decision awaiting its reward, a reward's outcome.
Decisions are made in :mod:`engine.decide`; rewards are joined in :mod:`engine.join`."""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from time import time_ns

import numpy as np


@dataclass
class Decision:
    """What :meth:`engine.Engine.rank` decided for one request.

    Attributes
    ----------
    decision_id, user_id
        Id to report the reward under; the user the decision was made for.
    ranking
        Candidate ids, best first: the sampled slate first, then the rest by probability.
    probabilities, candidate_ids
        The policy's probability of choosing each candidate, and their ids, in request order.
    chosen, propensity
        The item shown in the first slot, sampled from ``probabilities`` with ``propensity``.
    slot_propensities
        Conditional probability of each slot's item given the earlier slots (slates): the
        propensity each slot was filled with, which a per-slot reward is learned with.
    variant, policy_version, ts
        Which variant's policy decided, its version, and the decision time.
    """

    decision_id: str
    user_id: str
    ranking: list[str]
    probabilities: list[float]
    candidate_ids: list[str]
    chosen: str
    propensity: float
    slot_propensities: list[float]
    variant: str
    policy_version: int
    ts: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(slots=True)
class Pending:
    """A decision awaiting its reward (in memory, slotted: one per decision in the wait
    window; its row is in the store)."""

    decision_id: str
    user_id: str
    deadline: float
    variant: str
    phi: np.ndarray  # features of the chosen candidate, (D,)
    propensity: float
    item_id: str
    topics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    #: a rollout's challenger's probability of the chosen candidate (its shadow decision)
    shadow: float | None = None
    #: a slate's later slots, ``[(Pending, decision row), ...]``, each awaiting its own reward
    #: once the first per-slot reward comes (:meth:`engine.join.Joiner.slot_rewards`)
    slots: list | None = None


@dataclass
class RewardResult:
    """Outcome of one reward report: ``status`` is ``"joined"`` (learned), ``"duplicate"``
    (ignored: the decision already had a reward), or ``"late"`` (recorded, not learned: its
    window had closed and the default reward was learned instead)."""

    decision_id: str
    status: str
    value: float
    learned: bool


def new_decision_id() -> str:
    """A new decision id: the wall clock in milliseconds (12 hex digits), then 128 random
    bits (32 hex digits). The random part makes an id unguessable from any other; the time
    prefix makes new ids sort after older ones, so the decision log's index grows at its
    end instead of at random pages (random 128-bit ids made every group commit rewrite
    pages across the whole index: several times the WAL volume, and a writer that fell
    behind as the log grew).

    >>> a, b = new_decision_id(), new_decision_id()
    >>> len(a), a[:12] <= b[:12], a[12:] != b[12:]
    (44, True, True)
    """
    try:
        part = _RANDOM_PARTS.popleft()
    except IndexError:
        part = _refill()
    return f"{time_ns() // 1_000_000:012x}{part}"


#: Random parts of decision ids not yet used (32 hex digits each): the OS's random bytes,
#: read for many ids at once (one system call per ``_BLOCK`` ids, not one per id).
_RANDOM_PARTS: deque[str] = deque()
_BLOCK = 256


def _refill() -> str:
    """One random part, the next ``_BLOCK - 1`` kept. (Threads may refill at once: each
    reads its own bytes, so no part is handed out twice.)"""
    block = os.urandom(16 * _BLOCK).hex()
    _RANDOM_PARTS.extend(block[i:i + 32] for i in range(32, len(block), 32))
    return block[:32]


# a forked process must not hand out the parts its parent holds too
os.register_at_fork(after_in_child=_RANDOM_PARTS.clear)
