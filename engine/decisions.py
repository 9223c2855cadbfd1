"""Decisions and the reward join: wait windows, default rewards, duplicates and late rewards."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Decision:
    """What :meth:`engine.Engine.rank` decided for one request.

    Attributes
    ----------
    decision_id
        Id to report the reward under.
    user_id
        The user the decision was made for.
    ranking
        Candidate ids, best first: the sampled slate first, then the rest by probability.
    probabilities
        The policy's probability of choosing each candidate (in request order).
    candidate_ids
        The candidates' ids in request order.
    chosen
        The item shown in the first slot (sampled from ``probabilities``).
    propensity
        Probability with which ``chosen`` was sampled.
    slot_propensities
        Conditional probability of each slot's item given the earlier slots (slates).
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
    """A decision awaiting its reward (kept in memory; its row is in the store). Slotted:
    every decision waits as one, for up to the wait window (about 700 bytes each)."""

    decision_id: str
    user_id: str
    deadline: float
    variant: str
    phi: np.ndarray  # features of the chosen candidate, (D,)
    propensity: float
    item_id: str
    topics: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass
class RewardResult:
    """Outcome of one reward report.

    ``status`` is ``"joined"`` (learned), ``"duplicate"`` (ignored: the decision already had a
    reward), or ``"late"`` (recorded, not learned: its window had closed and the default
    reward was learned instead).
    """

    decision_id: str
    status: str
    value: float
    learned: bool


@dataclass
class Joiner:
    """Pending decisions ordered by the time their wait window closes.

    Examples
    --------
    >>> j = Joiner()
    >>> p = Pending("d1", "u1", deadline=10.0, variant="default", phi=np.zeros(2),
    ...             propensity=0.5, item_id="i1")
    >>> j.add(p)
    >>> [x.decision_id for x in j.expire(now=5.0)], [x.decision_id for x in j.expire(now=11.0)]
    ([], ['d1'])
    """

    _pending: dict[str, Pending] = field(default_factory=dict)
    _heap: list[tuple[float, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, pending: Pending) -> None:
        self._pending[pending.decision_id] = pending
        heapq.heappush(self._heap, (pending.deadline, pending.decision_id))
        if len(self._heap) > 2 * len(self._pending) + 1024:
            # joined decisions leave their entries behind until their deadline: drop them
            # all at once, so the heap holds at most about twice the pending decisions
            # (expiry order is unchanged: live entries sort as before)
            self._heap = [(p.deadline, p.decision_id) for p in self._pending.values()]
            heapq.heapify(self._heap)

    def pop(self, decision_id: str) -> Pending | None:
        return self._pending.pop(decision_id, None)

    def expire(self, now: float) -> list[Pending]:
        """Remove and return pending decisions whose window closed before ``now``."""
        out = []
        heap = self._heap
        while heap and heap[0][0] < now:
            _, did = heapq.heappop(heap)
            pending = self._pending.pop(did, None)
            if pending is not None:  # None: joined or forgotten already
                out.append(pending)
        return out

    def drop_user(self, user_id: str) -> int:
        gone = [d for d, p in self._pending.items() if p.user_id == user_id]
        for d in gone:
            del self._pending[d]
        return len(gone)
