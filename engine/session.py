"""Sessions: consecutive decisions of one user turned into transitions for RL policies.

A user's session ends when more than ``session_gap`` seconds (engine clock) pass after a
decision without another, or when a ``session_end`` event of the user is ingested. Each
decision of a variant whose policy has ``learn_transitions`` (and whose learner takes
transitions) becomes a :class:`Step`; it is handed to the learner once it has both

* its reward (joined, or the default when its wait window closed), and
* what followed: the same user's next decision's candidates (``done=False``) if it came
  within ``session_gap`` with no ``session_end`` between, else nothing (``done=True``).

Bandit variants never reach this module: the decide and join paths call it only when an
engine has an RL variant (:attr:`Sessions.variants` is not empty).
"""

from __future__ import annotations

import heapq
from itertools import count

import numpy as np


class Step:
    """One decision awaiting its reward and what followed it."""

    __slots__ = ("decision_id", "user_id", "variant", "ts", "phi", "propensity", "candidates",
                 "reward", "seq", "next", "done")

    def __init__(self, decision_id: str, user_id: str, variant: str, ts: float,
                 phi: np.ndarray, propensity: float, candidates: np.ndarray):
        self.decision_id, self.user_id, self.variant, self.ts = decision_id, user_id, variant, ts
        self.phi, self.propensity = phi, propensity
        self.candidates = candidates  # (K, D): the next state of the decision before it
        self.reward: float | None = None
        self.seq = 0
        self.next: np.ndarray | None = None
        self.done: bool | None = None


class Sessions:
    """Tracks open decisions of RL variants per user and completes their transitions.

    Parameters
    ----------
    learners
        ``{variant: learner}``; variants whose policy has ``learn_transitions`` and whose
        learner has ``add_transition`` learn transitions (:attr:`variants`).
    gap
        ``session_gap``: seconds after a decision within which the next one continues the
        session.
    """

    def __init__(self, learners: dict, gap: float):
        self.learners = learners
        self.gap = gap
        self.variants = frozenset(
            name for name, lrn in learners.items()
            if hasattr(getattr(lrn, "policy", None), "learn_transitions")
            and hasattr(lrn, "add_transition"))
        self._steps: dict[str, Step] = {}  # decision id -> step not yet handed on
        self._last: dict[str, Step] = {}  # user id -> the user's open decision
        self._heap: list[tuple[float, int, str]] = []  # (ts + gap, order, decision id)
        self._order = count()

    def __len__(self) -> int:
        """Decisions whose transitions are not complete yet."""
        return len(self._steps)

    def __contains__(self, decision_id: str) -> bool:
        return decision_id in self._steps

    def decided(self, uid: str, variant: str, decision_id: str, phi: np.ndarray,
                propensity: float, candidates: np.ndarray, now: float) -> None:
        """A new decision of an RL variant: it continues (or not) the user's open decision.
        ``phi`` (D,) the chosen candidate, ``candidates`` (K, D) every candidate."""
        prev = self._last.get(uid)
        if prev is not None:
            self._follow(prev, candidates if now - prev.ts <= self.gap else None)
        step = Step(decision_id, uid, variant, now, phi, propensity, candidates)
        self._steps[decision_id] = step
        self._last[uid] = step
        heapq.heappush(self._heap, (now + self.gap, next(self._order), decision_id))

    def rewarded(self, decision_id: str, value: float, seq: int) -> None:
        """A decision's learned reward (joined or the default)."""
        step = self._steps.get(decision_id)
        if step is None:
            return
        step.reward, step.seq = value, seq
        if step.done is not None:
            self._complete(step)

    def end(self, uid: str) -> None:
        """The user's session ended (a ``session_end`` event): its open decision is final."""
        prev = self._last.get(uid)
        if prev is not None:
            self._follow(prev, None)

    def expire(self, now: float) -> None:
        """Sessions whose gap passed before ``now`` end."""
        heap = self._heap
        while heap and heap[0][0] < now:
            did = heapq.heappop(heap)[2]
            step = self._steps.get(did)
            if step is not None and self._last.get(step.user_id) is step:
                self._follow(step, None)

    def drop_user(self, uid: str) -> None:
        """Forget the user's open decisions (nothing of them is learned)."""
        self._last.pop(uid, None)
        for did in [d for d, s in self._steps.items() if s.user_id == uid]:
            del self._steps[did]

    def _follow(self, step: Step, candidates: np.ndarray | None) -> None:
        """What followed ``step``: the next decision's candidates, or the session's end."""
        del self._last[step.user_id]
        step.next, step.done = candidates, candidates is None
        if step.reward is not None:
            self._complete(step)

    def _complete(self, step: Step) -> None:
        del self._steps[step.decision_id]
        self.learners[step.variant].add_transition(step.phi, step.reward, step.propensity,
                                                   step.next, step.done, step.seq)
