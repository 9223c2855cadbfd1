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

Sessions survive a restart: every snapshot keeps :meth:`Sessions.state`, and recovery
rebuilds it from that and the tail of the logs (:func:`engine.recovery.replay_sessions`).
"""

from __future__ import annotations

import heapq
import math
from itertools import count

import numpy as np

#: Names of the session features a profile adds to the user features when
#: ``ProfileConfig.session_features`` is on (all 0 outside an open session): decisions
#: rewarded, clicks and reward total so far in the session (each times 0.1), and
#: ``log(1 + seconds since the session started / session_gap)``.
SESSION_FEATURES = ("session_steps", "session_clicks", "session_reward", "session_age")


def session_vector(session: list | None, last_ts: float | None, now: float, gap: float
                   ) -> np.ndarray:
    """The :data:`SESSION_FEATURES` of a profile's ``session`` record (``[start, events,
    clicks, rewards, reward total, ended]``) at ``now``; zeros when it is ended or more
    than ``gap`` seconds passed since the user's last event ``last_ts``.

    The satisfaction that keeps a user in a session is never observed, but what the user
    did in it (how many decisions, clicks, and the reward they brought) is its trace.

    Examples
    --------
    >>> session_vector([0.0, 5, 2, 3, 1.5, False], 60.0, 100.0, 1800.0).round(4).tolist()
    [0.3, 0.2, 0.15, 0.0541]
    >>> session_vector([0.0, 5, 2, 3, 1.5, True], 60.0, 100.0, 1800.0).tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    if session is None or session[5] or last_ts is None or now - last_ts > gap:
        return np.zeros(len(SESSION_FEATURES))
    age = math.log1p(max(0.0, now - session[0]) / gap)
    return np.array([0.1 * session[3], 0.1 * session[2], 0.1 * session[4], age])


class Step:
    """One decision awaiting its reward and what followed it."""

    __slots__ = ("decision_id", "user_id", "variant", "ts", "phi", "propensity", "candidates",
                 "reward", "seq", "next", "next_id", "done")

    def __init__(self, decision_id: str, user_id: str, variant: str, ts: float,
                 phi: np.ndarray, propensity: float, candidates: np.ndarray):
        self.decision_id, self.user_id, self.variant, self.ts = decision_id, user_id, variant, ts
        self.phi, self.propensity = phi, propensity
        self.candidates = candidates  # (K, D): the next state of the decision before it
        self.reward: float | None = None
        self.seq = 0
        self.next: np.ndarray | None = None
        self.next_id: str | None = None  # the decision that followed (its row: self.next)
        self.done: bool | None = None


class SessionTraces:
    """Per user, the open session's sum of ``0.1 * reward * item features`` of the chosen
    candidates: the session's exposure to each item attribute, weighted by how it was
    received (a trace of satisfaction that a profile's counts alone do not carry).

    A user's trace starts at zero with the first decision of a session (none within
    ``gap`` seconds before it) and ends with a ``session_end`` event. Item features count as
    the decision log keeps them (float32), so a trace rebuilt after a restart from the log
    (:func:`engine.recovery.replay_sessions`) is the one a run without the restart has.

    Examples
    --------
    >>> t = SessionTraces(gap=60.0, columns=slice(1, 3))
    >>> t.read("u1", now=0.0).tolist()
    [0.0, 0.0]
    >>> t.add("u1", np.array([1.0, 0.5, 2.0]), reward=1.0)
    >>> t.read("u1", now=30.0).tolist(), t.read("u1", now=200.0).tolist()
    ([0.05, 0.2], [0.0, 0.0])
    """

    def __init__(self, gap: float, columns: slice):
        self.gap, self.columns = gap, columns
        self._open: dict[str, list] = {}  # user id -> [last decision ts, trace]
        self._prune_at = 1024

    def read(self, uid: str, now: float) -> np.ndarray:
        """The user's trace before a decision at ``now`` (a new session's: zeros)."""
        entry = self._open.get(uid)
        if entry is None or now - entry[0] > self.gap:
            size = self.columns.stop - self.columns.start
            entry = self._open[uid] = [now, np.zeros(size)]
            if len(self._open) >= self._prune_at:
                self._prune(now)
        entry[0] = now
        return entry[1].copy()

    def add(self, uid: str, phi: np.ndarray, reward: float) -> None:
        """A decision's reward, ``phi`` (D,) its chosen candidate's features."""
        entry = self._open.get(uid)
        if entry is not None:
            entry[1] += (0.1 * reward) * phi[self.columns].astype(np.float32).astype(float)

    def end(self, uid: str) -> None:
        self._open.pop(uid, None)

    def state(self) -> list:
        """``[[user id, last decision ts, trace], ...]`` (JSON-ready; :meth:`restore`)."""
        return [[uid, ts, trace.tolist()] for uid, (ts, trace) in self._open.items()]

    def restore(self, entries: list) -> None:
        self._open = {uid: [ts, np.array(trace, dtype=float)] for uid, ts, trace in entries}

    def _prune(self, now: float) -> None:
        """Drop the traces of sessions whose gap passed (amortized: when the table
        doubles)."""
        self._open = {u: e for u, e in self._open.items() if now - e[0] <= self.gap}
        self._prune_at = max(1024, 2 * len(self._open))


class Sessions:
    """Tracks open decisions of RL variants per user and completes their transitions;
    with ``trace_columns``, also every user's :class:`SessionTraces`.

    Parameters
    ----------
    learners
        ``{variant: learner}``; variants whose policy has ``learn_transitions`` and whose
        learner has ``add_transition`` learn transitions (:attr:`variants`).
    gap
        ``session_gap``: seconds after a decision within which the next one continues the
        session.
    trace_columns
        The item features' columns in ``phi`` (``Featurizer.item_columns``) when the
        features carry session traces, else ``None``.
    """

    def __init__(self, learners: dict, gap: float, trace_columns: slice | None = None):
        self.learners = learners
        self.gap = gap
        self.traces = None if trace_columns is None else SessionTraces(gap, trace_columns)
        self.variants = frozenset(
            name for name, lrn in learners.items()
            if hasattr(getattr(lrn, "policy", None), "learn_transitions")
            and hasattr(lrn, "add_transition"))
        self._steps: dict[str, Step] = {}  # decision id -> step not yet handed on
        self.reward_mark = 0  # the seq after the last reward learned (engine.recovery)
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
        # the features as the decision log keeps them (float32): a replay learns the same
        step = Step(decision_id, uid, variant, now, np.asarray(phi, np.float32), propensity,
                    np.asarray(candidates, np.float32))
        prev = self._last.get(uid)
        if prev is not None:
            follows = now - prev.ts <= self.gap
            prev.next_id = decision_id if follows else None
            self._follow(prev, step.candidates if follows else None)
        self._open_step(step)

    def _open_step(self, step: Step) -> None:
        """``step`` becomes its user's open decision."""
        self._steps[step.decision_id] = step
        self._last[step.user_id] = step
        heapq.heappush(self._heap, (step.ts + self.gap, next(self._order), step.decision_id))

    def learned(self, p, value: float, seq: int) -> bool:
        """A decision ``p`` (:class:`~engine.decisions.Pending`) learned ``value`` (joined or
        the default): into its user's trace, and into its transition; False when its
        variant learns no transitions (the caller hands it to the learner)."""
        self.reward_mark = seq + 1
        if self.traces is not None:
            self.traces.add(p.user_id, p.phi, value)
        if p.variant not in self.variants:
            return False
        self.rewarded(p.decision_id, value, seq)
        return True

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
        if self.traces is not None:
            self.traces.end(uid)

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
        if self.traces is not None:
            self.traces.end(uid)
        for did in [d for d, s in self._steps.items() if s.user_id == uid]:
            del self._steps[did]

    def state(self) -> dict:
        """The open sessions, JSON-ready, for :func:`engine.recovery.save`: each step
        not yet handed on by its decision id (its features are in the decision log), and the
        traces."""
        steps = [[s.decision_id, s.user_id, s.variant, s.ts, s.reward, s.seq, s.next_id, s.done]
                 for s in self._steps.values()]
        return {"steps": steps, "traces": None if self.traces is None else self.traces.state()}

    def restore(self, state: dict, logged) -> None:
        """The open sessions :meth:`state` kept; ``logged(decision_id)``: the decision's
        candidates' logged features (K, D), chosen index and propensity, or None where it
        is gone (its user forgotten)."""
        for did, uid, variant, ts, reward, seq, next_id, done in state["steps"]:
            row = logged(did)
            nxt = None if next_id is None else logged(next_id)
            if row is None or (next_id is not None and nxt is None) or variant not in self.variants:
                continue
            cands, chosen, propensity = row
            step = Step(did, uid, variant, ts, cands[chosen], propensity, cands)
            step.reward, step.seq, step.done, step.next_id = reward, seq, done, next_id
            step.next = None if nxt is None else nxt[0]
            if done is None:
                self._open_step(step)
            else:
                self._steps[did] = step
        if self.traces is not None and state["traces"] is not None:
            self.traces.restore(state["traces"])

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
