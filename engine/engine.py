"""The Engine: the embedded decision service (events in, rankings out, rewards learned)."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from secrets import token_hex

import numpy as np

from engine.backends import InlineBackend
from engine.checks import (
    MIN_WALL_TIME,
    check_int,
    check_number,
    check_string,
    storable,
)
from engine.decisions import Decision, Joiner, Pending, RewardResult
from engine.errors import UnknownDecisionError, ValidationError
from engine.events import RESERVED_EVENT_ID_PREFIX, Event, EventTypes, Limits, validate_events
from engine.featurizer import Featurizer
from engine.learner import Learner
from engine.profile import ProfileConfig
from engine.router import Router
from engine.store import Store, compact_json


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
    policy
        Policy name for :func:`policies.make` (e.g. ``"lints"``) or a policy object.
    policy_params
        Keyword arguments for the named policy.
    variants
        For online A/B tests: ``{name: {"policy": ..., "params": {...}, "weight": w}}``. Users
        are assigned to variants stickily by a salted hash of their id. Default: one variant
        ``"default"`` running ``policy``.
    salt
        Salt of the variant assignment hash (change it to re-randomize an experiment).
    shards
        Number of profile shards.
    backend
        ``"inline"`` (shards in this process) or ``"ray"`` (one actor per shard).
    ray_address
        With ``backend="ray"``: address of an existing Ray cluster (default: local Ray).
    item_features, context_features, max_candidates
        The featurizer's shape: length of each candidate's ``features``, names of numeric
        context features, and the most candidates a request may carry.
    profile
        A :class:`~engine.profile.ProfileConfig` or a dict of its fields.
    event_types
        Extra event types with their interest weights, e.g. ``{"share": 1.5}``.
    wait_window
        Seconds (engine clock) a decision waits for its reward before ``default_reward`` is
        learned in its place.
    default_reward
        Reward learned when none arrives in time.
    learn_batch
        Joined records per policy update.
    snapshot_every
        Events between automatic profile snapshots.
    seed
        Seed of the engine's sampling generator (and of the models it builds).
    clock
        Callable returning the current time in seconds; default wall clock. Experiments pass
        the simulator's clock so that windows and decay are deterministic.
    synchronous
        Durability of the store (SQLite and the rank/reward journal, see
        :mod:`engine.journal`): ``"NORMAL"`` survives a killed process, ``"FULL"`` a power
        cut (every commit and every journal record synced to disk).
    learner
        Where policies train: ``"local"`` (this process), ``"ray"`` (a learner actor per
        variant), ``"auto"`` (the actor with the Ray backend).
    learner_gpus
        GPUs each learner actor reserves.
    async_learning
        Keep deciding with the current policy version while the actor trains the next.
    reward_range
        ``(low, high)`` of the rewards (and event values) accepted; default ``(-1e6, 1e6)``.
    min_event_time, max_event_lead
        Event times accepted: from ``min_event_time`` (default: 2000-01-01 on the wall
        clock, 0 with a ``clock`` of your own) to ``max_event_lead`` seconds (a day) after
        the engine's clock. A time in milliseconds is refused, with that hint.

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

    def __init__(self, data_dir: str | None = None, *, policy: object = "lints",
                 policy_params: Mapping | None = None, variants: Mapping | None = None,
                 salt: str = "loopwise", shards: int = 1, backend: str = "inline",
                 ray_address: str | None = None, item_features: int = 0,
                 context_features: Sequence[str] = (), max_candidates: int = 1000,
                 profile: ProfileConfig | Mapping | None = None,
                 event_types: Mapping[str, float] | None = None, wait_window: float = 3600.0,
                 default_reward: float = 0.0, learn_batch: int = 1,
                 snapshot_every: int = 100_000, seed: int = 0,
                 clock: Callable[[], float] | None = None, synchronous: str = "NORMAL",
                 learner: str = "auto", learner_gpus: float = 0.0, async_learning: bool = False,
                 reward_range: tuple[float, float] = (-1e6, 1e6),
                 min_event_time: float | None = None, max_event_lead: float = 86_400.0):
        check_number("wait_window", wait_window, low=0.0)
        if not isinstance(reward_range, (tuple, list)) or len(reward_range) != 2:
            raise ValidationError("reward_range", "must be a (low, high) pair", reward_range)
        if min_event_time is None:  # a simulation's clock may start anywhere, the wall's not
            min_event_time = MIN_WALL_TIME if clock is None else 0.0
        self.limits = Limits(tuple(reward_range), min_event_time, max_event_lead)
        check_number("default_reward", default_reward, *self.limits.reward_range)
        check_int("learn_batch", learn_batch, 1)
        check_int("snapshot_every", snapshot_every, 1)
        check_int("seed", seed, 0)
        if backend not in ("inline", "ray"):
            raise ValidationError("backend", "must be 'inline' or 'ray'", backend)
        if learner not in ("auto", "local", "ray"):
            raise ValidationError("learner", "must be 'auto', 'local' or 'ray'", learner)
        check_number("learner_gpus", learner_gpus, low=0.0)
        if isinstance(profile, Mapping):
            profile = ProfileConfig(**profile)
        self.profile_config = profile or ProfileConfig()
        self.event_types = EventTypes(custom=dict(event_types or {}))
        self.featurizer = Featurizer(item_features, context_features, max_candidates)
        self.router = Router(shards)
        self.wait_window = float(wait_window)
        self.default_reward = float(default_reward)
        self.snapshot_every = snapshot_every
        self.seed = seed
        self.salt = salt
        self.clock = clock or time.time
        self._rng = np.random.default_rng(seed)

        self._tmpdir = None
        if data_dir is None:
            self._tmpdir = data_dir = tempfile.mkdtemp(prefix="loopwise-")
        self.data_dir = str(data_dir)
        self.store = Store(data_dir, synchronous=synchronous)

        try:
            specs = self._variant_specs(policy, policy_params, variants)
            self.store.check_meta({
                "shards": shards,
                "n_features": self.featurizer.n_features,
                "feature_names": self.featurizer.feature_names,
                "variants": {k: {"policy": v["name"], "params": v["params"]} for k, v in specs.items()},
            })
            if backend == "inline":
                self.backend = InlineBackend(shards, self.profile_config, self.event_types, seed)
            else:
                from engine.ray_backend import RayBackend
                self.backend = RayBackend(shards, self.profile_config, self.event_types, seed,
                                          address=ray_address)
                self.backend.recovery = self._shard_recovery
            self._weights = {k: v["weight"] for k, v in specs.items()}
            if learner == "auto":
                learner = "ray" if backend == "ray" else "local"
            self.learners: dict[str, Learner] = {}
            for name, spec in specs.items():
                saved = self.store.load_policy(name)
                pol = Learner.load_policy(saved[2]) if saved else spec["policy"]
                if learner == "ray":
                    from engine.ray_learner import RayLearner
                    lrn = RayLearner(pol, learn_batch, num_gpus=learner_gpus,
                                     asynchronous=async_learning)
                else:
                    lrn = Learner(pol, learn_batch)
                lrn.learned_seq = saved[0] if saved else 0
                self.learners[name] = lrn
            self._variant_names = list(specs)
            self._cum_weights = np.cumsum([self._weights[k] for k in self._variant_names])
            self._cum_weights /= self._cum_weights[-1]
            self._last_report: dict | None = None

            self.joiner = Joiner()
            self._since_snapshot = 0
            self._recover()
        except BaseException:
            # a refused configuration must not keep the data directory locked
            if getattr(self, "backend", None) is not None:
                self.backend.close()
            self.store.close()
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise

    # ---- construction helpers ----------------------------------------------------------
    def _variant_specs(self, policy, policy_params, variants) -> dict[str, dict]:
        from policies import make

        d = self.featurizer.n_features
        if variants is None:
            variants = {"default": {"policy": policy, "params": dict(policy_params or {}),
                                    "weight": 1.0}}
        elif policy_params is not None:
            raise ValidationError("policy_params", "give each variant's params in variants instead")
        if not isinstance(variants, Mapping) or not variants:
            raise ValidationError("variants", "must be a non-empty mapping of name to spec", variants)
        out = {}
        for i, (name, spec) in enumerate(variants.items()):
            where = f"variants.{name}"
            if not isinstance(name, str) or not name:
                raise ValidationError("variants", "names must be non-empty strings", name)
            if not isinstance(spec, Mapping):
                raise ValidationError(where, "must be a mapping with 'policy'", spec)
            extra = set(spec) - {"policy", "params", "weight"}
            if extra:
                raise ValidationError(f"{where}.{sorted(extra)[0]}",
                                      "unknown key; allowed: policy, params, weight")
            weight = spec.get("weight", 1.0)
            check_number(f"{where}.weight", weight, low=0.0, strict=True)
            pol = spec.get("policy", "lints")
            params = dict(spec.get("params") or {})
            if isinstance(pol, str):
                try:
                    obj = make(pol, n_features=d, seed=self.seed + 7919 * i, **params)
                except (TypeError, ValueError) as err:
                    raise ValidationError(f"{where}.policy", str(err), pol) from None
                name_ = pol
            else:
                if getattr(pol, "n_features", d) != d:
                    raise ValidationError(f"{where}.policy",
                                          f"has n_features={pol.n_features} but the featurizer "
                                          f"makes {d}", pol)
                obj, name_ = pol, type(pol).__name__
            out[name] = {"policy": obj, "name": name_, "params": params, "weight": float(weight)}
        return out

    def _recover(self) -> None:
        """Restore shards from snapshots, replay the log tail, reload pending decisions and
        re-learn rewards that came after the last saved policy."""
        for shard in range(self.router.n_shards):
            blob, tail = self._shard_recovery(shard)
            self.backend.restore(shard, blob)
            for events, seqs in tail:
                self.backend.apply({shard: (events, seqs)})
        for did, uid, deadline, chosen, variant, phi, d, meta in self.store.pending_decisions():
            phi = np.frombuffer(phi, dtype=np.float32).reshape(-1, d)[chosen].astype(float)
            item = json.loads(meta)
            self.joiner.add(Pending(did, uid, deadline, variant, phi, item["p"], item["id"],
                                    tuple(item["topics"]), tuple(item["tags"])))
        for name, learner in self.learners.items():
            rows = self.store.learnable_rewards(name, learner.learned_seq)
            for seq, value, chosen, phi, d, probs in rows:
                x = np.frombuffer(phi, dtype=np.float32).reshape(-1, d)[chosen].astype(float)
                p = float(np.frombuffer(probs, dtype=np.float64)[chosen])
                learner.add(x, value, p, seq)
            learner.flush()
        rng_state = self.store.get_meta("rng_state")
        if rng_state is not None:
            self._rng.bit_generator.state = json.loads(rng_state)

    def _shard_recovery(self, shard: int):
        """A shard's latest snapshot (or None) and the log events after it, in batches."""
        snap = self.store.load_snapshot(shard)
        after = 0 if snap is None else snap[0]
        return (None if snap is None else snap[1]), self.store.iter_events(shard, after)

    # ---- events ----------------------------------------------------------------------
    def ingest(self, events: Sequence[Mapping]) -> IngestResult:
        """Validate, log durably, then apply events to profiles. All-or-nothing: if any event
        is invalid, nothing is stored. Events repeating a stored ``event_id`` are ignored."""
        now = float(self.clock())
        evs = validate_events(events, self.event_types, self.limits, now)
        self._expire(now)
        return self._ingest_validated(evs)

    def _ingest_validated(self, evs) -> IngestResult:
        if not evs:
            return IngestResult(0, 0)
        shard_of = self.router.shard_of
        shards = [shard_of(e.user_id) for e in evs]
        seqs = self.store.append_events(evs, shards)
        return self._apply_logged(evs, shards, seqs)

    def _apply_logged(self, evs, shards, seqs) -> IngestResult:
        """Apply logged events to the profiles (a seq of None: a duplicate, skipped)."""
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
        if self._since_snapshot >= self.snapshot_every:
            self.snapshot()
        return IngestResult(accepted, len(evs) - accepted)

    # ---- decisions -------------------------------------------------------------------
    def variant_of(self, user_id: str) -> str:
        """The variant a user is assigned to: sticky, by a salted hash of the id.

        The hash is the one of :func:`experiments.abstats.assign_variant` (53 bits of
        blake2b over salt, a separator and the id), so offline tools assign users alike.
        """
        if len(self._variant_names) == 1:
            return self._variant_names[0]
        digest = blake2b(self.salt.encode() + b"\x1f" + user_id.encode(), digest_size=8).digest()
        u = (int.from_bytes(digest, "big") >> 11) / float(1 << 53)
        idx = int(np.searchsorted(self._cum_weights, u, side="right"))
        return self._variant_names[min(idx, len(self._variant_names) - 1)]

    def rank(self, user_id: str, candidates: Sequence, context: Mapping | None = None, *,
             slate_size: int = 1, decision_id: str | None = None) -> Decision:
        """Rank ``candidates`` for ``user_id``; the first ``slate_size`` are sampled by the
        policy and their propensities logged. Report the outcome with :meth:`reward`."""
        # rank_batch's steps for one request, without its grouping by shard and by variant
        check_int("slate_size", slate_size, 1)
        now = float(self.clock())
        self._expire(now)
        uid, cands, items, ctx, ctx_raw, did = self._parse_fields(
            user_id, candidates, context, decision_id, "requests[0]", slate_size)
        shard = self.router.shard_of(uid)
        user, inter = self.backend.features({shard: [(uid, cands)]}, now)[shard][0]
        phi = self.featurizer.build_one(user, inter, items, ctx)
        variant = self.variant_of(uid)
        learner = self.learners[variant]
        probs = learner.policy.act(phi, None)
        if slate_size == 1:
            slots, slot_props = self._sample_one(probs[0])
        else:
            slots, slot_p = self._sample(probs, None, slate_size)
            slots, slot_props = slots[0].tolist(), slot_p[0].tolist()
        dec, row, pending = self._decision(
            uid, cands, ctx_raw, did, probs[0], slots, slot_props, phi[0], variant,
            type(learner.policy).__name__, learner.version, now)
        self.store.insert_decisions([row])
        self.joiner.add(pending)  # awaited only once its decision is logged
        return dec

    def rank_batch(self, requests: Sequence[Mapping], *, slate_size: int = 1) -> list[Decision]:
        """Rank many requests at once: one feature call per shard and one policy call per
        variant. Each request: ``{"user_id", "candidates", "context"?, "decision_id"?}``."""
        check_int("slate_size", slate_size, 1)
        if isinstance(requests, (str, bytes, Mapping)) or not isinstance(requests, Sequence) \
                or not requests:
            raise ValidationError("requests", "must be a non-empty list of rank requests", requests)
        now = float(self.clock())
        self._expire(now)
        parsed = [self._parse_request(r, f"requests[{i}]", slate_size)
                  for i, r in enumerate(requests)]
        groups: dict[int, list[int]] = {}
        for i, p in enumerate(parsed):
            groups.setdefault(self.router.shard_of(p[0]), []).append(i)
        feats = self.backend.features(
            {s: [(parsed[i][0], parsed[i][1]) for i in idx] for s, idx in groups.items()}, now)
        users, inters = [None] * len(parsed), [None] * len(parsed)
        for s, idx in groups.items():
            for i, (u, inter) in zip(idx, feats[s], strict=True):
                users[i], inters[i] = u, inter
        phi, mask = self.featurizer.build(users, inters, [p[2] for p in parsed],
                                          [p[3] for p in parsed])
        full = len({len(p[1]) for p in parsed}) == 1  # no padding: the policies' fast path
        variants = [self.variant_of(p[0]) for p in parsed]
        by_variant: dict[str, list[int]] = {}
        for i, name in enumerate(variants):
            by_variant.setdefault(name, []).append(i)
        versions, names = {}, {}
        probs = np.zeros(mask.shape) if len(by_variant) > 1 else None
        for name, idx in by_variant.items():
            learner = self.learners[name]
            if probs is None:  # one policy decides every request: no gather/scatter
                probs = learner.policy.act(phi, None if full else mask)
            else:
                probs[idx] = learner.policy.act(phi[idx], None if full else mask[idx])
            versions[name], names[name] = learner.version, type(learner.policy).__name__
        slots, slot_p = self._sample(probs, None if full else mask, slate_size)

        decisions, rows, pending = [], [], []
        for i, (uid, cands, _, _, ctx_raw, did) in enumerate(parsed):
            variant = variants[i]
            dec, row, pend = self._decision(uid, cands, ctx_raw, did, probs[i],
                                            slots[i].tolist(), slot_p[i].tolist(), phi[i],
                                            variant, names[variant], versions[variant], now)
            decisions.append(dec)
            rows.append(row)
            pending.append(pend)
        self.store.insert_decisions(rows)
        for p in pending:  # awaited only once their decisions are logged
            self.joiner.add(p)
        return decisions

    def _parse_request(self, req: object, where: str, slate_size: int):
        if not isinstance(req, Mapping):
            raise ValidationError(where, "must be a mapping with user_id and candidates", req)
        if not req.keys() <= _REQUEST_KEYS:
            extra = req.keys() - _REQUEST_KEYS
            raise ValidationError(f"{where}.{sorted(extra)[0]}",
                                  "unknown field; allowed: user_id, candidates, context, decision_id")
        return self._parse_fields(req.get("user_id"), req.get("candidates"), req.get("context"),
                                  req.get("decision_id"), where, slate_size)

    def _parse_fields(self, uid, candidates, ctx_raw, did, where: str, slate_size: int):
        if not storable(uid):
            check_string(uid, f"{where}.user_id")
        cands, items = self.featurizer.prepare_candidates(candidates, f"{where}.candidates")
        if slate_size > len(cands):
            raise ValidationError("slate_size", f"must be at most the number of candidates "
                                  f"({len(cands)}) in {where}", slate_size)
        ctx = self.featurizer.context_vector(ctx_raw, f"{where}.context")
        if did is not None:
            check_string(did, f"{where}.decision_id")
            if did in self.joiner._pending or self.store.decision(did) is not None:
                raise ValidationError(f"{where}.decision_id", "is already in use", did)
        return uid, cands, items, ctx, ctx_raw, did

    def _decision(self, uid, cands, ctx_raw, did, probs, slots: list[int],
                  slot_props: list[float], phi, variant: str, policy_name: str, version: int,
                  now: float):
        """One request's decision, its row for the decision log, and its pending join, from
        its probabilities (K_max,), sampled slots and their propensities."""
        k = len(cands)
        p_row = probs if len(probs) == k else probs[:k]
        p_list = p_row.tolist()
        c0 = slots[0]
        # the rest by descending probability, ties in candidate order (a stable sort)
        order = sorted(range(k), key=p_list.__getitem__, reverse=True)
        if len(slots) == 1:
            order.remove(c0)
            order.insert(0, c0)
        else:
            chosen_set = set(slots)
            order = slots + [j for j in order if j not in chosen_set]
        ids = list(cands.ids)  # cands: a CandidateSet
        did = did or token_hex(16)  # 128 random bits: a decision id cannot be guessed
        chosen = cands[c0]
        prop = slot_props[0]
        ranking = [ids[j] for j in order]
        dec = Decision(did, uid, ranking, p_list, ids, ids[c0], prop, slot_props,
                       variant, version, now)
        deadline = now + self.wait_window
        row = (did, uid, now, deadline, variant, policy_name, version, cands.ids_json,
               p_row.tobytes(), c0, cands.json_of(order),
               _DOUBLE.pack(prop) if len(slot_props) == 1
               else struct.pack(f"<{len(slot_props)}d", *slot_props),
               (phi if len(phi) == k else phi[:k]).astype(np.float32).tobytes(), phi.shape[-1],
               None if ctx_raw is None else compact_json(ctx_raw), chosen.meta_json(prop))
        pending = Pending(did, uid, deadline, variant, phi[c0].copy(), prop, ids[c0],
                          chosen.topics, chosen.tags)
        return dec, row, pending

    def _sample(self, probs: np.ndarray, mask: np.ndarray | None, slate_size: int):
        """Sample slots with the engine's generator; return (slots (B, L), propensities (B, L)).
        ``mask`` None: every candidate exists."""
        if slate_size == 1:
            # row by row on Python floats: the count of cumulative probabilities <= u * total
            # (what a vectorized compare-and-sum gives), without a dozen array calls per batch
            rows = probs.tolist()
            us = self._rng.random(len(rows)).tolist()
            cums = np.cumsum(probs, axis=1).tolist()
            chosen, props = [], []
            for r, (cum, row, u) in enumerate(zip(cums, rows, us, strict=True)):
                c = _draw(cum, row, u)
                if mask is not None and not mask[r, c]:  # never a masked candidate
                    c = row.index(max(row))
                chosen.append(c)
                props.append(row[c])
            return np.array(chosen)[:, None], np.array(props)[:, None]
        from policies import sample_slate

        return sample_slate(probs, slate_size, self._rng)

    def _sample_one(self, probs: np.ndarray) -> tuple[list[int], list[float]]:
        """:meth:`_sample` of one request's first slot (every candidate exists), as lists:
        the same draw, and the same sums (sequential, as cumsum adds)."""
        row = probs.tolist()
        c = _draw(list(itertools.accumulate(row)), row, self._rng.random())
        return [c], [row[c]]

    # ---- rewards ---------------------------------------------------------------------
    def reward(self, decision_id: str, value: float) -> RewardResult:
        """Report the reward of a decision. Within its wait window it is learned once;
        repeats are ignored (``"duplicate"``); after the window it is recorded as ``"late"``."""
        check_string(decision_id, "decision_id")
        value = check_number("value", value, *self.limits.reward_range)
        now = float(self.clock())
        self._expire(now)
        p = self.joiner._pending.get(decision_id)
        if p is None:  # a duplicate, late or unknown reward: the general path says which
            return self._record_rewards([(decision_id, value)], now)[0]
        # reward_batch's steps for one joined reward
        event = self._reward_event(p.user_id, decision_id, p.item_id, p.topics, p.tags, value,
                                   now)
        shard = self.router.shard_of(p.user_id)
        seqs, event_seqs = self.store.record_rewards(
            [(decision_id, p.user_id, value, now, "joined")], [(decision_id, value, "joined")],
            [event], [shard])
        self._apply_logged([event], [shard], event_seqs)
        self.joiner.pop(decision_id)
        self.learners[p.variant].add(p.phi, value, p.propensity, seqs[0])
        return RewardResult(decision_id, "joined", value, True)

    def reward_batch(self, rewards: Sequence[tuple[str, float]]) -> list[RewardResult]:
        """Report many rewards in one transaction: ``[(decision_id, value), ...]``.

        All are validated first (a bad one raises and nothing is recorded); an unknown
        decision id raises :class:`UnknownDecisionError` before anything is recorded.
        """
        if isinstance(rewards, (str, bytes, Mapping)) or not isinstance(rewards, Sequence):
            raise ValidationError("rewards", "must be a list of (decision_id, value) pairs", rewards)
        checked = []
        for i, pair in enumerate(rewards):
            where = "" if len(rewards) == 1 else f"rewards[{i}]."
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValidationError(f"rewards[{i}]", "must be a (decision_id, value) pair", pair)
            did, value = pair
            check_string(did, f"{where}decision_id")
            checked.append((did, check_number(f"{where}value", value, *self.limits.reward_range)))
        now = float(self.clock())
        self._expire(now)
        return self._record_rewards(checked, now)

    def _record_rewards(self, checked: list[tuple[str, float]], now: float) -> list[RewardResult]:
        """Join, record and learn validated rewards (see :meth:`reward_batch`)."""
        results: list[RewardResult] = []
        joined, others = [], []
        seen: set[str] = set()
        for did, value in checked:
            pending = None if did in seen else self.joiner._pending.get(did)
            if pending is not None:
                joined.append((pending, value))
            else:
                row = self.store.decision(did) if did not in seen else {"status": "joined"}
                if row is None:
                    raise UnknownDecisionError(f"decision_id: no decision {did!r} was issued by "
                                               "this engine (or its user was forgotten)")
                others.append((did, value, row))
            seen.add(did)
        events = [self._reward_event(p.user_id, p.decision_id, p.item_id, p.topics, p.tags,
                                     v, now) for p, v in joined]
        late_rows = []
        for did, value, row in others:
            status = "duplicate" if row["status"] in ("joined", "late") else "late"
            if status == "late" and (self.store.has_late_reward(did)
                                     or any(r[0] == did for r in late_rows)):
                status = "duplicate"
            late_rows.append((did, row.get("user_id", ""), value, now, status))
            if status == "late":
                item = json.loads(row["chosen_meta"])
                events.append(self._reward_event(row["user_id"], did, item["id"],
                                                 item["topics"], item["tags"], value, now))
        # one durable write for the whole call: reward rows, settled decisions, and the
        # reward events (unique by construction: one per joined or first-late reward)
        shard_of = self.router.shard_of
        shards = [shard_of(e.user_id) for e in events]
        seqs, event_seqs = self.store.record_rewards(
            [(p.decision_id, p.user_id, v, now, "joined") for p, v in joined]
            + [r for r in late_rows if r[1]],
            [(p.decision_id, v, "joined") for p, v in joined], events, shards)
        self._apply_logged(events, shards, event_seqs)
        for (p, v), seq in zip(joined, seqs[:len(joined)], strict=True):
            self.joiner.pop(p.decision_id)
            self.learners[p.variant].add(p.phi, v, p.propensity, seq)
        by_id = {p.decision_id: RewardResult(p.decision_id, "joined", v, True) for p, v in joined}
        late_iter = iter(late_rows)
        for did, value in checked:
            if did in by_id:
                results.append(by_id.pop(did))
            else:
                r = next(late_iter)
                results.append(RewardResult(did, r[4], value, False))
        return results

    def _reward_event(self, user_id, decision_id, item_id, topics, tags, value, now):
        """A reward is also a behaviour event of the user (de-duplicated by its event id).

        Built directly: every field comes from a validated request or decision."""
        return Event(user_id, "reward", now, item_id, value, tuple(topics), tuple(tags),
                     None, None, RESERVED_EVENT_ID_PREFIX + decision_id)

    def _expire(self, now: float) -> None:
        expired = self.joiner.expire(now)
        if not expired:
            return
        rows = [(p.decision_id, p.user_id, self.default_reward, now, "default") for p in expired]
        settle = [(p.decision_id, self.default_reward, "default") for p in expired]
        seqs, _ = self.store.record_rewards(rows, settle)
        for p, seq in zip(expired, seqs, strict=True):
            self.learners[p.variant].add(p.phi, self.default_reward, p.propensity, seq)

    # ---- profiles --------------------------------------------------------------------
    def profile(self, user_id: str, now: float | None = None) -> dict | None:
        """The user's profile as JSON-ready dict (``None`` for an unknown user)."""
        check_string(user_id, "user_id")
        return self.backend.profile_json(self.router.shard_of(user_id), user_id, now)

    def forget(self, user_id: str) -> dict[str, int]:
        """Erase the user: profile, latent factors, logged events, decisions and rewards.
        The shard is re-snapshotted and the WAL truncated, so no file keeps the user's data."""
        check_string(user_id, "user_id")
        shard = self.router.shard_of(user_id)
        had = self.backend.forget(shard, user_id)
        self.joiner.drop_user(user_id)
        counts = self.store.forget(user_id)
        self._snapshot_shard(shard)
        self.store.scrub()
        return {"profile": int(had), **counts}

    # ---- durability ------------------------------------------------------------------
    def snapshot(self) -> None:
        """Save every shard's profiles and every policy (recovery replays only what follows)."""
        for shard in range(self.router.n_shards):
            self._snapshot_shard(shard)
        for name, learner in self.learners.items():
            learner.flush()
            self.store.save_policy(name, learner.learned_seq, learner.version, learner.state())
        self.store.set_meta("rng_state", json.dumps(self._rng.bit_generator.state))
        self._since_snapshot = 0

    def _snapshot_shard(self, shard: int) -> None:
        seq, blob = self.backend.snapshot(shard)
        self.store.save_snapshot(shard, seq, blob)

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
        """Counters for monitoring: profiles, events, pending joins, policy versions."""
        return {
            "profiles": self.backend.n_profiles(),
            "events": self.store.count_events(),
            "pending_decisions": len(self.joiner),
            "policy_versions": {k: v.version for k, v in self.learners.items()},
            "quarantined": self.store.quarantined()[0],
        }

    def health(self) -> dict:
        """The store's state, for health checks: ``"ok"``; ``"degraded"`` while records are
        in quarantine (acknowledged writes that could not be stored; everything else was:
        see :meth:`quarantine`); ``"failing"`` when group commits fail or the engine is
        closed. ``{"status", "quarantined", "reason"}``."""
        store = self.store
        if store.closed:
            return {"status": "failing", "quarantined": None, "reason": "the engine is closed"}
        try:
            n, _ = store.quarantined()
        except Exception as exc:  # noqa: BLE001 - reported, not raised: this is the check
            return {"status": "failing", "quarantined": None, "reason": store.error or repr(exc)}
        if store.error:
            return {"status": "failing", "quarantined": n, "reason": store.error}
        if n:
            return {"status": "degraded", "quarantined": n,
                    "reason": f"{n} acknowledged record(s) could not be stored and are in "
                              "quarantine (Engine.quarantine(), loopwise quarantine)"}
        return {"status": "ok", "quarantined": 0, "reason": None}

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

    def ab_report(self, control: str | None = None, alpha: float = 0.05) -> dict:
        """Compare the variants' rewards (learned rewards: joined or default).

        Per variant: n, mean and CI; per treatment against ``control`` (default: the first
        variant): difference and lift with CIs, Welch's test, an always-valid mixture-SPRT
        p-value and confidence sequence, and a sample-ratio-mismatch check on users assigned.
        The statistics come from :mod:`experiments.abstats`; the counts from the store, so
        the report survives restarts.
        """
        from experiments.abstats import VariantStats, ab_report

        control = control or self._variant_names[0]
        if control not in self._weights:
            raise ValidationError("control", f"must be one of {self._variant_names}", control)
        stats = {name: VariantStats() for name in self._variant_names}
        for variant, n, mean, m2 in self.store.db.execute(
                "WITH x AS (SELECT d.variant AS variant, r.value AS value FROM rewards r "
                "JOIN decisions d USING (decision_id) WHERE r.status IN ('joined', 'default')), "
                "m AS (SELECT variant, AVG(value) AS mean FROM x GROUP BY variant) "
                "SELECT x.variant, COUNT(*), m.mean, SUM((x.value - m.mean) * (x.value - m.mean)) "
                "FROM x JOIN m USING (variant) GROUP BY x.variant"):
            if variant in stats:
                stats[variant] = VariantStats.from_dict({"n": n, "mean": mean, "m2": max(0.0, m2)})
        users = dict(self.store.db.execute(
            "SELECT variant, COUNT(DISTINCT user_id) FROM decisions GROUP BY variant").fetchall())
        counts = {name: int(users.get(name, 0)) for name in self._variant_names}
        previous = self._last_report
        if previous is not None and (previous.get("control"), previous.get("alpha")) != (control, alpha):
            previous = None
        report = ab_report(stats, self._weights, control, alpha, previous=previous, counts=counts)
        self._last_report = report
        return report


_REQUEST_KEYS = frozenset({"user_id", "candidates", "context", "decision_id"})
_DOUBLE = struct.Struct("<d")


def _draw(cum: list[float], row: list[float], u: float) -> int:
    """The candidate a uniform draw ``u`` picks: the count of cumulative probabilities
    ``cum`` <= u * total; never a zero-probability candidate, even at float edges."""
    c = bisect_right(cum, u * cum[-1])
    if c >= len(row) or row[c] <= 0:
        c = row.index(max(row))
    return c
