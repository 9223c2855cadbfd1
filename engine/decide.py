"""Where a decision is made: a rank request's checks, its features, its variant's policy,
the draw with the engine's seeded generator, the decision's log row and its pending join.

One path serves :meth:`Engine.rank <engine.engine.Engine.rank>` (a batch of one) and
:meth:`Engine.rank_batch <engine.engine.Engine.rank_batch>`.
"""

from __future__ import annotations

import json
import struct
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate, repeat

import numpy as np

from engine.abtest import hash_unit
from engine.checks import check_string, storable
from engine.decisions import Decision, Pending, new_decision_id
from engine.errors import ValidationError
from engine.rollout import CHALLENGER
from engine.store import compact_json

_REQUEST_KEYS = frozenset({"user_id", "candidates", "context", "decision_id"})
_DOUBLE = struct.Struct("<d")


class Decider:
    """Turns checked rank requests into logged decisions awaiting their rewards.

    Parameters
    ----------
    featurizer, router, backend
        The engine's featurizer, shard router and shard backend (profile features).
    learners
        ``{variant: learner}``; each learner's ``policy`` decides for its variant's users.
    weights
        ``{variant: traffic weight}`` (the order of :attr:`learners`).
    salt
        Salt of the variant assignment hash.
    store
        The durable store the decision rows go to.
    waiting
        The :class:`~engine.join.WaitList` each decision joins once it is logged.
    rng
        The engine's seeded generator: every draw comes from it.
    wait_window
        Seconds a decision waits for its reward.
    """

    def __init__(self, featurizer, router, backend, learners: dict, weights: dict[str, float],
                 salt: str, store, waiting, rng: np.random.Generator, wait_window: float):
        self.featurizer = featurizer
        self.router = router
        self.backend = backend
        self.learners = learners
        self.salt = salt
        self.store = store
        self.waiting = waiting
        self.rng = rng
        self.wait_window = wait_window
        self.sessions = None  # engine.session.Sessions when a variant learns transitions
        self.pseudonyms = None  # engine.privacy.pseudonym.Pseudonyms: stored ids, with a key
        #: share of each decision's probability spread evenly over its candidates (None:
        #: the policy's own exploration only); Personalizer's explorationPercentage
        self.explore: float | None = None
        #: engine.rollout.Rollout: a challenger deciding in shadow or serving a share
        self.rollout = None
        self._names = list(learners)
        cum = np.cumsum([weights[k] for k in self._names])
        self._cum_weights = cum / cum[-1]

    # ---- requests --------------------------------------------------------------------
    def parse_batch(self, requests: Sequence[Mapping], slate_size: int) -> list[tuple]:
        """Check ``rank_batch`` requests (``{"user_id", "candidates", "context"?,
        "decision_id"?}`` each); a decision id may appear once."""
        parsed, ids = [], set()
        for i, req in enumerate(requests):
            where = f"requests[{i}]"
            if not isinstance(req, Mapping):
                raise ValidationError(where, "must be a mapping with user_id and candidates", req)
            if not req.keys() <= _REQUEST_KEYS:
                extra = req.keys() - _REQUEST_KEYS
                raise ValidationError(f"{where}.{sorted(extra)[0]}", "unknown field; allowed: "
                                      "user_id, candidates, context, decision_id")
            p = self.parse(req.get("user_id"), req.get("candidates"), req.get("context"),
                           req.get("decision_id"), where, slate_size)
            if p[5] is not None:
                if p[5] in ids:
                    raise ValidationError(f"{where}.decision_id", "is already in use", p[5])
                ids.add(p[5])
            parsed.append(p)
        return parsed

    def parse(self, uid, candidates, ctx_raw, did, where: str, slate_size: int) -> tuple:
        """One request checked: (user id, candidate set, item features, context vector,
        context as given, decision id or None). Errors name fields under ``where``."""
        if not storable(uid):
            check_string(uid, f"{where}.user_id")
        if self.pseudonyms is not None:
            uid = self.pseudonyms(uid)
        cands, items = self.featurizer.prepare_candidates(candidates, f"{where}.candidates")
        if slate_size > len(cands):
            raise ValidationError("slate_size", f"must be at most the number of candidates "
                                  f"({len(cands)}) in {where}", slate_size)
        ctx = self.featurizer.no_context if ctx_raw is None else \
            self.featurizer.context_vector(ctx_raw, f"{where}.context")
        if did is not None:
            check_string(did, f"{where}.decision_id")
            if did in self.waiting or self.store.has_decision(did):
                raise ValidationError(f"{where}.decision_id", "is already in use", did)
        return uid, cands, items, ctx, ctx_raw, did

    def variant_of(self, user_id: str) -> str:
        """The variant a user is assigned to: sticky, by the salted hash of the id that
        :func:`engine.abtest.assign_variant` uses, located in the cumulative weights; a
        rollout's challenger where it serves the user (the same hash, below its share)."""
        if self.rollout is not None and self.rollout.serves(user_id):
            return CHALLENGER
        if len(self._names) == 1:
            return self._names[0]
        idx = int(np.searchsorted(self._cum_weights, hash_unit(user_id, self.salt),
                                  side="right"))
        return self._names[min(idx, len(self._names) - 1)]

    # ---- deciding --------------------------------------------------------------------
    def decide(self, parsed: list[tuple], slate_size: int, now: float,
               choose: int | None = None) -> list[Decision]:
        """Decide parsed requests: one feature call per shard and one policy call per
        variant; log the decisions, then await their rewards. ``choose`` (one slot): the
        candidate every request shows whatever the policy's draw, logged with propensity
        1 (an application's own choice, as in apprentice mode); :data:`GREEDY`: the
        policy's most probable candidate (no exploration)."""
        phi, mask = self._features(parsed, now)
        variants = [self._names[0]] * len(parsed) if len(self._names) == 1 else \
            [self.variant_of(p[0]) for p in parsed]
        probs, versions, names = self._act(phi, mask, variants)
        shadow = None  # the challenger's probabilities, on the champion's features
        if self.rollout is not None and self.rollout.active and slate_size == 1:
            shadow = self.rollout.act(phi, mask, [p[0] for p in parsed], variants, probs,
                                      versions, names)
        if self.explore:
            probs = _spread(probs, mask, self.explore)
            shadow = None if shadow is None else _spread(shadow, mask, self.explore)
        slots, slot_props = sample(probs, mask, slate_size, self.rng)
        logged = None  # the logging policy's probabilities where they are not the policy's
        if choose is not None:  # a choice made outside the policy: logged as certain
            logged = np.zeros(probs.shape)
            for i in range(len(parsed)):
                c = int(np.argmax(probs[i])) if choose == GREEDY else choose
                slots[i], slot_props[i] = [c], [1.0]
                logged[i, c] = 1.0
        decisions, rows, pending = [], [], []
        for i, (uid, cands, _, _, ctx_raw, did) in enumerate(parsed):
            variant = variants[i]
            dec, row, pend = self._decision(uid, cands, ctx_raw, did, probs[i], slots[i],
                                            slot_props[i], phi[i], variant, names[variant],
                                            versions[variant], now,
                                            None if logged is None else logged[i])
            if shadow is not None and variant != CHALLENGER:  # logged with the decision
                pend.shadow = x = float(shadow[i, slots[i][0]])
                row = (*row[:-1], f'{row[-1][:-1]},"shadow":{x!r}}}')
            decisions.append(dec)
            rows.append(row)
            pending.append(pend)
        if self.sessions is not None:  # where the decisions fall among logged rewards and
            # events: engine.recovery.replay_sessions rebuilds sessions in this order
            marks = ',"marks":[{},{}]}}'.format(*self.store.marks())
            rows = [(*r[:-1], r[-1][:-1] + marks) for r in rows]
        self.store.insert_decisions(rows)
        for p in pending:  # awaited only once their decisions are logged
            self.waiting.add(p)
        if self.sessions is not None:
            self._sessions(parsed, phi, pending, now)
        return decisions

    def _sessions(self, parsed: list[tuple], phi: np.ndarray, pending: list[Pending],
                  now: float) -> None:
        """Decisions of variants that learn transitions join their users' sessions, with
        their candidates' features (the next state of each user's previous decision)."""
        sessions = self.sessions
        for i, p in enumerate(pending):
            if p.variant in sessions.variants:
                k = len(parsed[i][1])
                sessions.decided(p.user_id, p.variant, p.decision_id, p.phi, p.propensity,
                                 phi[i, :k].copy(), now)

    def _features(self, parsed: list[tuple], now: float) -> tuple[np.ndarray, np.ndarray | None]:
        """``phi`` (B, K_max, D) and the mask (B, K_max), ``None`` where no request is
        padded (see :meth:`Featurizer.build <engine.featurizer.Featurizer.build>`): one
        feature call per shard."""
        if len(parsed) == 1:  # one request: no grouping by shard
            uid, cands, items, ctx = parsed[0][:4]
            shard = self.router.shard_of(uid)
            user, inter = self.backend.features({shard: [(uid, cands)]}, now)[shard][0]
            if self.sessions is not None and self.sessions.traces is not None:
                user = np.concatenate((user, self.sessions.traces.read(uid, now)))
            return self.featurizer.build([user], [inter], [items], [ctx])
        groups: dict[int, list[int]] = {}
        for i, p in enumerate(parsed):
            groups.setdefault(self.router.shard_of(p[0]), []).append(i)
        feats = self.backend.features(
            {s: [(parsed[i][0], parsed[i][1]) for i in idx] for s, idx in groups.items()}, now)
        users, inters = [None] * len(parsed), [None] * len(parsed)
        for s, idx in groups.items():
            for i, (u, inter) in zip(idx, feats[s], strict=True):
                users[i], inters[i] = u, inter
        if self.sessions is not None and self.sessions.traces is not None:
            read = self.sessions.traces.read  # the session's trace ends the user features
            users = [np.concatenate((u, read(p[0], now)))
                     for u, p in zip(users, parsed, strict=True)]
        return self.featurizer.build(users, inters, [p[2] for p in parsed],
                                     [p[3] for p in parsed])

    def _act(self, phi: np.ndarray, mask: np.ndarray | None, variants: list[str]):
        """Each request's probabilities from its variant's policy (one call per variant),
        with each variant's policy version and name as they decided."""
        if len(self.learners) == 1:  # one policy decides every request: no gather/scatter
            name = variants[0]
            policy = self.learners[name].policy
            probs = policy.act(phi, mask)
            return probs, {name: self.learners[name].version}, {name: type(policy).__name__}
        by_variant: dict[str, list[int]] = {}
        for i, name in enumerate(variants):
            by_variant.setdefault(name, []).append(i)
        versions, names = {}, {}
        probs = None if len(by_variant) == 1 else np.zeros(phi.shape[:2])
        for name, idx in by_variant.items():
            learner = self.learners[name]
            if probs is None:  # one policy decides every request: no gather/scatter
                probs = learner.policy.act(phi, mask)
            else:
                probs[idx] = learner.policy.act(phi[idx], None if mask is None else mask[idx])
            versions[name], names[name] = learner.version, type(learner.policy).__name__
        return probs, versions, names

    def _decision(self, uid, cands, ctx_raw, did, probs, slots: list[int],
                  slot_props: list[float], phi, variant: str, policy_name: str, version: int,
                  now: float, logged: np.ndarray | None = None
                  ) -> tuple[Decision, tuple, Pending]:
        """One request's decision, its row for the decision log, and its pending join, from
        its probabilities (K_max,), sampled slots and their propensities. ``logged``: the
        probabilities the log keeps instead (a choice made outside the policy); the
        decision still reports the policy's."""
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
        did = did or new_decision_id()
        chosen = cands[c0]
        prop = slot_props[0]
        ranking = [*map(ids.__getitem__, order)]
        dec = Decision(did, uid, ranking, p_list, ids, ids[c0], prop, slot_props,
                       variant, version, now)
        deadline = now + self.wait_window
        row = (did, uid, now, deadline, variant, policy_name, version, cands.ids_json,
               (p_row if logged is None else logged[:k]).tobytes(), c0, cands.json_of(order),
               _DOUBLE.pack(prop) if len(slot_props) == 1
               else struct.pack(f"<{len(slot_props)}d", *slot_props),
               (phi if len(phi) == k else phi[:k]).astype(np.float32).tobytes(), phi.shape[-1],
               None if ctx_raw is None else compact_json(ctx_raw), chosen.meta_json(prop))
        pending = Pending(did, uid, deadline, variant, phi[c0].copy(), prop, ids[c0],
                          chosen.topics, chosen.tags)
        if len(slots) > 1:  # the later slots' items, kept in the row to be rebuilt on restart
            later = [(cands[c].item_id, cands[c].topics, cands[c].tags) for c in slots[1:]]
            row = (*row[:-1], f'{row[-1][:-1]},"slots":{compact_json(later)}}}')
            pending.slots = _slot_decisions(row, p_row, slots, slot_props, later, phi)
        return dec, row, pending


#: ``choose`` of :meth:`Decider.decide`: the policy's most probable candidate
GREEDY = -1


def slot_id(decision_id: str, slot: int) -> str:
    """The decision id slot ``slot`` of a slate is logged and joined under (slot 0: the
    decision's own)."""
    return decision_id if slot == 0 else f"{decision_id}#{slot}"


def _slot_decisions(row: tuple, p_row: np.ndarray, slots: list[int], slot_props: list[float],
                    later: list, phi: np.ndarray) -> list[tuple[Pending, tuple]]:
    """A slate's slots after the first as one-slot decisions of their own (logged only once
    a per-slot reward comes): slot ``i`` chose among the candidates not yet placed, with the
    probabilities renormalized over them, and its propensity is the one it was filled with.
    ``later``: (item id, topics, tags) of slots 1, 2, ...; ``row``: the decision's log row."""
    did, uid, now, deadline, variant, policy, version, ids_json = row[:8]
    out = []
    for i in range(1, len(slots)):
        c, prop = slots[i], slot_props[i]
        cond = p_row.copy()
        cond[slots[:i]] = 0.0
        cond /= cond.sum()
        cond[c] = prop  # exactly the propensity drawn with
        item_id, topics, tags = later[i - 1]
        sid = slot_id(did, i)
        meta = compact_json({"id": item_id, "p": prop, "topics": topics, "tags": tags})
        out.append((Pending(sid, uid, deadline, variant, phi[c].astype(float), prop, item_id,
                            tuple(topics), tuple(tags)),
                    (sid, uid, now, deadline, variant, policy, version, ids_json, cond.tobytes(),
                     c, row[10], _DOUBLE.pack(prop), *row[12:15], meta)))
    return out


def slot_decisions_of(d: dict) -> list[tuple[Pending, tuple]] | None:
    """A logged slate decision's later slots awaiting their first per-slot reward, rebuilt
    from its row (``d``: the decisions table's columns), as :meth:`Decider.decide` made
    them; ``None`` for a one-slot decision."""
    later = json.loads(d["chosen_meta"]).get("slots")
    if not later:
        return None
    ids = json.loads(d["candidate_ids"])
    ranking = json.loads(d["ranking"])
    slot_props = list(np.frombuffer(d["slot_probabilities"], dtype=np.float64).tolist())
    slots = [ids.index(x) for x in ranking[:len(slot_props)]]
    row = tuple(d[c] for c in ("decision_id", "user_id", "ts", "deadline", "variant", "policy",
                               "policy_version", "candidate_ids", "probabilities", "chosen",
                               "ranking", "slot_probabilities", "phi", "n_features", "context",
                               "chosen_meta"))
    phi = np.frombuffer(d["phi"], dtype=np.float32).reshape(-1, d["n_features"])
    return _slot_decisions(row, np.frombuffer(d["probabilities"], dtype=np.float64), slots,
                           slot_props, later, phi)


def _spread(probs: np.ndarray, mask: np.ndarray | None, share: float) -> np.ndarray:
    """``probs`` (B, K) with ``share`` of each row spread evenly over its candidates."""
    exists = np.ones(probs.shape) if mask is None else mask.astype(float)
    return (1.0 - share) * probs + share * exists / exists.sum(axis=1, keepdims=True)


def sample(probs: np.ndarray, mask: np.ndarray | None, slate_size: int,
           rng: np.random.Generator) -> tuple[list[list[int]], list[list[float]]]:
    """Draw each row's slots from its probabilities (B, K) with ``rng``: (slots, their
    propensities), lists of ``slate_size`` per row. ``mask`` None: every candidate exists.

    One slot: one uniform per row, in row order; the candidate is the count of cumulative
    probabilities <= u * total, never a masked or zero-probability one.

    Examples
    --------
    >>> sample(np.array([[0.25, 0.75]]), None, 1, np.random.default_rng(0))
    ([[1]], [[0.75]])
    """
    if slate_size > 1:
        from policies import sample_slate

        slots, props = sample_slate(probs, slate_size, rng)
        return slots.tolist(), props.tolist()
    rows = probs.tolist()
    # one request draws as rng.random() does (the same number as rng.random(1)[0])
    us = (rng.random(),) if len(rows) == 1 else rng.random(len(rows)).tolist()
    chosen, props = [], []
    for row, u, valid in zip(rows, us, repeat(None) if mask is None else mask, strict=False):
        cum = [*accumulate(row)]  # sequential sums, as np.cumsum adds
        c = bisect_right(cum, u * cum[-1])
        if c >= len(row) or row[c] <= 0 or (valid is not None and not valid[c]):
            c = row.index(max(row))
        chosen.append([c])
        props.append([row[c]])
    return chosen, props
