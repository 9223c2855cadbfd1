"""Inputs, validation and the estimate record shared by every off-policy estimator.

Conventions follow Open Bandit Pipeline: for ``n`` logged rounds, ``reward`` (n,),
``action`` (n,) integer indices, ``position`` (n,) slots (default 0), ``pscore`` (n,) the
logging policy's probability of the logged action at its position, and the target policy's
``action_dist`` of shape (n, n_actions, len_list). Estimators that use a reward model take
``estimated_rewards`` of the same shape as ``action_dist``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class OPEInputError(ValueError):
    """Logged data or a target policy that cannot be evaluated; says what and where."""


@dataclass
class LoggedData:
    """Validated logged bandit feedback plus the target's action distribution."""

    reward: np.ndarray
    action: np.ndarray
    position: np.ndarray
    pscore: np.ndarray
    action_dist: np.ndarray
    estimated_rewards: np.ndarray | None = None

    @property
    def n_rounds(self) -> int:
        return len(self.reward)

    def target_prob(self) -> np.ndarray:
        """pi(a_i | x_i, k_i): the target's probability of each logged action, (n,)."""
        idx = np.arange(self.n_rounds)
        return self.action_dist[idx, self.action, self.position]

    def weights(self) -> np.ndarray:
        return self.target_prob() / self.pscore

    def subset(self, idx: np.ndarray) -> LoggedData:
        q = None if self.estimated_rewards is None else self.estimated_rewards[idx]
        return LoggedData(self.reward[idx], self.action[idx], self.position[idx],
                          self.pscore[idx], self.action_dist[idx], q)


def validate(reward, action, pscore, action_dist, position=None, estimated_rewards=None,
             atol: float = 1e-6) -> LoggedData:
    """Check shapes, ranges and distributions; raise :class:`OPEInputError` naming the problem.

    Examples
    --------
    >>> import numpy as np
    >>> validate([1.0], [0], [1.5], np.ones((1, 1, 1)))
    Traceback (most recent call last):
    ...
    experiments.ope.base.OPEInputError: pscore: propensities must lie in (0, 1]; round 0 has 1.5
    """
    reward = _vector(reward, "reward", float)
    n = len(reward)
    action = _vector(action, "action", None, n)
    pscore = _vector(pscore, "pscore", float, n)
    if not np.issubdtype(action.dtype, np.integer):
        if np.all(np.mod(action, 1) == 0):
            action = action.astype(np.int64)
        else:
            raise OPEInputError(f"action: must be integer indices into action_dist's columns "
                                f"(got dtype {action.dtype})")
    position = (np.zeros(n, dtype=np.int64) if position is None
                else _vector(position, "position", None, n).astype(np.int64))
    if n == 0:
        raise OPEInputError("reward: the log has no rounds")
    if not np.isfinite(reward).all():
        raise OPEInputError(f"reward: must be finite; round {int(np.argmin(np.isfinite(reward)))} "
                            "is not")
    bad = ~((pscore > 0) & (pscore <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise OPEInputError(f"pscore: propensities must lie in (0, 1]; round {i} has {pscore[i]}")
    dist = np.asarray(action_dist, dtype=float)
    if dist.ndim != 3 or dist.shape[0] != n:
        raise OPEInputError(f"action_dist: must have shape (n_rounds={n}, n_actions, len_list) "
                            f"(got {dist.shape})")
    n_actions, len_list = dist.shape[1], dist.shape[2]
    if (action < 0).any() or (action >= n_actions).any():
        i = int(np.argmax((action < 0) | (action >= n_actions)))
        raise OPEInputError(f"action: indices must lie in [0, {n_actions}) (the columns of "
                            f"action_dist); round {i} has {action[i]}")
    if (position < 0).any() or (position >= len_list).any():
        i = int(np.argmax((position < 0) | (position >= len_list)))
        raise OPEInputError(f"position: must lie in [0, {len_list}) (action_dist's last axis); "
                            f"round {i} has {position[i]}")
    if not np.isfinite(dist).all() or (dist < -atol).any():
        raise OPEInputError("action_dist: must hold finite probabilities >= 0")
    sums = dist.sum(axis=1)
    off = np.abs(sums - 1.0) > 1e-4
    if off.any():
        i, k = np.argwhere(off)[0]
        raise OPEInputError(f"action_dist: probabilities over actions must sum to 1 for every "
                            f"round and position; round {i}, position {k} sums to {sums[i, k]:.6g}")
    q = None
    if estimated_rewards is not None:
        q = np.asarray(estimated_rewards, dtype=float)
        if q.shape != dist.shape:
            raise OPEInputError(f"estimated_rewards: must have action_dist's shape {dist.shape} "
                                f"(got {q.shape})")
        if not np.isfinite(q).all():
            raise OPEInputError("estimated_rewards: must be finite")
    return LoggedData(reward, action, position, pscore, dist, q)


def _vector(x, name: str, dtype, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise OPEInputError(f"{name}: must be numbers") from None
    if arr.ndim != 1:
        raise OPEInputError(f"{name}: must be one-dimensional (got shape {arr.shape})")
    if n is not None and len(arr) != n:
        raise OPEInputError(f"{name}: has {len(arr)} rounds, reward has {n}")
    return arr


@dataclass
class Estimate:
    """One estimator's answer: value, 95% bootstrap interval, diagnostics."""

    name: str
    estimate: float
    low: float
    high: float
    ess: float
    max_weight: float
    zero_target_share: float
    n_rounds: int
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "estimate": self.estimate, "low": self.low, "high": self.high,
                "effective_sample_size": self.ess, "max_weight": self.max_weight,
                "zero_target_share": self.zero_target_share, "n_rounds": self.n_rounds}
