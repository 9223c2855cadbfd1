"""Sessions in batched form: B users at once, each until they leave, for long-term value."""

from __future__ import annotations

import numpy as np

from simulators.config import SimConfig
from simulators.core import SimCore
from simulators.envs import BatchedRecEnv, check_slates


class BatchedSessionEnv(BatchedRecEnv):
    """B concurrent sessions; a user stays in their slot until they leave, then a new user
    takes the slot. Not a ``gym.Env``: every array has a leading batch axis, as in
    :class:`~simulators.envs.BatchedRecEnv`, whose simulator core and ground truth it
    shares (the single-user :class:`~simulators.envs.RecSessionEnv` is the same law one
    user at a time).

    ## Observation Space
    A dict of arrays over the B slots: ``user_id`` (B,), ``user_features`` (B, n_regions +
    1), ``item_ids`` (B, K), ``item_features`` (B, K, n_topics + 3), ``item_topics`` (B, K),
    as :class:`~simulators.envs.BatchedRecEnv`; plus ``session_step`` (B,) the steps already
    taken in the slot's session (0 at a new user's first decision) and ``new_session`` (B,)
    True where that is so. Satisfaction and latent interests are never shown.

    ## Action Space
    (B,) candidate indices in [0, K), or (B, L) slates when ``slate_size`` L > 1 (a candidate
    repeated in a later slot is shown once). Anything else raises ``ValueError``.

    ## Rewards
    As :class:`~simulators.envs.BatchedRecEnv`: ``reward_click * click + reward_dwell *
    dwell + reward_purchase * purchase`` per row, summed over slots. Each click moves the
    user's satisfaction by ``satisfaction_gain * (quality - 0.5) - clickbait_cost *
    clickbait`` (the ``long_term`` preset: clickbait wins today's click and loses the user
    sooner). ``info`` holds the ground truth of the step (``expected_rewards`` (B, K),
    ``best_action``, ``regret``, ``phase``, ``ts``, ``clicked``, ``purchased``, ``dwell``,
    ``users``, with ``events`` when ``emit_events``) and the sessions' state after it:
    ``satisfaction`` (B,), ``session_return`` (B,) and ``session_length`` (B,) of each
    slot's session including this step, and ``terminated`` (B,) (the user left),
    ``truncated`` (B,) (the user's ``time_budget`` ran out; they leave too) and ``ended``
    (B,), either of them. Where ``ended``, ``session_return`` and ``session_length`` are the
    finished session's totals, and the observation returned is the new user's first one.

    ## Episode End
    A session ends when its user leaves, each step with probability ``sigmoid(leave_bias -
    satisfaction)`` (checked after the step's response), or after ``time_budget`` steps.
    The batch itself never ends: a finished slot is refilled at once by a user drawn from
    those not in a session (satisfaction reset to 0, as a new session of
    :class:`~simulators.envs.RecSessionEnv`), so B users are always in session.

    ## Version History
    * v0: first version.

    Examples
    --------
    >>> from simulators import make_config
    >>> env = BatchedSessionEnv(make_config("long_term", n_users=100, n_items=200), batch_size=8)
    >>> obs = env.reset(seed=0)
    >>> obs["item_features"].shape, obs["session_step"].tolist() == [0] * 8
    ((8, 20, 15), True)
    >>> finished = []
    >>> for _ in range(100):
    ...     obs, rewards, info = env.step(np.zeros(8, dtype=int))
    ...     finished += info["session_length"][info["ended"]].tolist()
    >>> len(finished) > 8, 1 <= min(finished), max(finished) <= 60
    (True, True, True)
    """

    def __init__(self, config: SimConfig, batch_size: int = 256, emit_events: bool = False):
        super().__init__(config, batch_size, emit_events)
        if batch_size > config.n_users:
            raise ValueError(f"batch_size: must be at most n_users={config.n_users}, one session "
                             f"per user at a time (got {batch_size})")

    def reset(self, seed: int | None = None) -> dict:
        self.core = SimCore(self.config, np.random.default_rng(seed))
        self._n_events = 0
        b = self.batch_size
        self._active = np.zeros(self.config.n_users, dtype=bool)
        self._users = np.zeros(b, dtype=np.int64)
        self._t = np.zeros(b, dtype=np.int64)
        self._return = np.zeros(b)
        self._start(np.arange(b))
        return self._draw_sessions()

    def _start(self, slots: np.ndarray) -> None:
        """New users, not in a session, into ``slots``; their satisfaction starts at 0."""
        core, n = self.core, len(slots)
        users = core.draw_users(n)
        for _ in range(8):  # redraw the users already in session (rarely more than once)
            clash = self._active[users] | _repeats(users)
            if not clash.any():
                break
            users[clash] = core.draw_users(int(clash.sum()))
        else:  # a crowded population: draw from the free users directly
            free = np.flatnonzero(~self._active)
            users = core.rng.choice(free, size=n, replace=False)
        self._active[users] = True
        self._users[slots] = users
        self._t[slots] = 0
        self._return[slots] = 0.0
        core.satisfaction[users] = 0.0

    def _draw_sessions(self) -> dict:
        c = self.core
        users, items = self._users, c.draw_candidates(self.batch_size)
        self._items = items
        self._click_p = c.click_probs(users, items)
        self._expected = self._click_p * c.reward_if_clicked(items)
        return {"user_id": users.copy(), "user_features": c.user_features(users),
                "item_ids": items, "item_features": c.item_features(items),
                "item_topics": c.topic.take(items), "session_step": self._t.copy(),
                "new_session": self._t == 0}

    def step(self, actions) -> tuple[dict, np.ndarray, dict]:
        if self.core is None:
            raise RuntimeError("call reset() before step()")
        cfg, core = self.config, self.core
        slates = check_slates(actions, self.batch_size, cfg.n_candidates, cfg.slate_size)
        exp = self._expected
        best = exp.argmax(axis=1)
        row_at = np.arange(0, exp.size, exp.shape[1])  # flat index of each row's first item
        ts, phase = self.clock, core.phase
        users = self._users.copy()
        out = core.respond(users, self._items, slates, self._click_p)
        rewards = out["rewards"]
        self._t += 1
        self._return += rewards
        leave = core.rng.random(self.batch_size) < core.leave_probs(users)
        budget = (self._t >= cfg.time_budget) & ~leave
        ended = leave | budget
        info = {"expected_rewards": exp, "best_action": best,
                "regret": exp.take(row_at + best) - exp.take(row_at + slates[:, 0]),
                "phase": phase, "ts": ts, "clicked": out["clicks"],
                "purchased": out["purchases"], "dwell": out["dwell"], "users": users,
                "satisfaction": core.satisfaction[users], "terminated": leave,
                "truncated": budget, "ended": ended, "session_return": self._return.copy(),
                "session_length": self._t.copy()}
        if self.emit_events:
            info["events"] = core.events(users, out, ts, self._n_events)
            self._n_events += sum(len(e) for e in info["events"])
        if ended.any():
            self._active[users[ended]] = False
            self._start(np.flatnonzero(ended))
        return self._draw_sessions(), rewards, info


def _repeats(users: np.ndarray) -> np.ndarray:
    """True at every occurrence of a value after its first."""
    first = np.zeros(len(users), dtype=bool)
    first[np.unique(users, return_index=True)[1]] = True
    return ~first
