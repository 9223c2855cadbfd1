"""The records of the loop: a decision, a decision awaiting its reward, a reward's outcome.
Decisions are made in :mod:`engine.decide`; rewards are joined in :mod:`engine.join`."""

from __future__ import annotations

from dataclasses import dataclass

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
