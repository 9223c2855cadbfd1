"""Personalizer's rank/reward/activate over an :class:`~engine.engine.Engine`.

A request's JSON features become hashed item features (:class:`JsonFeatures`, the engine's
``item_features`` slots) and go through :meth:`Engine.rank` like any other request, so the
profile of the user found at ``user_path`` in the context joins them (its interests in the
actions' categories, its engagement). Multi-slot: one decision per slot, in slot order, each
over the actions not yet placed, with its own id ``eventId/slotId``, probability and reward.

Learning modes (:class:`ServiceSettings`): ``Online`` decides by the policy; ``Apprentice``
returns the application's baseline (the first action, or a slot's ``baselineAction``),
logged with propensity 1, and learns from its rewards while :class:`Apprentice` counts how
often the policy's own first choice matches it; ``Inference`` returns the policy's best
and learns nothing. A deferred event (``deferActivation``) is taken off the wait list until
activated: never activated, it learns nothing (a reward for it is recorded as late).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, deque

import numpy as np

from engine.decide import GREEDY
from engine.decisions import new_decision_id
from engine.errors import UnknownDecisionError, ValidationError
from engine.jsonfeatures import JsonFeatures
from engine.personalizer_settings import ServiceSettings
from engine.recovery import pending_of
from engine.serve.schemas import http_field

ANONYMOUS = "anonymous"  # the user of requests without a user id in their context
_KEPT = 100_000  # deferred events and apprentice matches kept in memory at most


class Apprentice:
    """Match rate and reward achievement over the last ``window`` rewarded events.

    The baseline is logged with propensity 1, so the policy's reward on an event is known
    only where its first choice matches the baseline: its estimate (IPS) is the sum of the
    matched events' rewards, and reward achievement is that over the baseline's reward.

    Examples
    --------
    >>> a = Apprentice(window=4)
    >>> for match, reward in [(True, 1.0), (False, 1.0), (True, 0.0), (True, 1.0)]:
    ...     a.add(match, reward)
    >>> r = a.report()
    >>> r["matchRate"], round(r["rewardAchievement"], 3)
    (0.75, 0.667)
    """

    def __init__(self, window: int = 1000):
        self.window = window
        self._events: deque[tuple[bool, float]] = deque(maxlen=window)
        self.total = 0

    def add(self, match: bool, reward: float) -> None:
        self._events.append((match, reward))
        self.total += 1

    def report(self) -> dict:
        n = len(self._events)
        baseline = sum(r for _, r in self._events)
        policy = sum(r for m, r in self._events if m)
        return {"events": n, "window": self.window, "rewardedEvents": self.total,
                "matchRate": sum(m for m, _ in self._events) / n if n else None,
                "baselineReward": baseline / n if n else None,
                "policyRewardEstimate": policy / n if n else None,
                "rewardAchievement": policy / baseline if baseline > 0 else None}


class Personalizer:
    """Personalizer's API over an engine whose ``item_features`` is the hashed width.

    Parameters
    ----------
    engine
        The engine (``item_features`` > 0: the slots of the hashed JSON features).
    user_path
        Dotted path of the user id in the context objects (``None``: never looked for).
    apprentice_window
        Rewarded events the apprentice report covers.

    Examples
    --------
    >>> from engine import Engine
    >>> eng = Engine(item_features=32, seed=0, clock=lambda: 100.0)
    >>> p = Personalizer(eng)
    >>> out = p.rank({"contextFeatures": [{"user": {"id": "u1"}, "device": "mobile"}],
    ...               "actions": [{"id": "a", "features": [{"genre": "jazz"}]},
    ...                           {"id": "b", "features": [{"genre": "rock", "new": True}]}]})
    >>> sorted(a["id"] for a in out["ranking"]), out["rewardActionId"] in ("a", "b")
    (['a', 'b'], True)
    >>> p.reward(out["eventId"], 1.0)
    >>> eng.close()
    """

    def __init__(self, engine, user_path: str | None = "user.id", apprentice_window: int = 1000):
        self.engine = engine
        self.user_path = user_path
        width = engine.featurizer.item_features
        self.features = JsonFeatures(width) if width else None
        self.apprentice = Apprentice(apprentice_window)
        self._deferred: OrderedDict[str, object] = OrderedDict()  # id -> its Pending
        self._matches: OrderedDict[str, bool] = OrderedDict()  # apprentice id -> match
        self._slots: OrderedDict[str, list[str]] = OrderedDict()  # event -> slot ids
        self.settings = ServiceSettings(reward_wait_time=engine.config.wait_window,
                                        default_reward=engine.config.default_reward)
        self.configure(self.settings)

    # ---- settings --------------------------------------------------------------------
    def configure(self, settings: ServiceSettings) -> ServiceSettings:
        """Apply settings: the wait time and exploration to new decisions, the default
        reward to windows closing from now on, the log retention to the engine's retention
        schedule (``None``: the engine's own ``retention_days``)."""
        low, high = self.engine.limits.reward_range
        if not low <= settings.default_reward <= high:
            raise ValidationError("defaultReward", f"must be within the engine's reward "
                                  f"range [{low:g}, {high:g}]", settings.default_reward)
        self.engine.decider.wait_window = settings.reward_wait_time
        self.engine.decider.explore = settings.exploration_percentage
        self.engine.joiner.default_reward = settings.default_reward
        days = settings.log_retention_days
        self.engine.set_retention(self.engine.config.retention_days if days is None else days)
        self.settings = settings
        return settings

    # ---- rank ------------------------------------------------------------------------
    def rank(self, body: dict) -> dict:
        """A single-slot rank (Personalizer's ``RankRequest`` as a dict); its response."""
        actions = body["actions"]
        excluded = set(body.get("excludedActions") or ())
        kept = [i for i, a in enumerate(actions) if a["id"] not in excluded]
        if not kept:
            raise ValidationError("excludedActions", "excludes every action; nothing is left")
        context = body.get("contextFeatures")
        d, match = self._decide(context, actions, kept, body.get("eventId"))
        self._after(d.decision_id, match, bool(body.get("deferActivation")))
        shown = dict(zip(d.candidate_ids, self._shown(d), strict=True))
        ranking = [{"id": i, "probability": shown[i]} for i in d.ranking]
        ranking += [{"id": a["id"], "probability": 0.0} for a in actions if a["id"] in excluded]
        return {"ranking": ranking, "eventId": d.decision_id, "rewardActionId": d.chosen}

    def multislot_rank(self, body: dict) -> dict:
        """A multi-slot rank: each slot, in order, over the actions not yet placed."""
        actions, slots = body["actions"], body["slots"]
        event_id = body.get("eventId") or new_decision_id()
        ids = [a["id"] for a in actions]
        if len(set(ids)) != len(ids):
            raise ValidationError("actions", "action ids must be unique")
        if len({s["id"] for s in slots}) != len(slots):
            raise ValidationError("slots", "slot ids must be unique")
        if len(slots) > len(actions):
            raise ValidationError("slots", f"more slots ({len(slots)}) than actions "
                                  f"({len(actions)})")
        if event_id in self._slots or self.engine.store.has_decision(f"{event_id}/{slots[0]['id']}"):
            raise ValidationError("eventId", "is already in use", event_id)
        self._check_slots(slots, ids)
        placed: set[str] = set()
        out, decisions = [], []
        for slot in slots:
            gone = placed | set(slot.get("excludedActions") or ())
            kept = [i for i, a in enumerate(actions) if a["id"] not in gone]
            base = ids.index(slot["baselineAction"])
            if base in kept:  # the baseline first: apprentice mode shows it
                kept.remove(base)
                kept.insert(0, base)
            context = [*(body.get("contextFeatures") or ()),
                       {"slot": {"id": slot["id"], "features": slot.get("features") or []}}]
            d, match = self._decide(context, actions, kept, f"{event_id}/{slot['id']}")
            placed.add(d.chosen)
            decisions.append((d, match and ids[kept[0]] == slot["baselineAction"]))
            out.append({"id": slot["id"], "rewardActionId": d.chosen})
        self._remember(self._slots, event_id, [slot["id"] for slot in slots])
        for d, match in decisions:
            self._after(d.decision_id, match, bool(body.get("deferActivation")))
        return {"slots": out, "eventId": event_id}

    def _check_slots(self, slots: list[dict], ids: list[str]) -> None:
        """What can be checked before any slot is decided (nothing is logged for a bad
        request): baselines are distinct action ids, not excluded from their slots; each
        slot has an action left whatever the earlier slots took; slot features."""
        bases = [slot["baselineAction"] for slot in slots]
        for s, (slot, base) in enumerate(zip(slots, bases, strict=True)):
            where = f"slots[{s}]"
            excluded = set(slot.get("excludedActions") or ())
            why = ("is not an action's id" if base not in ids
                   else "is excluded from its slot" if base in excluded
                   else "is an earlier slot's baseline; each slot needs its own"
                   if base in bases[:s] else None)
            if why is not None:
                raise ValidationError(f"{where}.baselineAction", why, base)
            if len(set(ids) - excluded) <= s:
                raise ValidationError(f"{where}.excludedActions", "leaves no action for "
                                      "this slot once the earlier slots are filled")
            if self.features is not None:
                self.features.flatten(slot.get("features"), f"{where}.features")

    def _decide(self, context, actions: list, kept: list[int], event_id: str | None):
        """One decision over ``actions[kept]``: (the engine's decision, whether the
        policy's first choice is the baseline ``actions[kept[0]]``)."""
        if self.features is None:
            raise ValidationError("engine.item_features", "must be > 0 to serve "
                                  "Personalizer requests: it is the width of the hashed JSON "
                                  "features (64 or more, say)")
        vectors = self.features.vectors(context, [actions[i].get("features") for i in kept],
                                        action_where=[f"actions[{i}].features" for i in kept])
        candidates = [{"id": actions[i]["id"], "features": vectors[k].tolist(),
                       "topics": JsonFeatures.categories(actions[i].get("features"))}
                      for k, i in enumerate(kept)]
        user = JsonFeatures.user_id(context, self.user_path) or ANONYMOUS
        mode = self.settings.learning_mode
        choose = 0 if mode == "Apprentice" else GREEDY if mode == "Inference" else None
        try:
            d = self.engine.rank(user, candidates, None, decision_id=event_id, choose=choose)
        except ValidationError as exc:  # the engine's names in the body's terms
            raise ValidationError(http_field(exc.field, kept, {}), exc.reason,
                                  exc.value) from None
        return d, int(np.argmax(d.probabilities)) == 0

    def _after(self, decision_id: str, match: bool, defer: bool) -> None:
        """Mode and activation bookkeeping of a new decision."""
        mode = self.settings.learning_mode
        if mode == "Inference":  # never awaited: its reward is recorded, not learned
            self.engine.joiner.waiting.pop(decision_id)
            return
        if mode == "Apprentice":
            self._remember(self._matches, decision_id, match)
        if defer:  # off the wait list, and so marked in the log: a restart keeps it off
            self._remember(self._deferred, decision_id,
                           self.engine.joiner.waiting.pop(decision_id))
            self.engine.store.record_rewards((), [(None, "deferred", decision_id)])

    @staticmethod
    def _shown(d) -> list[float]:
        """The probability each candidate was shown with: the policy's, or 1 for a choice
        made outside it (apprentice, inference)."""
        if d.propensity == 1.0 and d.probabilities[d.candidate_ids.index(d.chosen)] != 1.0:
            return [1.0 if i == d.chosen else 0.0 for i in d.candidate_ids]
        return d.probabilities

    # ---- rewards and activation ------------------------------------------------------
    def reward(self, event_id: str, value: float) -> None:
        """The reward of a single-slot event (recorded, not learned, when the event is
        deferred and not activated)."""
        self._reward([(event_id, value)])

    def multislot_reward(self, event_id: str, rewards: list[dict]) -> None:
        """Per-slot rewards ``[{"slotId", "value"}]`` of a multi-slot event."""
        slots = self._slot_ids(event_id)
        for i, r in enumerate(rewards):
            if r["slotId"] not in slots:
                raise ValidationError(f"reward[{i}].slotId", "is not a slot of this event",
                                      r["slotId"])
        self._reward([(f"{event_id}/{r['slotId']}", r["value"]) for r in rewards])

    def _reward(self, pairs: list[tuple[str, float]]) -> None:
        try:
            results = self.engine.reward_batch([(d, float(v)) for d, v in pairs])
        except ValidationError as exc:  # rewards[i].value: the body's reward[i].value
            field = exc.field.replace("rewards[", "reward[", 1)
            raise ValidationError(field, exc.reason, exc.value) from None
        for r in results:
            match = self._matches.pop(r.decision_id, None)
            if match is not None and r.learned:
                self.apprentice.add(match, r.value)

    def multislot_activate(self, event_id: str) -> None:
        for slot in self._slot_ids(event_id):
            self.activate(f"{event_id}/{slot}")

    def activate(self, decision_id: str) -> None:
        """The event was shown: it now awaits its reward for the reward wait time."""
        store = self.engine.store
        pending = self._deferred.pop(decision_id, None)
        if pending is None and decision_id not in self.engine.joiner.waiting:
            row = store.decision(decision_id)  # deferred before a restart: its row says so
            if row is not None and row["status"] == "deferred":
                pending = pending_of(row)
        known = decision_id in self.engine.joiner.waiting \
            or store.has_decision(decision_id)  # (not if its user was forgotten)
        if not known:
            raise UnknownDecisionError(f"eventId: no event {decision_id!r}")
        if pending is None:  # not deferred, or activated already: nothing to do
            return
        deadline = float(self.engine.clock()) + self.settings.reward_wait_time
        store.record_rewards((), [(None, "pending", decision_id)])
        self.engine.joiner.waiting.add(dataclasses.replace(pending, deadline=deadline))

    def _slot_ids(self, event_id: str) -> list[str]:
        slots = self._slots.get(event_id)
        if slots is None:
            raise UnknownDecisionError(f"eventId: no multi-slot event {event_id!r}")
        return slots

    # ---- helpers ---------------------------------------------------------------------
    @staticmethod
    def _remember(kept: OrderedDict, key: str, value: object) -> None:
        kept[key] = value
        if len(kept) > _KEPT:
            kept.popitem(last=False)

