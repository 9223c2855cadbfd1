"""The simulator's state and dynamics in plain numpy, shared by every environment.

Users have latent interest vectors (unit length, part shared with their region) that are
never observed; items have a topic, an embedding leaning toward it, a latent quality and an
observable clickbait score and popularity. The click probability of item i for user u is::

    sigmoid(click_bias + affinity_scale * <interest_u, embedding_i>
            + popularity_weight * popularity_i + clickbait_weight * clickbait_i
            + topic_offset[topic_i] - fatigue_weight * exposure_u[topic_i]) * position_bias[slot]

``topic_offset`` is 0 until a shift with ``shift_topic_jump``, which, with
``shift_weight_flip``, changes the reward model for everyone (the ``trend`` preset).

A click brings dwell (mean: the item's quality) and a purchase with probability
``purchase_rate * quality``; the reward is ``reward_click * click + reward_dwell * dwell +
reward_purchase * purchase``. Every array operation takes a batch of users at once.
"""

from __future__ import annotations

import math

import numpy as np

from simulators.config import SimConfig
from simulators.sampling import CandidateSampler


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _sigmoid_(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))``, computed in place in ``x`` (which is returned)."""
    np.negative(x, out=x)
    np.exp(x, out=x)
    x += 1.0
    return np.divide(1.0, x, out=x)


class SimCore(CandidateSampler):
    """Catalog, population and their dynamics (candidate lists are drawn by
    :class:`~simulators.sampling.CandidateSampler`).

    Examples
    --------
    >>> import numpy as np
    >>> from simulators.config import make_config
    >>> core = SimCore(make_config("stationary", n_users=50, n_items=100), np.random.default_rng(0))
    >>> users = core.draw_users(3)
    >>> cands = core.draw_candidates(3)
    >>> core.expected_rewards(users, cands).shape
    (3, 20)
    """

    def __init__(self, config: SimConfig, rng: np.random.Generator):
        c = self.config = config
        self.rng = rng
        t = c.n_topics
        cap = c.max_items
        # catalog (allocated to capacity; the first n_active items exist)
        self.topic = np.zeros(cap, dtype=np.int64)
        self.embedding = np.zeros((cap, t))
        self.quality = np.zeros(cap)
        self.clickbait = np.zeros(cap)
        self.popularity = np.zeros(cap)  # standardized log popularity (observable)
        self.birth = np.zeros(cap, dtype=np.int64)
        self.n_active = 0
        self._segment_cache = None
        self._fresh = None
        # the item part of the click logit: weights that a "trend" shift changes for everyone
        self.popularity_weight, self.clickbait_weight = c.popularity_weight, c.clickbait_weight
        self.topic_offset = np.zeros(t)
        self._add_items(np.full(c.n_items, -10 * c.fresh_steps), initial=True)
        self._pop_new = float(self.popularity[:self.n_active].min())
        self._birth0 = int(self.birth[0])
        self._init_sampler()
        # population
        self.region = rng.integers(c.n_regions, size=c.n_users)
        self.age_band = rng.integers(5, size=c.n_users)
        self._region_center = rng.standard_normal((c.n_regions, t))
        self.interest = self._draw_interests(np.arange(c.n_users))
        self.exposure = np.zeros((c.n_users, t))
        self.satisfaction = np.zeros(c.n_users)
        self.position_bias = 1.0 / (1.0 + np.arange(c.slate_size))
        self.step_count = 0
        self.phase = 0
        #: Step at which each user's interest or topic exposure (what their click
        #: probabilities depend on) last changed; -1: never since the start.
        self.changed_at = np.full(c.n_users, -1, dtype=np.int64)

    # ---- construction ----------------------------------------------------------------
    def _add_items(self, births: np.ndarray, initial: bool = False) -> None:
        """Append items born at the steps ``births`` (as many as capacity allows)."""
        c, rng = self.config, self.rng
        start = self.n_active
        n = min(len(births), c.max_items - start)
        idx = slice(start, start + n)
        topics = rng.integers(c.n_topics, size=n)
        self.topic[idx] = topics
        emb = 0.35 * rng.standard_normal((n, c.n_topics))
        emb[np.arange(n), topics] += 1.0  # the topic's one-hot plus noise
        self.embedding[idx] = _unit(emb)
        bait = rng.beta(1.0, 3.0, size=n)
        base_q = rng.beta(4.0, 2.0, size=n)
        self.clickbait[idx] = bait
        self.quality[idx] = np.clip((1 - c.quality_clickbait_corr) * base_q
                                    + c.quality_clickbait_corr * (1.0 - bait), 0.0, 1.0)
        if initial:
            logpop = np.log(rng.zipf(1.6, size=n).clip(max=10_000).astype(float))
            self.popularity[idx] = np.clip((logpop - logpop.mean()) / (logpop.std() + 1e-9), -9, 9)
        else:  # brand-new items: no history, the lowest popularity there is
            self.popularity[idx] = self._pop_new
        self.birth[idx] = births[:n]
        self.n_active += n
        self._refresh_tables(start, start + n)

    def _refresh_tables(self, start: int, stop: int) -> None:
        """Static per-item rows of items [start, stop): observable features, the item part of
        the click logit and the expected reward of a click."""
        c = self.config
        if not hasattr(self, "_feature_table"):
            self._feature_table = np.zeros((c.max_items, c.n_topics + 3), dtype=np.float32)
            self._base_logit = np.zeros(c.max_items)
            self._reward_table = np.zeros(c.max_items)
        idx = slice(start, stop)
        rows = self._feature_table[idx]
        rows[...] = 0.0
        rows[np.arange(stop - start), self.topic[idx]] = 1.0
        rows[:, c.n_topics] = self.popularity[idx]
        rows[:, c.n_topics + 1] = self.clickbait[idx]
        self._base_logit[idx] = (c.click_bias + self.popularity_weight * self.popularity[idx]
                                 + self.clickbait_weight * self.clickbait[idx]
                                 + self.topic_offset[self.topic[idx]])
        q = self.quality[idx]
        self._reward_table[idx] = (c.reward_click + c.reward_dwell * q
                                   + c.reward_purchase * c.purchase_rate * q)

    def _draw_interests(self, users: np.ndarray) -> np.ndarray:
        c = self.config
        own = self.rng.standard_normal((len(users), c.n_topics))
        shared = self._region_center[self.region[users]]
        return _unit(c.region_strength * shared + (1 - c.region_strength) * own * 1.5)

    # ---- users -----------------------------------------------------------------------
    def draw_users(self, n: int) -> np.ndarray:
        return self.rng.integers(self.config.n_users, size=n)

    # ---- observations and ground truth -----------------------------------------------
    @property
    def item_feature_dim(self) -> int:
        return self.config.n_topics + 3

    @property
    def user_feature_dim(self) -> int:
        return self.config.n_regions + 1

    def item_features(self, items: np.ndarray, steps: int | np.ndarray | None = None) -> np.ndarray:
        """Observable features: topic one-hot, popularity, clickbait score, freshness.

        Freshness is taken at the current step, or at ``steps`` (broadcast against ``items``:
        a column of shape (n, 1) gives row b its own step)."""
        out = self._feature_table.take(items, axis=0)
        if steps is None:
            steps = self.step_count
        if self.n_active == self._n0:  # no arrivals yet: every item was born at the same step
            age = np.maximum(0, np.asarray(steps) - self._birth0)
        else:
            age = steps - self.birth.take(items)
            table = self._freshness_table()
            if table is not None:
                out[..., -1] = table.take(age, mode="clip")
                return out
            np.maximum(age, 0, out=age)
        out[..., -1] = np.exp(-age / self.config.fresh_steps)
        return out

    def _freshness_table(self) -> np.ndarray | None:
        """Float32 freshness ``exp(-age / fresh_steps)`` of ages 0..A, A the first age whose
        freshness rounds to 0 (so ages clipped to [0, A] give every value exactly); None
        where such a table would be large."""
        if self._fresh is None:
            fs = self.config.fresh_steps
            self._fresh = False
            if fs * 105 < 1 << 21:
                table = np.exp(-np.arange(fs * 105 + 1) / fs).astype(np.float32)
                zero = np.flatnonzero(table == 0.0)
                if len(zero):
                    self._fresh = table[:zero[0] + 1]
        return self._fresh if self._fresh is not False else None

    def user_features(self, users: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_user_table"):
            c = self.config
            table = np.zeros((c.n_users, self.user_feature_dim), dtype=np.float32)
            table[np.arange(c.n_users), self.region] = 1.0
            table[:, c.n_regions] = self.age_band / 4.0
            self._user_table = table
        return self._user_table.take(users, axis=0)

    def click_probs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """P(click) of each item in slot 0, shape items.shape ((B, K)).

        Row b is computed as for user b alone (one matrix-vector product per row), so a row
        does not depend on which other users share the batch."""
        c = self.config
        if len(users) == 1:
            aff = (self.embedding[items[0]] @ self.interest[users[0]])[None, :]
            logit = self._base_logit[items] + c.affinity_scale * aff
            if c.fatigue_weight:
                logit -= c.fatigue_weight * self.exposure[users[0], self.topic[items[0]]]
            return _sigmoid_(logit)
        # -logit, built with the same roundings as logit (negation is exact)
        neg = np.matmul(self.embedding.take(items, axis=0),
                        self.interest.take(users, axis=0)[:, :, None])[:, :, 0]
        neg *= -c.affinity_scale
        neg -= self._base_logit.take(items)
        if c.fatigue_weight:
            at = self.topic.take(items)
            at += (np.asarray(users) * c.n_topics)[:, None]  # flat index of exposure[u, topic]
            neg += c.fatigue_weight * self.exposure.take(at)
        np.exp(neg, out=neg)
        neg += 1.0
        return np.divide(1.0, neg, out=neg)

    def reward_if_clicked(self, items: np.ndarray) -> np.ndarray:
        """Expected reward given a click, per item: ``reward_click + reward_dwell * quality +
        reward_purchase * purchase_rate * quality``."""
        return self._reward_table.take(items)

    def expected_rewards(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.click_probs(users, items) * self.reward_if_clicked(items)

    # ---- dynamics --------------------------------------------------------------------
    def respond(self, users: np.ndarray, items: np.ndarray, slates: np.ndarray,
                click_probs: np.ndarray | None = None) -> dict:
        """Users see ``slates`` (B, L) of indices into ``items`` (B, K); sample what they do,
        update their state, advance time. Returns per-row outcome arrays. Pass the
        ``click_probs`` computed for these users and items at this step to save work."""
        c, rng = self.config, self.rng
        if len(users) == 1 and slates.shape[1] == 1:
            return self._respond_one(int(users[0]), items[0], int(slates[0, 0]), click_probs)
        at = slates + np.arange(0, items.size, items.shape[1])[:, None]  # flat [b, slates[b]]
        shown = items.take(at)  # (B, L) item ids
        if click_probs is None:
            click_probs = self.click_probs(users, items)
        p = click_probs.take(at) * self.position_bias
        if slates.shape[1] > 1:  # a candidate repeated in a later slot is shown only once
            srt = np.sort(slates, axis=1)
            if (srt[:, 1:] == srt[:, :-1]).any():
                first = np.array([[slates[b, j] not in slates[b, :j] for j in range(slates.shape[1])]
                                  for b in range(len(slates))])
                p = p * first
        clicks = rng.random(p.shape) < p
        q = self.quality.take(shown)
        dwell = np.zeros(p.shape)
        if clicks.any():
            qc = q[clicks]
            dwell[clicks] = rng.beta(qc * 5 + 0.05, (1 - qc) * 5 + 0.05)
        purchases = clicks & (rng.random(p.shape) < c.purchase_rate * q)
        rewards = c.reward_click * clicks + c.reward_dwell * dwell + c.reward_purchase * purchases
        rewards = rewards.sum(axis=1) if p.shape[1] > 1 else rewards[:, 0]
        if c.fatigue_weight or c.drift_std:
            self.changed_at[users] = self.step_count
        # fatigue: exposure to shown topics
        if c.fatigue_weight:
            rows = self.exposure.take(users, axis=0)
            rows *= c.fatigue_decay
            self.exposure[users] = rows
            at = self.topic.take(shown)
            at += (np.asarray(users) * c.n_topics)[:, None]  # flat index of exposure[u, topic]
            np.add.at(self.exposure.reshape(-1), at.ravel(), 1.0)
        # satisfaction: quality pleases, clickbait disappoints
        if c.satisfaction_gain or c.clickbait_cost:
            delta = clicks * (c.satisfaction_gain * (q - 0.5)
                              - c.clickbait_cost * self.clickbait.take(shown))
            np.add.at(self.satisfaction, users, delta.sum(axis=1) if p.shape[1] > 1 else delta[:, 0])
        # gradual drift of the acting users
        if c.drift_std:
            step = rng.normal(0.0, c.drift_std, (len(users), c.n_topics))
            step += self.interest.take(users, axis=0)
            self.interest[users] = _unit(step)
        self.advance(len(users))
        return {"shown": shown, "clicks": clicks, "dwell": dwell, "purchases": purchases,
                "rewards": rewards}

    def _respond_one(self, user: int, items: np.ndarray, slot: int,
                     click_probs: np.ndarray | None) -> dict:
        """:meth:`respond` for one user and one slot, through :meth:`respond_one`."""
        item = int(items[slot])
        if click_probs is None:
            click_probs = self.click_probs(np.array([user]), items[None, :])
        click, dwell, purchase, reward = self.respond_one(
            user, item, click_probs[0, slot] * self.position_bias[0])
        return {"shown": np.array([[item]]), "clicks": np.array([[click]]),
                "dwell": np.array([[dwell]]), "purchases": np.array([[purchase]]),
                "rewards": np.array([reward])}

    def respond_one(self, user: int, item: int, p_click: float) -> tuple[bool, float, bool, float]:
        """One user sees one item, which they click with probability ``p_click``: the law of
        :meth:`respond` in scalar arithmetic (same random draws). Updates the user's state,
        advances the clock one step and returns ``(click, dwell, purchase, reward)``."""
        c, rng = self.config, self.rng
        click = rng.random() < p_click
        q = float(self.quality[item])
        dwell = float(rng.beta(q * 5 + 0.05, (1 - q) * 5 + 0.05)) if click else 0.0
        purchase = bool(click and rng.random() < c.purchase_rate * q)
        reward = c.reward_click * click + c.reward_dwell * dwell + c.reward_purchase * purchase
        if c.fatigue_weight or c.drift_std:
            self.changed_at[user] = self.step_count
        if c.fatigue_weight:
            row = self.exposure[user]
            row *= c.fatigue_decay
            row[self.topic[item]] += 1.0
        if click and (c.satisfaction_gain or c.clickbait_cost):
            self.satisfaction[user] += (c.satisfaction_gain * (q - 0.5)
                                        - c.clickbait_cost * self.clickbait[item])
        if c.drift_std:
            row = self.interest[user]
            v = rng.normal(0.0, c.drift_std, c.n_topics)  # drift_std * standard normals
            v += row
            np.divide(v, max(math.sqrt(v @ v), 1e-12), out=row)
        self.advance(1)
        return bool(click), dwell, purchase, float(reward)

    def advance(self, n_steps: int) -> None:
        """Move the clock; fire the abrupt shift and item arrivals when they are due."""
        c = self.config
        before = self.step_count
        self.step_count += n_steps
        if c.shift_step is not None and before < c.shift_step <= self.step_count:
            self.shift()
        every = c.new_item_every
        if every is not None and self.step_count // every > before // every \
                and self.n_active < c.max_items:
            due = np.arange(before // every + 1, self.step_count // every + 1) * every
            self._add_items(np.repeat(due, c.new_items_per_arrival))

    def shift(self) -> np.ndarray:
        """Redraw the interests of ``shift_fraction`` of the users, and change the reward
        model for everyone as ``shift_topic_jump`` and ``shift_weight_flip`` say; return who
        moved (everyone if the reward model changed)."""
        c = self.config
        moved = self.rng.random(c.n_users) < c.shift_fraction
        idx = np.flatnonzero(moved)
        self._region_center = self.rng.standard_normal(self._region_center.shape)
        self.interest[idx] = self._draw_interests(idx)
        self.phase = 1
        if c.shift_topic_jump or c.shift_weight_flip:
            self.topic_offset += self.rng.normal(0.0, c.shift_topic_jump, c.n_topics)
            self.popularity_weight *= 1.0 - 2.0 * c.shift_weight_flip
            self.clickbait_weight *= 1.0 - 2.0 * c.shift_weight_flip
            self._refresh_tables(0, self.n_active)
            idx = np.arange(c.n_users)
        self.changed_at[idx] = self.step_count
        return idx

    def leave_probs(self, users: np.ndarray) -> np.ndarray:
        """Per-step probability that a user in a session leaves (session mode)."""
        return 1.0 / (1.0 + np.exp(-(self.config.leave_bias - self.satisfaction[users])))

    def events(self, users: np.ndarray, out: dict, ts: float, first_event: int) -> list[list[dict]]:
        """The behaviour events of one step per row, in the engine's event schema."""
        rows = []
        n = first_event
        for b, u in enumerate(users.tolist()):
            evs = []
            seen = set()
            for j, item in enumerate(out["shown"][b].tolist()):
                if item in seen:
                    continue
                seen.add(item)
                base = {"user_id": f"u{u}", "ts": ts, "item_id": f"i{item}",
                        "topics": [f"t{int(self.topic[item])}"]}
                kinds = ["view"]
                if out["clicks"][b, j]:
                    kinds.append("click")
                if out["purchases"][b, j]:
                    kinds.append("purchase")
                for kind in kinds:
                    evs.append({**base, "type": kind, "event_id": f"sim-{n}"})
                    n += 1
            rows.append(evs)
        return rows
