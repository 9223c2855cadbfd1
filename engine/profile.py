"""A user's living profile: decayed interests, engagement, drift-aware forgetting, keywords.

Decay runs on *event time*: an interest holds ``sum_i w_i * 2 ** (-(T - t_i) / half_life)``
over the events that touched it, evaluated at query time ``T``. The sum does not depend on
the order events arrive in, so replays are exact. While a drift window is open (the user's
change detector fired), time counts ``fast_factor`` times faster, so old interests fade
quickly and the profile follows a sudden shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from river import drift, stats

from engine.errors import ValidationError

LN2 = math.log(2.0)
MAX_KEYWORDS = 32
MAX_INTERESTS = 64
MAX_EXPOSURE = 12


@dataclass(frozen=True)
class ProfileConfig:
    """How profiles learn from events.

    Parameters
    ----------
    half_life
        Seconds of event time after which an interest has half its weight.
    drift_fast_factor
        While a detected change is recent, interests decay this many times faster.
    drift_period
        Seconds of event time the faster forgetting lasts after the detector fires.
    drift_threshold
        Page-Hinkley threshold on the user's surprise stream (lower fires sooner).
    drift_min_events
        Events a user needs before the detector may fire.
    engagement_alpha
        Weight of the newest observation in the recency-weighted engagement rate.
    n_factors
        Size of the latent factors learned online from implicit feedback.
    exposure_half_life
        Half-life of topic exposure (views), which measures fatigue.
    session_gap
        Seconds of event time without an event after which the next one starts a new
        session (the engine sets it from ``EngineConfig.session_gap``).
    session_features
        Append the user's open session (:data:`engine.session.SESSION_FEATURES`) to the
        user features every candidate carries, so a policy can tell a session's states apart.

    Examples
    --------
    >>> ProfileConfig(half_life=3600.0).half_life
    3600.0
    >>> ProfileConfig(half_life=0)
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: profile.half_life: must be a finite number > 0 (got 0)
    """

    half_life: float = 7 * 24 * 3600.0
    drift_fast_factor: float = 8.0
    drift_period: float = 24 * 3600.0
    drift_threshold: float = 3.0
    drift_min_events: int = 10
    engagement_alpha: float = 0.05
    n_factors: int = 8
    exposure_half_life: float = 3600.0
    session_gap: float = 1800.0
    session_features: bool = False

    def __post_init__(self) -> None:
        for name in ("half_life", "drift_period", "drift_threshold", "exposure_half_life",
                     "session_gap"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValidationError(f"profile.{name}", "must be a finite number > 0", v)
        if not isinstance(self.drift_fast_factor, (int, float)) or not self.drift_fast_factor >= 1:
            raise ValidationError("profile.drift_fast_factor", "must be a number >= 1",
                                  self.drift_fast_factor)
        if not 0 < self.engagement_alpha <= 1:
            raise ValidationError("profile.engagement_alpha", "must lie in (0, 1]", self.engagement_alpha)
        for name in ("drift_min_events", "n_factors"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValidationError(f"profile.{name}", "must be an integer >= 1", v)
        if not isinstance(self.session_features, bool):
            raise ValidationError("profile.session_features", "must be true or false",
                                  self.session_features)


class Profile:
    """One user's profile. Shards own profiles; use :meth:`engine.Engine.profile` to read one.

    Examples
    --------
    >>> cfg = ProfileConfig(half_life=100.0)
    >>> p = Profile("u1", cfg)
    >>> p.add_interest("topic:jazz", 1.0, ts=0.0)
    >>> round(p.interest("topic:jazz", now=100.0), 6)   # one half-life later
    0.5
    """

    __slots__ = ("user_id", "attributes", "interests", "exposure", "keywords", "n_events",
                 "type_counts", "first_ts", "last_ts", "engagement", "detector", "fast_windows",
                 "n_drifts", "mass", "session", "_anchor", "_cfg")

    def __init__(self, user_id: str, config: ProfileConfig):
        self.user_id = user_id
        self._cfg = config
        self.attributes: dict = {}
        self.interests: dict[str, float] = {}  # key -> anchored weight (see _add)
        self.exposure: dict[str, float] = {}
        self.keywords: dict[str, float] = {}
        self._anchor: float | None = None
        self.n_events = 0
        self.type_counts: dict[str, int] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.engagement = stats.EWMean(fading_factor=config.engagement_alpha)
        self.detector = drift.PageHinkley(min_instances=config.drift_min_events, delta=0.05,
                                          threshold=config.drift_threshold, mode="up")
        self.fast_windows: list[list[float]] = []  # [start, end] of faster forgetting
        self.n_drifts = 0
        self.mass: dict[str, float] = {}  # anchored total of positive interest weight
        # the current session: [start ts, events, clicks, rewards, reward total, ended]
        self.session: list | None = None

    # ---- decay -----------------------------------------------------------------------
    # Each table maps a key to sum_i w_i * 2 ** ((tau(t_i) - anchor) / half_life): one float
    # per entry, whatever the order events arrive in. tau is event time with drift windows
    # running drift_fast_factor times faster; its value at T is the stored float times
    # 2 ** (-(tau(T) - anchor) / half_life). The anchor moves forward (rescaling every
    # entry) before the exponents grow too large for a float.

    def _warp(self, t: float) -> float:
        """Warped time: event time with drift windows counted ``drift_fast_factor`` times."""
        if not self.fast_windows:
            return t
        extra = 0.0
        for start, end in self.fast_windows:
            if t > start:
                extra += min(t, end) - start
        return t + extra * (self._cfg.drift_fast_factor - 1.0)

    def _since_anchor(self, ts: float) -> float:
        """Warped time from the anchor to ``ts`` (setting or rebasing the anchor when due);
        a weight observed at ``ts`` is stored times ``2 ** (this / half_life)``."""
        tau = self._warp(ts) if self.fast_windows else ts
        if self._anchor is None:
            self._anchor = tau
        elif tau - self._anchor > 500.0 * min(self._cfg.half_life, self._cfg.exposure_half_life):
            self._rebase(tau)
        return tau - self._anchor

    def _scale(self, ts: float, half_life: float) -> float:
        """Factor that stores a weight observed at ``ts`` (rebasing the anchor when due)."""
        return 2.0 ** (self._since_anchor(ts) / half_life)

    def _rebase(self, tau: float) -> None:
        shift = tau - self._anchor
        cfg = self._cfg
        for table, hl in ((self.interests, cfg.half_life), (self.keywords, cfg.half_life),
                          (self.mass, cfg.half_life), (self.exposure, cfg.exposure_half_life)):
            factor = 2.0 ** (-shift / hl)
            for key in table:
                table[key] *= factor
        self._anchor = tau

    def _add(self, table: dict, key: str, weight: float, ts: float, half_life: float) -> None:
        table[key] = table.get(key, 0.0) + weight * self._scale(ts, half_life)

    def decay(self, now: float, half_life: float) -> float:
        """The factor that turns stored weights into their values at ``now``."""
        if self._anchor is None:
            return 0.0
        if self.last_ts is not None and now < self.last_ts:
            now = self.last_ts
        return 2.0 ** (-(self._warp(now) - self._anchor) / half_life)

    def _value(self, table: dict, key: str, now: float, half_life: float) -> float:
        """Value at ``now`` (never before the last event: no "un-decay" into the past)."""
        stored = table.get(key)
        if stored is None:
            return 0.0
        if self.last_ts is not None and now < self.last_ts:
            now = self.last_ts
        return stored * 2.0 ** (-(self._warp(now) - self._anchor) / half_life)

    def add_interest(self, key: str, weight: float, ts: float) -> None:
        self._add(self.interests, key, weight, ts, self._cfg.half_life)

    def interest(self, key: str, now: float) -> float:
        """Decayed affinity for ``key`` (``"topic:<name>"`` or ``"tag:<name>"``) at time ``now``."""
        return self._value(self.interests, key, now, self._cfg.half_life)

    def keyword(self, word: str, now: float) -> float:
        return self._value(self.keywords, word, now, self._cfg.half_life)

    def exposure_to(self, key: str, now: float) -> float:
        return self._value(self.exposure, key, now, self._cfg.exposure_half_life)

    # ---- updates ---------------------------------------------------------------------
    def observe(self, type_: str, ts: float, weight: float, keys: list[str], engaged: float,
                attributes: dict | None, words: dict[str, int] | None) -> None:
        """Apply one event (already validated and weighted by the shard)."""
        self.n_events += 1
        # the event counts in the user's session: a new one starts after session_gap seconds
        # without events or after a session_end (an event older than the last one counts in
        # the current session)
        sess = self.session
        if sess is None or sess[5] or ts - self.last_ts > self._cfg.session_gap:
            if type_ != "session_end":
                if sess is None:
                    sess = self.session = [ts, 0, 0, 0, 0.0, False]
                else:  # the new session reuses the list: no allocation per session (for
                    # a user seen less often than session_gap, that is every event)
                    sess[:] = ts, 0, 0, 0, 0.0, False
        elif type_ == "session_end":
            sess[5] = True
        if type_ != "session_end":
            sess[1] += 1
            if type_ == "click":
                sess[2] += 1
            elif type_ == "reward":  # a decision's reward: its weight is the value
                sess[3] += 1
                sess[4] += weight
        counts = self.type_counts
        counts[type_] = counts.get(type_, 0) + 1
        first = self.first_ts
        if first is None or ts < first:
            self.first_ts = ts
        if attributes:
            self.attributes.update(attributes)
        if keys or words:
            cfg = self._cfg
            elapsed = self._since_anchor(ts)  # once for both tables
            scale = 2.0 ** (elapsed / cfg.half_life)
        if keys:
            self._track_drift(keys, ts)
            share = weight / len(keys) * scale
            interests = self.interests
            if weight > 0:
                mass = self.mass
                mass["all"] = mass.get("all", 0.0) + weight * scale
            for key in keys:
                interests[key] = interests.get(key, 0.0) + share
            if type_ == "view":
                expo_scale = 2.0 ** (elapsed / cfg.exposure_half_life)
                exposure = self.exposure
                for key in keys:
                    exposure[key] = exposure.get(key, 0.0) + expo_scale
                if len(exposure) > MAX_EXPOSURE:
                    _prune(exposure, MAX_EXPOSURE)
            if len(interests) > MAX_INTERESTS:
                _prune(interests, MAX_INTERESTS)
        if words:
            total = sum(words.values())
            keywords = self.keywords
            for word, count in words.items():
                keywords[word] = keywords.get(word, 0.0) + weight * count / total * scale
            if len(keywords) > MAX_KEYWORDS:
                _prune(keywords, MAX_KEYWORDS)
        if engaged >= 0.0:
            self.engagement.update(engaged)
        last = self.last_ts
        if last is None or ts > last:
            self.last_ts = ts

    def _track_drift(self, keys: list[str], ts: float) -> None:
        """Feed the change detector with how surprising this event is under the profile."""
        stored = self.mass.get("all")
        if stored is None or stored <= 0.0:
            return
        # Surprise: the share of the user's recent positive interest mass NOT on these keys.
        # Mass and interests decay alike, so their ratio needs no decay factor at all.
        interests = self.interests
        hit = 0.0
        for k in keys:
            v = interests.get(k, 0.0)
            if v > 0.0:
                hit += v
        surprise = 1.0 - min(1.0, hit / stored)
        self.detector.update(surprise)
        if self.detector.drift_detected:
            self.n_drifts += 1
            end = ts + self._cfg.drift_period
            if self.fast_windows and self.fast_windows[-1][1] >= ts:
                self.fast_windows[-1][1] = end
            else:
                self.fast_windows.append([ts, end])
                del self.fast_windows[:-4]

    # ---- views -----------------------------------------------------------------------
    def drift_active(self, now: float) -> bool:
        return bool(self.fast_windows) and self.fast_windows[-1][0] <= now < self.fast_windows[-1][1]

    def to_json(self, now: float | None = None, latent: list[float] | None = None) -> dict:
        """A JSON-ready view of the profile, interests evaluated at ``now`` (default: last event)."""
        now = self.last_ts if now is None else now
        now = 0.0 if now is None else now
        hl = self._cfg.half_life
        out = {
            "user_id": self.user_id,
            "attributes": dict(self.attributes),
            "interests": _ranked({k: self._value(self.interests, k, now, hl) for k in self.interests}),
            "keywords": _ranked({k: self._value(self.keywords, k, now, hl) for k in self.keywords}),
            "exposure": _ranked({k: self._value(self.exposure, k, now, self._cfg.exposure_half_life)
                                 for k in self.exposure}),
            "engagement": {
                "rate": self.engagement.get(),
                "events": self.n_events,
                "by_type": dict(self.type_counts),
                "first_ts": self.first_ts,
                "last_ts": self.last_ts,
                "recency_s": None if self.last_ts is None else max(0.0, now - self.last_ts),
                "events_per_day": self.events_per_day(),
            },
            "drift": {"detections": self.n_drifts, "active": self.drift_active(now),
                      "windows": [list(w) for w in self.fast_windows]},
            "session": self.session_json(now),
            "evaluated_at": now,
        }
        if latent is not None:
            out["latent_factors"] = latent
        return out

    def session_json(self, now: float) -> dict | None:
        """The user's current session: start, events, clicks, rewarded decisions (steps)
        and their reward total, and whether it is still open at ``now``; ``None`` before
        the first event."""
        sess = self.session
        if sess is None:
            return None
        open_ = not sess[5] and now - self.last_ts <= self._cfg.session_gap
        return {"started": sess[0], "events": sess[1], "clicks": sess[2], "steps": sess[3],
                "reward": round(sess[4], 6), "open": open_}

    def events_per_day(self) -> float:
        if self.first_ts is None or self.n_events < 2:
            return 0.0
        return self.n_events / max(1.0, (self.last_ts - self.first_ts) / 86400.0)

    def __getstate__(self):
        return {s: getattr(self, s) for s in Profile.__slots__}

    def __setstate__(self, state):
        self.session = None  # snapshots from before sessions were tracked
        for k, v in state.items():
            setattr(self, k, v)


def _ranked(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in sorted(values.items(), key=lambda kv: -abs(kv[1]))}


def _prune(table: dict, keep: int) -> None:
    """Drop the weakest entries so a profile's size stays bounded: the smallest magnitudes
    (every entry of a table decays by the same factor, so stored weights rank as their
    values at any time do); among equals the newest key goes first."""
    if len(table) == keep + 1:  # the usual case: one entry over
        del table[min(reversed(table), key=lambda k: abs(table[k]))]
        return
    ranked = sorted(table, key=lambda k: abs(table[k]), reverse=True)
    for key in ranked[keep:]:
        del table[key]
