"""The Engine: the embedded decision service, read as the loop it runs.

Events in (:meth:`Engine.ingest`), decisions out (:meth:`Engine.rank`, made by
:class:`engine.decide.Decider`), rewards joined and learned (:meth:`Engine.reward`,
:class:`engine.join.Joiner`); :mod:`engine.recovery` brings it back after a restart.
Its settings are one :class:`engine.config.EngineConfig`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engine import recovery
from engine.abtest import VariantStats, ab_report
from engine.backends import open_backend
from engine.checks import check_int, check_string
from engine.config import EngineConfig
from engine.decide import Decider
from engine.decisions import Decision, RewardResult
from engine.errors import ValidationError
from engine.events import EventTypes, validate_events
from engine.featurizer import Featurizer
from engine.join import Joiner
from engine.learner import Learner, make_policies, open_learners
from engine.privacy import erase
from engine.privacy.minimal import for_storage
from engine.privacy.pseudonym import check_directory, open_pseudonyms
from engine.privacy.retention import Upkeep
from engine.rollout import CHALLENGER, open_rollout, save_rollout
from engine.router import Router
from engine.session import Sessions
from engine.store import Store


@dataclass
class IngestResult:
    """How many events one :meth:`Engine.ingest` call stored, and how many it ignored as
    duplicates of an ``event_id`` already in the log."""

    accepted: int
    duplicates: int


class Engine:
    """Live user profiles, decisions by a contextual-bandit policy, and learning from rewards.

    Parameters
    ----------
    data_dir
        Directory of the durable store (SQLite). ``None``: a temporary directory removed by
        :meth:`close` (nothing survives; for tests and simulations).
    config
        An :class:`~engine.config.EngineConfig` (``None``: the defaults).
    **settings
        Any :class:`~engine.config.EngineConfig` field by name (``policy="lints"``,
        ``item_features=8``, ``wait_window=60.0`` ...), on top of ``config``.

    Examples
    --------
    >>> eng = Engine(policy="lints", item_features=2, seed=0, clock=lambda: 100.0)
    >>> eng.ingest([{"user_id": "u1", "type": "click", "ts": 90.0, "item_id": "a",
    ...              "topics": ["jazz"]}])
    IngestResult(accepted=1, duplicates=0)
    >>> d = eng.rank("u1", [{"id": "a", "topics": ["jazz"], "features": [1.0, 0.0]},
    ...                     {"id": "b", "topics": ["rock"], "features": [0.0, 1.0]}])
    >>> d.chosen in ("a", "b"), round(sum(d.probabilities), 6)
    (True, 1.0)
    >>> eng.reward(d.decision_id, 1.0).status
    'joined'
    >>> eng.reward(d.decision_id, 1.0).status
    'duplicate'
    >>> eng.profile("u1")["engagement"]["events"]
    2
    >>> eng.close()
    """


    def __init__(self, data_dir: str | None = None, config: EngineConfig | None = None,
                 **settings):
        if config is None:
            config = EngineConfig(**settings)
        elif settings:
            config = dataclasses.replace(config, **settings)
        self.config = cfg = config
        self.clock = cfg.clock or time.time
        self.limits = cfg.limits
        self.event_types = EventTypes(custom=dict(cfg.event_types or {}))
        self.featurizer = Featurizer(cfg.item_features, cfg.context_features, cfg.max_candidates,
                                     cfg.profile.session_features)
        self.router = Router(cfg.shards)
        self._tmpdir = tempfile.mkdtemp(prefix="loopwise-") if data_dir is None else None
        self.data_dir = str(self._tmpdir if data_dir is None else data_dir)
        # the key is checked (outside the data directory, long enough) before the store opens
        self.pseudonyms = open_pseudonyms(cfg.pseudonym_key_file, self.data_dir)
        self.store = Store(self.data_dir, synchronous=cfg.synchronous)
        self.backend = None
        try:
            self._open(cfg)
        except BaseException:
            # a refused configuration must not keep the data directory locked
            if self.backend is not None:
                self.backend.close()
            self.store.close()
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise

    def _open(self, cfg: EngineConfig) -> None:
        """Check the data directory's settings, start shards and learners, wire the decide
        and join paths, and recover what the data directory holds."""
        policies = make_policies(cfg, self.featurizer.n_features)
        check_directory(self.store, self.pseudonyms)
        self.store.check_meta({
            "shards": cfg.shards,
            "n_features": self.featurizer.n_features,
            "feature_names": self.featurizer.feature_names,
            "variants": {k: {"policy": name, "params": params}
                         for k, (_, name, params) in policies.items()},
        })
        self.backend = open_backend(cfg, self.event_types, self.store)
        self.learners: dict[str, Learner] = open_learners(cfg, policies, self.store)
        self._weights = {k: float(v["weight"]) for k, v in cfg.variant_specs().items()}
        self._rng = np.random.default_rng(cfg.seed)
        self._since_snapshot = 0
        self._last_report: dict | None = None
        self.joiner = Joiner(self.store, self.learners, self.router.shard_of,
                             self._apply_logged, cfg.default_reward, self.limits.reward_range)
        self.decider = Decider(self.featurizer, self.router, self.backend, self.learners,
                               self._weights, cfg.salt, self.store, self.joiner.waiting,
                               self._rng, cfg.wait_window)
        traced = cfg.profile.session_features
        sessions = Sessions(self.learners, cfg.session_gap,
                            self.featurizer.item_columns if traced else None)
        self.sessions = sessions if sessions.variants or traced else None
        self._expire_plain = self.joiner.expire if self.sessions is None else self._expire_both
        self.joiner.sessions = self.decider.sessions = self.sessions
        self.decider.pseudonyms = self.pseudonyms
        self.rollout = None
        if cfg.rollout is not None:  # a challenger in shadow, or serving a share of users
            self.rollout = open_rollout(cfg, self.featurizer.n_features, self.store,
                                        self.data_dir, float(self.clock()))
            self.decider.rollout = self.joiner.rollout = self.rollout
            self.joiner.learners = {**self.learners, CHALLENGER: self.rollout.learner}
        else:  # decisions a past rollout's challenger served, still awaiting rewards after
            # a restart without it, are learned by the (first) variant, from their propensities
            self.joiner.learners = {CHALLENGER: next(iter(self.learners.values())),
                                    **self.learners}
        recovery.recover(self.store, self.backend, self.router.n_shards, self.joiner.waiting,
                         self.learners, self._rng, self.sessions)
        self.upkeep = Upkeep(self.store, cfg.retention_days, self.snapshot, self._learned_seq)
        if self.upkeep.window is not None:  # what aged out while the engine was closed
            now = float(self.clock())
            self._expire_plain(now)  # decisions whose window closed meanwhile settle first
            self.upkeep.retain(now)
        self._rewire()

    def _learned_seq(self) -> int:
        """The last reward seq that every policy (a rollout's challenger too) has saved."""
        learners = [*self.learners.values()]
        if self.rollout is not None:
            learners.append(self.rollout.learner)
        return min(lrn.learned_seq for lrn in learners)

    def set_retention(self, days: float | None) -> None:
        """Change the retention window while running (Personalizer's ``logRetentionDays``);
        a new window is applied at the next call."""
        self.upkeep.set_window(days)
        self._rewire()

    def _rewire(self) -> None:
        """The expiry path of every call: the plain one, or with the privacy chores."""
        self._expire = self._expire_upkeep if self.upkeep.active else self._expire_plain

    def _expire_upkeep(self, now: float) -> None:
        self._expire_plain(now)
        self.upkeep.tick(now)
        if not self.upkeep.active:
            self._rewire()

    # ---- events ----------------------------------------------------------------------
    def ingest(self, events: Sequence[Mapping]) -> IngestResult:
        """Validate, log durably, then apply events to profiles. All-or-nothing: if any event
        is invalid, nothing is stored. Events repeating a stored ``event_id`` are ignored."""
        now = float(self.clock())
        evs = for_storage(validate_events(events, self.event_types, self.limits, now),
                          self.pseudonyms, self.config.store_text)
        self.upkeep.check_events(evs, now)
        self._expire(now)
        if not evs:
            return IngestResult(0, 0)
        shard_of = self.router.shard_of
        shards = [shard_of(e.user_id) for e in evs]
        seqs = self.store.append_events(evs, shards)
        if self.sessions is not None:  # a logged session_end closes its user's session
            for e, seq in zip(evs, seqs, strict=True):
                if seq is not None and e.type == "session_end":
                    self.sessions.end(e.user_id)
        accepted = self._apply_logged(evs, shards, seqs)
        return IngestResult(accepted, len(evs) - accepted)

    def stored_id(self, user_id: str) -> str:
        """The id the store knows ``user_id`` by (its pseudonym, with a key), checked."""
        check_string(user_id, "user_id")
        return user_id if self.pseudonyms is None else self.pseudonyms(user_id)

    def _expire_both(self, now: float) -> None:
        """Default rewards for decisions whose window closed, then sessions whose gap
        passed (engines with a variant that learns transitions)."""
        self.joiner.expire(now)
        self.sessions.expire(now)

    def _apply_logged(self, evs, shards, seqs) -> int:
        """Apply logged events to the profiles (a seq of None: a duplicate, skipped), and
        snapshot every ``snapshot_every`` events; the number applied."""
        batches: dict[int, tuple[list, list]] = {}
        accepted = 0
        for e, s, seq in zip(evs, shards, seqs, strict=True):
            if seq is None:
                continue
            accepted += 1
            b = batches.get(s)
            if b is None:
                b = batches[s] = ([], [])
            b[0].append(e)
            b[1].append(seq)
        self.backend.apply(batches)
        self._since_snapshot += accepted
        if self._since_snapshot >= self.config.snapshot_every:
            self.snapshot()
        return accepted

    # ---- decisions -------------------------------------------------------------------
    def variant_of(self, user_id: str) -> str:
        """The variant a user is assigned to: sticky, by a salted hash of the stored id (the
        hash of :func:`engine.abtest.assign_variant`, so offline tools assign users alike;
        with a pseudonym key, the hash of the pseudonym, which is what logs hold)."""
        return self.decider.variant_of(self.stored_id(user_id))

    def rank(self, user_id: str, candidates: Sequence, context: Mapping | None = None, *,
             slate_size: int = 1, decision_id: str | None = None,
             choose: int | None = None) -> Decision:
        """Rank ``candidates`` for ``user_id``; the first ``slate_size`` are sampled by the
        policy and their propensities logged. Report the outcome with :meth:`reward`.
        A request of :meth:`rank_batch` (its errors name ``requests[0]``'s fields).
        ``choose``: the index of the candidate shown whatever the policy draws, logged with
        propensity 1 (apprentice mode), or ``-1`` for the policy's most probable one."""
        check_int("slate_size", slate_size, 1)
        now = float(self.clock())
        self._expire(now)
        request = self.decider.parse(user_id, candidates, context, decision_id, "requests[0]",
                                     slate_size)
        if choose is not None and (slate_size != 1 or type(choose) is not int
                                   or not -1 <= choose < len(request[1])):
            raise ValidationError("choose", "must be -1 or a candidate's index, with "
                                  "slate_size 1", choose)
        decision = self.decider.decide([request], slate_size, now, choose)[0]
        decision.user_id = user_id  # stored under the pseudonym, answered by the caller's id
        return decision

    def rank_batch(self, requests: Sequence[Mapping], *, slate_size: int = 1) -> list[Decision]:
        """Rank many requests at once: one feature call per shard and one policy call per
        variant. Each request: ``{"user_id", "candidates", "context"?, "decision_id"?}``."""
        check_int("slate_size", slate_size, 1)
        if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Sequence) \
                or not requests:
            raise ValidationError("requests", "must be a non-empty list of rank requests", requests)
        now = float(self.clock())
        self._expire(now)
        out = self.decider.decide(self.decider.parse_batch(requests, slate_size), slate_size, now)
        for decision, req in zip(out, requests, strict=True):
            decision.user_id = req["user_id"]
        return out

    # ---- rewards ---------------------------------------------------------------------
    def reward(self, decision_id: str, value: float | Sequence[float], slot: int | None = None
               ) -> RewardResult | list[RewardResult]:
        """Report the reward of a decision. Within its wait window it is learned once;
        repeats are ignored (``"duplicate"``); after the window it is recorded as ``"late"``.
        :meth:`reward_batch` of one.

        A slate (``slate_size`` > 1) takes a reward per slot: ``slot=i`` with one value, or
        ``value`` a list of one reward per slot (a list of results comes back). Each slot is
        learned with the propensity it was filled with (``Decision.slot_propensities``);
        once one slot has its reward, the others await theirs (the default reward when the
        window closes). Without ``slot``, one value is the first slot's (the slate's).
        """
        one = slot is None and not isinstance(value, (list, tuple))
        checked = self.joiner.check([(decision_id, value)]) if one else None
        now = float(self.clock())
        self._expire(now)
        if one:
            return self.joiner.record(checked, now)[0]
        results = self.joiner.record(self.joiner.slot_rewards(decision_id, value, slot), now)
        return results if isinstance(value, (list, tuple)) else results[0]

    def reward_batch(self, rewards: Sequence[tuple[str, float]]) -> list[RewardResult]:
        """Report many rewards in one transaction: ``[(decision_id, value), ...]``.

        All are validated first (a bad one raises and nothing is recorded); an unknown
        decision id raises :class:`UnknownDecisionError` before anything is recorded.
        """
        checked = self.joiner.check(rewards)
        now = float(self.clock())
        self._expire(now)
        return self.joiner.record(checked, now)

    # ---- profiles --------------------------------------------------------------------
    def profile(self, user_id: str, now: float | None = None) -> dict | None:
        """The user's profile as JSON-ready dict (``None`` for an unknown user)."""
        uid = self.stored_id(user_id)
        out = self.backend.profile_json(self.router.shard_of(uid), uid, now)
        if out is not None:
            out["user_id"] = user_id
        return out

    def forget(self, user_id: str) -> dict:
        """Erase the user from memory and from every file: profile, latent factors (and those
        of items that only this user touched), logged events, decisions, rewards and
        quarantined records naming them. The shard is re-snapshotted and the WAL truncated,
        checked: while another connection holds a read transaction it is retried (here for
        up to 2 s, then on later calls and at close) and reported.

        Returns the counts erased and where: ``{"profile", "events", "decisions", "rewards",
        "quarantine", "items", "database", "snapshot" (the shard re-written), "wal"
        ("truncated" or "held"), "tries", "reason"?}``."""
        uid = self.stored_id(user_id)
        shard = self.router.shard_of(uid)
        items = erase.items_only_of(self.store, uid, shard)
        had = self.backend.forget(shard, uid, items)
        self.joiner.waiting.drop_user(uid)
        counts = self.store.forget(uid)
        recovery.save_shard(self.store, self.backend, shard, self.sessions, uid)
        wal = erase.scrub(self.store)
        self.upkeep.erased(wal)
        self._rewire()
        return {"profile": int(had), **counts, "items": len(items),
                "database": self.store.path.name, "snapshot": shard, **wal}

    # ---- durability ------------------------------------------------------------------
    def snapshot(self) -> None:
        """Save every shard's profiles and every policy (recovery replays only what follows)."""
        recovery.save(self.store, self.backend, self.router.n_shards, self.learners, self._rng,
                      self.sessions)
        if self.rollout is not None:
            save_rollout(self.rollout, self.store)
        self._since_snapshot = 0

    def close(self) -> None:
        """Flush learners, snapshot, and release the data directory."""
        if self.store.db is None:
            return
        self.snapshot()
        for lrn in self.learners.values():
            if hasattr(lrn, "close"):
                lrn.close()
        self.backend.close()
        self.store.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reports ---------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters for monitoring: profiles, events, pending joins, policy versions, each
        policy's detected drifts (of the published policy, with a Ray learner), records in
        quarantine."""
        return {
            "profiles": self.backend.n_profiles(),
            "events": self.store.count_events(),
            "pending_decisions": len(self.joiner),
            "policy_versions": {k: v.version for k, v in self.learners.items()},
            "drift_detections": {k: int(getattr(v.policy, "drift_detections", 0))
                                 for k, v in self.learners.items()},
            "quarantined": self.store.quarantined()[0],
        }

    def health(self) -> dict:
        """The store's state for health checks (:meth:`engine.store.Store.health`)."""
        return self.store.health()

    def quarantine(self, limit: int = 100, release: Sequence[int] | bool = ()) -> dict:
        """The records in quarantine (the newest ``limit``, each with its reason and its
        content as text); ``release`` deletes some (their ids) or all (``True``) first, once
        they have been dealt with."""
        released = 0
        if release is True:
            released = self.store.release_quarantine(None)
        elif release:
            released = self.store.release_quarantine(list(release))
        n, rows = self.store.quarantined(limit)
        return {"count": n, "released": released, "records": rows}

    def rollout_report(self) -> dict | None:
        """The rollout's state, settings, off-policy estimate, online A/B comparison and
        steps with their reasons (:meth:`engine.rollout.Rollout.report`); None without one."""
        return None if self.rollout is None else self.rollout.report()

    def ab_report(self, control: str | None = None, alpha: float = 0.05) -> dict:
        """Compare the variants' rewards (learned rewards: joined or default).

        Per variant: n, mean and CI; per treatment against ``control`` (default: the first
        variant): difference and lift with CIs, Welch's test, an always-valid mixture-SPRT
        p-value and confidence sequence, and a sample-ratio-mismatch check on users assigned.
        The statistics come from :mod:`engine.abtest`; the counts from the store, so
        the report survives restarts.
        """
        names = list(self.learners)
        control = control or names[0]
        if control not in self._weights:
            raise ValidationError("control", f"must be one of {names}", control)
        rewards, users = self.store.variant_totals()
        stats = {name: VariantStats.from_dict(rewards[name]) if name in rewards
                 else VariantStats() for name in names}
        counts = {name: int(users.get(name, 0)) for name in names}
        previous = self._last_report
        if previous is not None and (previous.get("control"), previous.get("alpha")) != (control, alpha):
            previous = None
        report = ab_report(stats, self._weights, control, alpha, previous=previous, counts=counts)
        self._last_report = report
        return report

    def dp_release(self, epsilon: float, topics: Sequence[str] = (), *, alpha: float = 0.05,
                   bounds=None, control: str | None = None) -> dict:
        """Differentially private aggregates of this data directory at ``epsilon``, charged
        to its privacy budget (``dp_total_epsilon``): event-type counts, per-variant reward
        counts and means (and the A/B differences), per-topic interest counts and means for
        the public ``topics`` given. See :func:`engine.privacy.aggregates.release`."""
        from engine.privacy.aggregates import release
        from engine.privacy.budget import Budget

        budget = Budget(self.store, self.config.dp_total_epsilon)
        return release(self.store, epsilon, budget, topics=topics, bounds=bounds,
                       event_types=self.event_types, alpha=alpha, control=control)
