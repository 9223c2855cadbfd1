"""Gymnasium environments over :class:`~simulators.core.SimCore`: a contextual-bandit
stream, a session of one user, and a batched stream that steps B users at once."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simulators.config import SimConfig, make_config
from simulators.core import SimCore

PREFETCH = 256


def _config(config: SimConfig | None, preset: str, overrides: dict) -> SimConfig:
    if config is not None:
        if overrides or preset != "stationary":
            raise ValueError("config: give either a SimConfig or a preset with overrides, not both")
        if not isinstance(config, SimConfig):
            raise ValueError(f"config: must be a SimConfig (got {type(config).__name__})")
        return config
    return make_config(preset, **overrides)


def observation_space(c: SimConfig, d_user: int, d_item: int) -> spaces.Dict:
    k = c.n_candidates
    return spaces.Dict({
        "user_id": spaces.Discrete(c.n_users),
        "user_features": spaces.Box(0.0, 1.0, (d_user,), np.float32),
        "item_ids": spaces.MultiDiscrete(np.full(k, c.max_items)),
        "item_features": spaces.Box(-10.0, 10.0, (k, d_item), np.float32),
        "item_topics": spaces.MultiDiscrete(np.full(k, c.n_topics)),
        "positions": spaces.MultiDiscrete(np.full(c.slate_size, c.slate_size)),
    })


def check_slates(action, batch: int, k: int, slate_size: int) -> np.ndarray:
    """Validate actions; return slates of shape (batch, L) (indices into the K candidates)."""
    if slate_size == 1 and batch == 1 and isinstance(action, (int, np.integer)) \
            and not isinstance(action, bool) and 0 <= action < k:
        return np.array([[action]])
    a = np.asarray(action)
    want = (batch,) if slate_size == 1 else (batch, slate_size)
    if a.shape == want[1:] and batch == 1:
        a = a.reshape(want)
    if a.shape != want:
        single = "()" if slate_size == 1 else f"({slate_size},)"
        raise ValueError(f"action: must have shape {single} per user ({want} for the batch) "
                         f"(got shape {a.shape})")
    if a.dtype.kind not in "iu":
        raise ValueError(f"action: must hold integer candidate indices (got dtype {a.dtype})")
    a = a.reshape(batch, slate_size)
    if a.min() < 0 or a.max() >= k:
        raise ValueError(f"action: candidate indices must lie in [0, {k}) (got {a.min()}..{a.max()})")
    return a


class _Stepper:
    """What the single-user environments share: a block of upcoming observations prepared at
    once (row j is observed j steps after the block is loaded), ground truth, events."""

    core: SimCore
    config: SimConfig
    emit_events: bool

    def _load(self, users: np.ndarray, items: np.ndarray) -> None:
        """Prepare the observations of ``users`` (n,) with candidates ``items`` (n, K).

        Everything is computed here, once for the block: freshness at the step each row is
        due (retaken if the clock moved otherwise), click probabilities and ground truth with
        the users' state now. A row whose user's state has changed since (their drift or
        fatigue after acting, a shift; see ``SimCore.changed_at``) gets its click
        probabilities computed again when it is observed."""
        core = self.core
        n = len(users)
        self._rows = 0
        self._b_n = n
        self._b_step = core.step_count
        self._b_users = users
        self._b_user_list = users.tolist()
        self._b_items = items
        self._b_ids = items.copy()  # what observations hold; steps use self._b_items
        self._b_topics = core.topic.take(items)
        self._b_ufeat = core.user_features(users)
        self._b_ifeat = core.item_features(items, (core.step_count + np.arange(n))[:, None])
        self._b_ric = core.reward_if_clicked(items)
        self._b_probs = core.click_probs(users, items)
        self._b_expected = self._b_probs * self._b_ric
        self._b_best = self._b_expected.argmax(axis=1).tolist()

    def _observe(self) -> dict:
        """The next row of the block as an observation; its ground truth kept for the step."""
        c = self.core
        j = self._rows
        self._rows = j + 1
        self._row = j
        feats = self._b_ifeat[j]
        if c.step_count != self._b_step + j:  # the clock moved otherwise than a step a row
            feats[:, -1] = c.item_features(self._b_items[j])[:, -1]
        if c.changed_at[self._b_user_list[j]] < self._b_step:
            self._click_p = self._b_probs[j]
            self._expected = self._b_expected[j]
            self._best = self._b_best[j]
        else:
            self._click_p = c.click_probs(self._b_users[j:j + 1], self._b_items[j:j + 1])[0]
            self._expected = self._click_p * self._b_ric[j]
            self._best = int(self._expected.argmax())
        return {
            "user_id": self._b_user_list[j],
            "user_features": self._b_ufeat[j],
            "item_ids": self._b_ids[j],
            "item_features": feats,
            "item_topics": self._b_topics[j],
            "positions": np.arange(self.config.slate_size, dtype=np.int64),
        }

    def _act(self, action) -> tuple[float, dict]:
        cfg, core = self.config, self.core
        if cfg.slate_size == 1 and isinstance(action, (int, np.integer)) \
                and not isinstance(action, bool) and 0 <= action < cfg.n_candidates:
            slot = int(action)
        else:
            slates = check_slates(action, 1, cfg.n_candidates, cfg.slate_size)
            slot = int(slates[0, 0]) if cfg.slate_size == 1 else None
        j, exp, best = self._row, self._expected, self._best
        user = self._b_user_list[j]
        phase, ts = core.phase, self.clock
        if slot is not None:  # one slot: the scalar law (slot 0's position bias is 1)
            item = int(self._b_items[j, slot])
            click, dwell, purchase, reward = core.respond_one(user, item,
                                                              self._click_p.item(slot))
            info = {
                "expected_rewards": exp, "best_action": best,
                "regret": exp.item(best) - exp.item(slot), "phase": phase, "ts": ts,
                "clicked": np.array([click]), "purchased": np.array([purchase]),
                "dwell": np.array([dwell]),
            }
            if self.emit_events:
                out = {"shown": np.array([[item]]), "clicks": info["clicked"][None],
                       "purchases": info["purchased"][None]}
        else:
            out = core.respond(self._b_users[j:j + 1], self._b_items[j:j + 1], slates,
                               self._click_p[None, :])
            reward = float(out["rewards"][0])
            info = {
                "expected_rewards": exp, "best_action": best,
                "regret": float(exp[best] - exp[slates[0, 0]]), "phase": phase, "ts": ts,
                "clicked": out["clicks"][0], "purchased": out["purchases"][0],
                "dwell": out["dwell"][0],
            }
        if self.emit_events:
            info["events"] = core.events(self._b_users[j:j + 1], out, ts, self._n_events)[0]
            self._n_events += len(info["events"])
        return reward, info

    @property
    def clock(self) -> float:
        """Simulated seconds since the episode started (event time for the engine)."""
        return self.core.step_count * self.config.step_seconds


class RecStreamEnv(_Stepper, gym.Env):
    """A contextual-bandit stream: each step a user drawn from the population, K candidates.

    ## Observation Space
    ``Dict``: ``user_id`` (Discrete(n_users)); ``user_features`` (region one-hot, age band);
    ``item_ids`` (K,) stable catalog ids; ``item_features`` (K, n_topics + 3): topic one-hot,
    standardized log popularity, clickbait score, freshness; ``item_topics`` (K,);
    ``positions`` (L,) the slot indices. Latent interests and item quality are never shown.
    Observation arrays are views into a block of 256 prepared rows (about 0.5 MB):
    changing them does not change the simulation; copy one to keep it past its block.

    ## Action Space
    ``Discrete(K)`` with one slot, ``MultiDiscrete([K] * L)`` for slates (a candidate repeated
    in a later slot is shown once; the later slot stays empty). A wrongly shaped action or an
    index outside [0, K) raises ``ValueError``.

    ## Rewards
    ``reward_click * click + reward_dwell * dwell + reward_purchase * purchase`` summed over
    slots, slot j's click probability scaled by position bias ``1 / (1 + j)``. The expected
    reward of every candidate (slot 0) is in ``info["expected_rewards"]``, with
    ``best_action``, ``regret`` of the choice, the drift ``phase`` and the outcomes. With the
    ``trend`` preset (``loopwise/TrendStream-v0``) the reward model itself changes at the
    shift, for everyone: topics' appeal jumps or falls, and clickbait, which paid, costs;
    the ground truth follows it.

    ## Episode End
    Never terminates; truncates after ``horizon`` steps.

    ## Version History
    * v0: first version (the ``trend`` preset and ``TrendStream-v0`` added later, with the
      same observations and rewards for every other preset).

    Examples
    --------
    >>> env = RecStreamEnv(preset="drifting", n_users=100, n_items=200, shift_step=50)
    >>> obs, info = env.reset(seed=0)
    >>> obs["item_features"].shape
    (20, 15)
    >>> _, reward, terminated, truncated, info = env.step(int(obs["item_ids"].argmax() * 0))
    >>> info["regret"] >= 0, terminated
    (True, False)
    """

    metadata = {"render_modes": []}

    def __init__(self, config: SimConfig | None = None, preset: str = "stationary",
                 emit_events: bool = False, **overrides):
        self.config = _config(config, preset, overrides)
        self.emit_events = emit_events
        c = self.config
        self.observation_space = observation_space(c, c.n_regions + 1, c.n_topics + 3)
        self.action_space = (spaces.Discrete(c.n_candidates) if c.slate_size == 1
                             else spaces.MultiDiscrete(np.full(c.slate_size, c.n_candidates)))
        self.core = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.core = SimCore(self.config, self.np_random)
        self._t = 0
        self._n_events = 0
        self._rows = self._b_n = 0
        return self._next_obs(), {"phase": self.core.phase, "ts": self.clock}

    def _next_obs(self) -> dict:
        if self._rows == self._b_n:  # draw ahead, as far as the candidate law holds
            ahead = min(PREFETCH, self.core.stable_for())
            self._load(self.core.draw_users(ahead), self.core.draw_candidates(ahead))
        return self._observe()

    def step(self, action):
        if self.core is None:
            raise RuntimeError("call reset() before step()")
        reward, info = self._act(action)
        self._t += 1
        obs = self._next_obs()
        return obs, reward, False, self._t >= self.config.horizon, info


class RecSessionEnv(_Stepper, gym.Env):
    """One user, step after step, until they leave: long-term value for RL.

    ## Observation Space
    As :class:`RecStreamEnv` (the user stays the same within an episode).

    ## Action Space
    As :class:`RecStreamEnv`.

    ## Rewards
    As :class:`RecStreamEnv`. Clicks change the user's satisfaction:
    ``satisfaction_gain * (quality - 0.5) - clickbait_cost * clickbait`` per click.

    ## Episode End
    Terminates when the user leaves: each step with probability
    ``sigmoid(leave_bias - satisfaction)``, or when the time budget runs out.

    ## Version History
    * v0: first version.

    Examples
    --------
    >>> env = RecSessionEnv(preset="long_term", n_users=50, n_items=100)
    >>> obs, info = env.reset(seed=1)
    >>> steps, done = 0, False
    >>> while not done:
    ...     obs, r, terminated, truncated, info = env.step(0)
    ...     steps, done = steps + 1, terminated or truncated
    >>> 1 <= steps <= 60
    True
    """

    metadata = {"render_modes": []}

    def __init__(self, config: SimConfig | None = None, preset: str = "long_term",
                 emit_events: bool = False, **overrides):
        self.config = _config(config, preset, overrides)
        self.emit_events = emit_events
        c = self.config
        self.observation_space = observation_space(c, c.n_regions + 1, c.n_topics + 3)
        self.action_space = (spaces.Discrete(c.n_candidates) if c.slate_size == 1
                             else spaces.MultiDiscrete(np.full(c.slate_size, c.n_candidates)))
        self.core = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.core is None or seed is not None:
            self.core = SimCore(self.config, self.np_random)
            self._n_events = 0
        self._users = self.core.draw_users(1)
        self._user = int(self._users[0])
        self.core.satisfaction[self._user] = 0.0
        self._t = 0
        self._load(self._users, self.core.draw_candidates(1))
        return self._observe(), {"phase": self.core.phase, "ts": self.clock}

    def step(self, action):
        if self.core is None:
            raise RuntimeError("call reset() before step()")
        reward, info = self._act(action)
        self._t += 1
        leave = self.np_random.random() < self.core.leave_probs(np.array([self._user]))[0]
        truncated = self._t >= self.config.time_budget
        info["satisfaction"] = float(self.core.satisfaction[self._user])
        self._load(self._users, self.core.draw_candidates(1))
        obs = self._observe()
        return obs, reward, bool(leave), bool(truncated and not leave), info


class BatchedRecEnv:
    """The stream with B users per step, fully vectorized (not a ``gym.Env``: every array has
    a leading batch axis). Rows are independent users; the clock advances B steps per call.

    Examples
    --------
    >>> env = BatchedRecEnv(make_config("stationary", n_users=100, n_items=200), batch_size=8)
    >>> obs = env.reset(seed=0)
    >>> obs["item_features"].shape
    (8, 20, 15)
    >>> obs, rewards, info = env.step(np.zeros(8, dtype=int))
    >>> rewards.shape, info["expected_rewards"].shape, bool((info["regret"] >= 0).all())
    ((8,), (8, 20), True)
    """

    def __init__(self, config: SimConfig, batch_size: int = 256, emit_events: bool = False):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: must be an integer >= 1 (got {batch_size!r})")
        self.config = config
        self.batch_size = batch_size
        self.emit_events = emit_events
        self.core = None

    @property
    def clock(self) -> float:
        return self.core.step_count * self.config.step_seconds

    def reset(self, seed: int | None = None) -> dict:
        self.core = SimCore(self.config, np.random.default_rng(seed))
        self._n_events = 0
        return self._draw()

    def _draw(self) -> dict:
        c = self.core
        users = c.draw_users(self.batch_size)
        items = c.draw_candidates(self.batch_size)
        self._users, self._items = users, items
        self._click_p = c.click_probs(users, items)
        self._expected = self._click_p * c.reward_if_clicked(items)
        return {"user_id": users, "user_features": c.user_features(users), "item_ids": items,
                "item_features": c.item_features(items), "item_topics": c.topic.take(items)}

    def step(self, actions) -> tuple[dict, np.ndarray, dict]:
        if self.core is None:
            raise RuntimeError("call reset() before step()")
        cfg = self.config
        slates = check_slates(actions, self.batch_size, cfg.n_candidates, cfg.slate_size)
        exp = self._expected
        best = exp.argmax(axis=1)
        row_at = np.arange(0, exp.size, exp.shape[1])  # flat index of each row's first item
        ts, phase = self.clock, self.core.phase
        out = self.core.respond(self._users, self._items, slates, self._click_p)
        info = {"expected_rewards": exp, "best_action": best,
                "regret": exp.take(row_at + best) - exp.take(row_at + slates[:, 0]),
                "phase": phase, "ts": ts,
                "clicked": out["clicks"], "purchased": out["purchases"], "dwell": out["dwell"],
                "users": self._users}
        if self.emit_events:
            info["events"] = self.core.events(self._users, out, ts, self._n_events)
            self._n_events += sum(len(e) for e in info["events"])
        return self._draw(), out["rewards"], info
