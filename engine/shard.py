"""ProfileShard: the profiles of one partition of users, and the models that update them.

A shard is a plain object with no process-bound state (no open files, locks or threads), so
the same class runs inline or wrapped in a Ray actor. It is rebuilt exactly from
:meth:`ProfileShard.snapshot` plus the events logged after it.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Sequence
from itertools import accumulate, chain, repeat
from json.encoder import encode_basestring_ascii as _json_string
from operator import attrgetter
from sys import intern

import numpy as np
from river import feature_extraction, optim, reco

from engine import kernels
from engine.events import Event, EventTypes
from engine.latent import LatentFactors
from engine.profile import Profile, ProfileConfig
from engine.session import SESSION_FEATURES, session_vector

#: Names of the per-user features (same for every candidate).
USER_FEATURES = ("engagement_rate", "log_events", "recency", "drift_active")
#: Names of the user x item interaction features.
INTERACTION_FEATURES = ("topic_affinity", "tag_affinity", "keyword_affinity", "latent_score",
                        "topic_exposure")

_topic_key_of = attrgetter("topic_key")
_topic_keys_of = attrgetter("topic_keys")
_tag_keys_of = attrgetter("tag_keys")
_item_id_of = attrgetter("item_id")
_NO_VALUES = np.empty(0)
_ONE_EACH: dict[int, np.ndarray] = {}  # K -> [0, 1, ..., K]: the starts of K single topics
_ENGAGED = {"click": 1.0, "purchase": 1.0, "view": 0.0, "dislike": 0.0}


class Candidate:
    """What a shard needs to know of a candidate item: its id, interest keys and words."""

    __slots__ = ("item_id", "topics", "tags", "topic_keys", "tag_keys", "words", "topic_key",
                 "_meta")

    def __init__(self, item_id: str, topics: Sequence[str] = (), tags: Sequence[str] = ()):
        self.item_id = item_id
        self.topics = tuple(topics)
        self.tags = tuple(tags)
        # the profiles' own (interned) key strings: a look-up then matches by identity
        self.topic_keys = tuple(_TOPIC_KEYS.get(t) or _key(_TOPIC_KEYS, "topic:", t)
                                for t in topics)
        self.tag_keys = tuple(_TAG_KEYS.get(t) or _key(_TAG_KEYS, "tag:", t) for t in tags)
        self.words = tuple({intern(w.lower()) for t in (*topics, *tags) for w in t.split()})
        self.topic_key = self.topic_keys[0] if len(self.topic_keys) == 1 else None
        self._meta = None

    def meta_json(self, propensity: float) -> str:
        """The decision log's ``chosen_meta`` for this candidate chosen with ``propensity``:
        compact JSON of ``{"id", "p", "topics", "tags"}`` (all but ``p`` encoded once).

        >>> Candidate("a", ["jazz"]).meta_json(0.25)
        '{"id":"a","p":0.25,"topics":["jazz"],"tags":[]}'
        """
        if self._meta is None:
            topics = ",".join(map(_json_string, self.topics))
            tags = ",".join(map(_json_string, self.tags))
            self._meta = (f'{{"id":{_json_string(self.item_id)},"p":',
                          f',"topics":[{topics}],"tags":[{tags}]}}')
        return self._meta[0] + repr(propensity) + self._meta[1]

    def __reduce__(self):
        return (Candidate, (self.item_id, self.topics, self.tags))


class CandidateSet(tuple):
    """One request's candidates (:class:`Candidate` views, in order) with what each read
    derives from all of them, computed once: the ids, their JSON, the topic keys when
    every candidate has exactly one topic (else ``None``), and every candidate's topic keys
    in one list with where each candidate's start (``topic_index``, what a shard reads).

    >>> cs = CandidateSet([Candidate("a", ["jazz"]), Candidate("b", ["rock"], ["live"])])
    >>> cs.ids, cs.topic_keys, cs.any_tags, len(cs)
    (('a', 'b'), ['topic:jazz', 'topic:rock'], True, 2)
    """

    def __new__(cls, views, derived: tuple | None = None):
        """``derived``: the views' (ids, topic keys, whether any has tags, ids as JSON
        strings) where the caller already holds them (read from the views otherwise; the
        JSON strings, when first needed)."""
        self = super().__new__(cls, views)
        if derived is None:
            derived = (tuple(map(_item_id_of, self)), [*map(_topic_key_of, self)],
                       any(map(_tag_keys_of, self)), None)
        self.ids, keys, self.any_tags, self._encoded = derived
        self.topic_keys = None if None in keys else keys
        #: every candidate's topic keys in one list, and where each candidate's start
        self.topic_index = _topic_keys(self)
        self._ids_json = None
        self.latent_rows: dict = {}  # for LatentFactors.item_scores, per model
        return self

    @property
    def ids_json(self) -> str:
        """The ids as a compact JSON list (what the decision log stores)."""
        if self._ids_json is None:
            self._ids_json = self.json_of(range(len(self)))
        return self._ids_json

    def json_of(self, order) -> str:
        """The ids at positions ``order`` as a compact JSON list (each id encoded once)."""
        if self._encoded is None:
            self._encoded = tuple(map(_json_string, self.ids))
        return "[" + ",".join(map(self._encoded.__getitem__, order)) + "]"

    def __reduce__(self):
        return (CandidateSet, (tuple(self),))


def _topic_keys(candidates: CandidateSet) -> tuple[list[str], np.ndarray]:
    """Every candidate's topic keys in one list, and where each candidate's start (K + 1
    offsets, the last one the list's length)."""
    flat = candidates.topic_keys
    if flat is not None:  # one topic each (the set found it out once)
        k = len(flat)
        starts = _ONE_EACH.get(k)
        if starts is None:
            starts = _ONE_EACH[k] = np.arange(k + 1)
        return flat, starts
    keys = [*chain.from_iterable(map(_topic_keys_of, candidates))]
    starts = np.fromiter(accumulate(map(len, map(_topic_keys_of, candidates)), initial=0),
                         np.int64, len(candidates) + 1)
    return keys, starts


# Interned table keys per topic/tag name: one dict look-up per event instead of a string
# concatenation and an intern (bounded: cleared if a vocabulary grows past 100,000 names).
_TOPIC_KEYS: dict[str, str] = {}
_TAG_KEYS: dict[str, str] = {}


def _key(cache: dict[str, str], prefix: str, name: str) -> str:
    if len(cache) >= 100_000:
        cache.clear()
    key = cache[name] = intern(prefix + name)
    return key


class ProfileShard:
    """Profiles of the users routed to one shard.

    Parameters
    ----------
    shard_id
        Index of this shard (seeds its latent-factor model).
    profile_config
        How profiles learn (half-life, drift handling, latent size ...).
    event_types
        Known event types and their weights.
    seed
        Seed of the latent-factor initializer.

    Examples
    --------
    >>> from engine.events import validate_event
    >>> shard = ProfileShard(0, ProfileConfig(half_life=60.0), EventTypes())
    >>> ev = validate_event({"user_id": "u1", "type": "click", "ts": 0.0, "item_id": "i1",
    ...                      "topics": ["jazz"]})
    >>> shard.apply([ev], seqs=[1])
    1
    >>> shard.apply([ev], seqs=[1])   # already applied: ignored
    0
    >>> shard.profile_json("u1", now=60.0)["interests"]
    {'topic:jazz': 0.5}
    """

    def __init__(self, shard_id: int, profile_config: ProfileConfig, event_types: EventTypes,
                 seed: int = 0):
        self.shard_id = shard_id
        self.profile_config = profile_config
        self.event_types = event_types
        self.seed = seed
        self._profiles: dict[str, Profile] = {}
        self._mf = LatentFactors(n_factors=profile_config.n_factors, optimizer=optim.SGD(0.05),
                               l2=0.001, seed=seed * 1009 + shard_id)
        self._bow = feature_extraction.BagOfWords()
        kernels.warm_up()  # compiled (or loaded) now, not in an ingest or a rank
        self.last_seq = 0

    # ---- writes ----------------------------------------------------------------------
    def apply(self, events: Sequence[Event], seqs: Sequence[int]) -> int:
        """Apply events in order; events whose log sequence number was already applied are skipped."""
        applied = 0
        types = self.event_types
        profiles = self._profiles
        constants: dict[str, tuple] = {}
        latent_steps = []  # (user, item, target): learned after the loop, in order, in one call
        for event, seq in zip(events, seqs, strict=True):
            if seq <= self.last_seq:
                continue
            self.last_seq = seq
            applied += 1
            uid = event.user_id
            profile = profiles.get(uid)
            if profile is None:
                profile = profiles[uid] = Profile(uid, self.profile_config)
            type_ = event.type
            value = event.value
            keys = [_TOPIC_KEYS.get(t) or _key(_TOPIC_KEYS, "topic:", t) for t in event.topics]
            if event.tags:
                keys.extend(_TAG_KEYS.get(t) or _key(_TAG_KEYS, "tag:", t) for t in event.tags)
            fixed = constants.get(type_)
            if fixed is not None:  # weight, latent target and engagement depend on the type only
                weight, target, engaged = fixed
            else:
                weight = types.weight(type_, value)
                target = types.implicit_target(type_, value)
                if type_ == "reward":
                    engaged = min(1.0, max(0.0, value))
                elif type_ == "rate":
                    engaged = target
                else:
                    engaged = _ENGAGED.get(type_, -1.0)
                    constants[type_] = (weight, target, engaged)
            words = None
            if event.text:
                words = {intern(w): n for w, n in self._bow.transform_one(event.text).items()}
            profile.observe(type_, event.ts, weight, keys, engaged, event.attributes, words)
            if event.item_id is not None and target is not None:
                latent_steps.append((uid, event.item_id, target))
        self._mf.learn_many(latent_steps)  # nothing in the loop reads latents
        return applied

    def forget(self, user_id: str, items: Sequence[str] = ()) -> bool:
        """Drop everything this shard holds about ``user_id``, and the latent vectors of
        ``items`` (those only this user touched); True when there was a profile."""
        self._mf.forget_user(user_id)
        for item in items:
            self._mf.forget_item(item)
        return self._profiles.pop(user_id, None) is not None

    def pop_user(self, user_id: str) -> tuple | None:
        """Remove a user and return ``(profile, latent vector or None)`` (re-keying moves
        users between ids and shards), or None for an unknown user."""
        profile = self._profiles.pop(user_id, None)
        if profile is None:
            return None
        latent = self._mf.u_latents.get(user_id)
        latent = None if latent is None else np.array(latent)  # a copy: rows are reused
        self._mf.forget_user(user_id)
        return profile, latent

    def put_user(self, user_id: str, state: tuple) -> None:
        """Add a user popped by :meth:`pop_user`, under ``user_id``."""
        profile, latent = state
        profile.user_id = user_id
        self._profiles[user_id] = profile
        if latent is not None:
            self._mf.u_latents[user_id] = latent

    # ---- reads -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._profiles)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._profiles

    def user_ids(self) -> list[str]:
        return list(self._profiles)

    def features(self, requests: Sequence[tuple[str, Sequence[Candidate]]], now: float
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per request: user features (U,) and user x candidate interactions (K, I) at ``now``.

        Reading never changes a profile or the latent model (replays stay exact).
        """
        out = []
        u_lat = self._mf.u_latents
        for user_id, candidates in requests:
            if type(candidates) is not CandidateSet:
                candidates = CandidateSet(candidates)
            profile = self._profiles.get(user_id)
            cfg = self.profile_config
            if profile is None:  # an unknown user: no features
                n_user = len(USER_FEATURES) + cfg.session_features * len(SESSION_FEATURES)
                out.append((np.zeros(n_user),
                            np.zeros((len(candidates), len(INTERACTION_FEATURES)))))
                continue
            hl = cfg.half_life
            last = profile.last_ts
            user = np.array([profile.engagement.get(), math.log1p(profile.n_events) / 5.0,
                             0.0 if last is None else 2.0 ** (-max(0.0, now - last) / hl),
                             float(profile.drift_active(now))])
            if cfg.session_features:
                user = np.concatenate((user, session_vector(profile.session, last, now,
                                                            cfg.session_gap)))
            interests, exposure, keywords = profile.interests, profile.exposure, profile.keywords
            decay = profile.decay(now, hl)  # one factor turns every stored weight into a value
            mass = profile.mass.get("all", 0.0) * decay + 1.0
            latent = u_lat.get(user_id)
            expo_decay = profile.decay(now, cfg.exposure_half_life) if exposure else 0.0
            inter = np.zeros((len(candidates), len(INTERACTION_FEATURES)))
            keys, starts = candidates.topic_index
            kernels.topic_columns(
                np.fromiter(map(interests.get, keys, repeat(0.0)), float, len(keys)),
                np.fromiter(map(exposure.get, keys, repeat(0.0)), float, len(keys))
                if exposure else _NO_VALUES, starts, decay, mass, expo_decay, inter)
            if candidates.any_tags:
                inter[:, 1] = [sum(interests.get(t, 0.0) for t in c.tag_keys) * decay / mass
                               if c.tag_keys else 0.0 for c in candidates]
            if keywords:
                kw_mass = 1.0 + decay * sum(abs(v) for v in keywords.values())
                inter[:, 2] = [sum(keywords.get(w, 0.0) for w in c.words) * decay / kw_mass
                               if c.words else 0.0 for c in candidates]
            if latent is not None:  # items without latents score 0 (a zero vector)
                self._mf.item_scores(candidates.ids, latent, inter, 3, candidates.latent_rows)
            out.append((user, inter))
        return out

    def profile_json(self, user_id: str, now: float | None = None) -> dict | None:
        profile = self._profiles.get(user_id)
        if profile is None:
            return None
        latent = self._mf.u_latents.get(user_id)
        return profile.to_json(now, None if latent is None else [round(float(v), 6) for v in latent])

    # ---- durability ------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Everything needed to rebuild this shard exactly (profiles, latent model, last seq)."""
        return pickle.dumps(self.__dict__, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, blob: bytes) -> ProfileShard:
        state = _SnapshotUnpickler(io.BytesIO(blob)).load()
        if state["shard_id"] != self.shard_id:
            raise ValueError(f"snapshot is of shard {state['shard_id']}, not shard {self.shard_id}")
        if type(state["_mf"]) is reco.FunkMF:  # saved before LatentFactors: same state
            state["_mf"].__class__ = LatentFactors
        self.__dict__.update(state)
        return self


class _SnapshotUnpickler(pickle.Unpickler):
    """Loads snapshots written by earlier versions, whose classes have moved since."""

    #: (module, name) in an old snapshot -> the class that holds that state now
    MOVED = {("engine.pagehinkley", "PageHinkley"): ("river.drift", "PageHinkley")}

    def find_class(self, module: str, name: str):
        return super().find_class(*self.MOVED.get((module, name), (module, name)))
