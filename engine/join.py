"""Where a reward is joined: decisions wait for their rewards within the wait window, a
missing reward becomes the default reward when the window closes, repeats are ignored and
late rewards are recorded as late, never learned twice. Learned rewards go to the
variant's learner; every first reward is also a behaviour event of the user.

One path serves :meth:`Engine.reward <engine.engine.Engine.reward>` (a batch of one) and
:meth:`Engine.reward_batch <engine.engine.Engine.reward_batch>`.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Mapping, Sequence
from itertools import count
from operator import attrgetter

from engine.checks import check_number, check_string, storable
from engine.decisions import Pending, RewardResult
from engine.errors import UnknownDecisionError, ValidationError
from engine.events import RESERVED_EVENT_ID_PREFIX, Event


class WaitList:
    """Pending decisions ordered by the time their wait window closes.

    Examples
    --------
    >>> import numpy as np
    >>> w = WaitList()
    >>> w.add(Pending("d1", "u1", deadline=10.0, variant="default", phi=np.zeros(2),
    ...               propensity=0.5, item_id="i1"))
    >>> [x.decision_id for x in w.expire(now=5.0)], [x.decision_id for x in w.expire(now=11.0)]
    ([], ['d1'])
    """

    def __init__(self) -> None:
        self._pending: dict[str, Pending] = {}
        # (deadline, order added, decision id): decisions due at the same time expire in
        # the order they were made, never in the order of their random ids (the default
        # rewards are learned in that order, so a seeded run learns alike every time)
        self._heap: list[tuple[float, int, str]] = []
        self._added = count()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, decision_id: str) -> bool:
        return decision_id in self._pending

    def get(self, decision_id: str) -> Pending | None:
        return self._pending.get(decision_id)

    def add(self, pending: Pending) -> None:
        self._pending[pending.decision_id] = pending
        heapq.heappush(self._heap, (pending.deadline, next(self._added), pending.decision_id))
        if len(self._heap) > 2 * len(self._pending) + 1024:
            # joined decisions leave their entries behind until their deadline: drop them
            # all at once, so the heap holds at most about twice the pending decisions
            # (expiry order is unchanged: live entries sort as before, the dict keeps the
            # order they were added in)
            self._heap = [(p.deadline, i, p.decision_id)
                          for i, p in enumerate(self._pending.values())]
            heapq.heapify(self._heap)
            self._added = count(len(self._heap))

    def pop(self, decision_id: str) -> Pending | None:
        return self._pending.pop(decision_id, None)

    def expire(self, now: float) -> list[Pending]:
        """Remove and return pending decisions whose window closed before ``now``."""
        out = []
        heap = self._heap
        while heap and heap[0][0] < now:
            did = heapq.heappop(heap)[2]
            pending = self._pending.pop(did, None)
            if pending is not None:  # None: joined or forgotten already
                out.append(pending)
        return out

    def drop_user(self, user_id: str) -> int:
        gone = [d for d, p in self._pending.items() if p.user_id == user_id]
        for d in gone:
            del self._pending[d]
        return len(gone)


class Joiner:
    """Joins rewards to waiting decisions, records them durably and hands learned ones to
    the variants' learners.

    Parameters
    ----------
    store
        The durable store (reward rows, settled decisions, reward events).
    learners
        ``{variant: learner}``.
    shard_of
        The router's map from user id to shard (for the reward events).
    apply_events
        Applies logged events to the profiles: ``apply_events(events, shards, seqs)``.
    default_reward
        Learned in place of a reward that did not come within the window.
    reward_range
        ``(low, high)`` of the rewards accepted.
    """

    def __init__(self, store, learners: dict, shard_of: Callable[[str], int],
                 apply_events: Callable, default_reward: float,
                 reward_range: tuple[float, float]):
        self.store = store
        self.learners = learners
        self.shard_of = shard_of
        self.apply_events = apply_events
        self.default_reward = default_reward
        self.reward_range = reward_range
        self.waiting = WaitList()
        self.sessions = None  # engine.session.Sessions when a variant learns transitions
        self.rollout = None  # engine.rollout.Rollout: sees every learned reward

    def __len__(self) -> int:
        """Decisions waiting for their rewards."""
        return len(self.waiting)

    def check(self, rewards: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
        """``[(decision_id, value), ...]`` checked (a batch of one names ``decision_id``
        and ``value``, a longer one ``rewards[i].decision_id``), values as floats."""
        if type(rewards) is not list and (isinstance(rewards, (str, bytes, Mapping))
                                          or not isinstance(rewards, Sequence)):
            raise ValidationError("rewards", "must be a list of (decision_id, value) pairs", rewards)
        checked = []
        low, high = self.reward_range  # finite (engine.events.Limits)
        waiting = self.waiting._pending  # ids this engine issued: valid strings
        for i, pair in enumerate(rewards):
            if type(pair) is not tuple and not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValidationError(f"rewards[{i}]", "must be a (decision_id, value) pair", pair)
            did, value = pair
            if type(value) is float and low <= value <= high and type(did) is str \
                    and (did in waiting or storable(did)):
                checked.append(pair if type(pair) is tuple else (did, value))  # (NaN fails)
                continue
            where = "" if len(rewards) == 1 else f"rewards[{i}]."
            check_string(did, f"{where}decision_id")
            checked.append((did, check_number(f"{where}value", value, low, high)))
        return checked

    def slot_rewards(self, decision_id: str, value, slot: int | None
                     ) -> list[tuple[str, float]]:
        """Per-slot rewards of a slate checked as ``(slot's decision id, value)`` pairs:
        ``value`` a list (one reward per slot, in slot order), or one value for ``slot``.
        The first per-slot reward of a decision still in its window logs its later slots as
        decisions of their own (:func:`engine.decide.slot_id`), each awaiting its reward
        (the default one when the window closes) and learned with its own propensity."""
        from engine.decide import slot_id

        check_string(decision_id, "decision_id")
        parent = self.waiting.get(decision_id)
        n = self._n_slots(decision_id, parent)
        if isinstance(value, (list, tuple)):
            if slot is not None:
                raise ValidationError("slot", "leave it out when value lists a reward per slot",
                                      slot)
            if len(value) != n:
                raise ValidationError("value", f"must list one reward per slot ({n})", value)
            pairs = [(slot_id(decision_id, i), v) for i, v in enumerate(value)]
        else:
            if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < n:
                raise ValidationError("slot", f"must be a slot of the decision, 0 to {n - 1}",
                                      slot)
            pairs = [(slot_id(decision_id, slot), value)]
        checked = self.check(pairs) if len(pairs) > 1 else \
            [(pairs[0][0], check_number("value", pairs[0][1], *self.reward_range))]
        if parent is not None and parent.slots:
            self._await_slots(parent)
        else:
            for sid, _ in checked:
                if sid != decision_id and sid not in self.waiting \
                        and not self.store.has_decision(sid):
                    raise ValidationError("slot", "the later slots of this slate take no reward "
                                          "of their own: its window closed, or its reward was "
                                          "reported without a slot, before any per-slot reward",
                                          sid)
        return checked

    def _n_slots(self, decision_id: str, parent: Pending | None) -> int:
        if parent is not None and parent.slots:
            return 1 + len(parent.slots)
        row = self.store.decision(decision_id)
        if row is None:
            raise UnknownDecisionError(f"decision_id: no decision {decision_id!r} was issued by "
                                       "this engine (or its user was forgotten)")
        return max(1, len(row["slot_probabilities"] or b"") // 8)

    def _await_slots(self, parent: Pending) -> None:
        """Log a slate's later slots as decisions and await their rewards."""
        if self.sessions is not None and parent.variant in self.sessions.variants:
            raise ValidationError("slot", "per-slot rewards are not taken by a variant that "
                                  "learns transitions; report the slate's reward", None)
        for p, _ in parent.slots:
            if p.decision_id in self.waiting or self.store.has_decision(p.decision_id):
                raise ValidationError("decision_id", f"a slot's id {p.decision_id!r} is "
                                      "already another decision's", parent.decision_id)
        self.store.insert_decisions([row for _, row in parent.slots])
        for p, _ in parent.slots:
            self.waiting.add(p)
        parent.slots = None

    def record(self, checked: list[tuple[str, float]], now: float) -> list[RewardResult]:
        """Join, record and learn checked rewards in one durable write; an unknown decision
        id raises :class:`UnknownDecisionError` before anything is recorded."""
        joined, others = self._split(checked)
        events, rows, settle = [], [], []
        for p, v in joined:
            did = p.decision_id
            events.append(_reward_event(p.user_id, did, p.item_id, p.topics, p.tags, v, now))
            rows.append((did, p.user_id, v, now, "joined"))
            settle.append((v, "joined", did))
        late_rows = self._settle_others(others, events, now) if others else []
        # one durable write for the whole call: reward rows, settled decisions, and the
        # reward events (unique by construction: one per joined or first-late reward)
        shards = [*map(self.shard_of, map(_USER_ID, events))]
        seqs, event_seqs = self.store.record_rewards(
            rows + [r for r in late_rows if r[1]] if late_rows else rows, settle, events, shards)
        self.apply_events(events, shards, event_seqs)
        unwait, learners, results = self.waiting.pop, self.learners, []
        if self.sessions is None:
            for (p, v), seq in zip(joined, seqs, strict=False):  # (joined rows come first)
                unwait(p.decision_id)
                learners[p.variant].add(p.phi, v, p.propensity, seq)
                results.append(RewardResult(p.decision_id, "joined", v, True))
        else:
            for (p, v), seq in zip(joined, seqs, strict=False):
                unwait(p.decision_id)
                self._learn(p, v, seq)
                results.append(RewardResult(p.decision_id, "joined", v, True))
        if self.rollout is not None and joined:
            self.rollout.observe(joined, seqs, now)
        if not others:  # every reward joined: the results in request order
            return results
        by_id = {r.decision_id: r for r in results}
        late_iter = iter(late_rows)
        results = []
        for did, value in checked:
            if did in by_id:
                results.append(by_id.pop(did))
            else:
                results.append(RewardResult(did, next(late_iter)[4], value, False))
        return results

    def _split(self, checked: list[tuple[str, float]]) -> tuple[list, list]:
        """(pending decisions joined with their values, the others with their logged rows):
        a decision's second reward in one call counts as a repeat of its first."""
        joined, others = [], []
        if len(checked) == 1:  # (no repeat within the call)
            did, value = checked[0]
            pending = self.waiting._pending.get(did)
            if pending is not None:
                joined.append((pending, value))
                return joined, others
        seen: set[str] = set()
        get = self.waiting.get
        for did, value in checked:
            pending = None if did in seen else get(did)
            if pending is not None:
                joined.append((pending, value))
            else:
                row = self.store.decision(did) if did not in seen else {"status": "joined"}
                if row is None:
                    raise UnknownDecisionError(f"decision_id: no decision {did!r} was issued by "
                                               "this engine (or its user was forgotten)")
                others.append((did, value, row))
            seen.add(did)
        return joined, others

    def _settle_others(self, others: list, events: list[Event], now: float) -> list[tuple]:
        """Rows of rewards for decisions no longer waiting: ``"duplicate"`` where the
        decision already had its reward (or a late one), else ``"late"``, whose reward
        event is appended to ``events`` (recorded, not learned)."""
        late_rows: list[tuple] = []
        for did, value, row in others:
            status = "duplicate" if row["status"] in ("joined", "late") else "late"
            if status == "late" and (self.store.has_late_reward(did)
                                     or any(r[0] == did for r in late_rows)):
                status = "duplicate"
            late_rows.append((did, row.get("user_id", ""), value, now, status))
            if status == "late":
                item = json.loads(row["chosen_meta"])
                events.append(_reward_event(row["user_id"], did, item["id"], item["topics"],
                                            item["tags"], value, now))
        return late_rows

    def expire(self, now: float) -> None:
        """Learn the default reward for every decision whose window closed before ``now``."""
        heap = self.waiting._heap
        if not heap or heap[0][0] >= now:  # nothing is due (the common case)
            return
        expired = self.waiting.expire(now)
        default = self.default_reward
        rows = [(p.decision_id, p.user_id, default, now, "default") for p in expired]
        settle = [(default, "default", p.decision_id) for p in expired]
        seqs, _ = self.store.record_rewards(rows, settle)
        if self.sessions is None:
            for p, seq in zip(expired, seqs, strict=True):
                self.learners[p.variant].add(p.phi, default, p.propensity, seq)
        else:
            for p, seq in zip(expired, seqs, strict=True):
                self._learn(p, default, seq)
        if self.rollout is not None:
            self.rollout.observe([(p, default) for p in expired], seqs, now)

    def _learn(self, p: Pending, value: float, seq: int) -> None:
        """A learned reward: to its session's transition for an RL variant (see
        :mod:`engine.session`), else to the variant's learner as a bandit record."""
        if not self.sessions.learned(p, value, seq):
            self.learners[p.variant].add(p.phi, value, p.propensity, seq)


_USER_ID = attrgetter("user_id")


def _reward_event(user_id: str, decision_id: str, item_id: str, topics, tags, value: float,
                  now: float) -> Event:
    """A reward is also a behaviour event of the user (de-duplicated by its event id).

    Built directly: every field comes from a checked request or decision."""
    return Event(user_id, "reward", now, item_id, value, tuple(topics), tuple(tags),
                 None, None, RESERVED_EVENT_ID_PREFIX + decision_id)
