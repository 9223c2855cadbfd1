"""Inputs, validation and the records shared by every off-policy estimator.

Conventions follow Open Bandit Pipeline. For ``n`` logged rounds:

=============================  ===================================================
``reward``                     (n,) observed rewards
``action``                     (n,) integer indices into ``action_dist``'s columns
``position``                   (n,) 0-based slots (default: all 0)
``pscore``                     (n,) the logging policy's probability of the logged
                               action at its position, in (0, 1]
``action_dist``                (n, n_actions, len_list) the target's probabilities;
                               each (round, position) sums to 1 over actions
``estimated_rewards``          (n, n_actions, len_list) a reward model's predictions
                               (DM-family estimators only)
=============================  ===================================================

Every check lives in :func:`validate`; its errors are :class:`OPEInputError`, the
:class:`engine.errors.ValidationError` of off-policy evaluation, and name the input, the
constraint and the value received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from engine.errors import ValidationError


class OPEInputError(ValidationError):
    """Logged data or a target policy that cannot be evaluated; the message says which input,
    what it must satisfy and what was received (``field: reason``).

    Examples
    --------
    >>> str(OPEInputError("reward", "the log has no rounds (got an empty array)"))
    'reward: the log has no rounds (got an empty array)'
    """


#: How far an action distribution's sum over actions may stray from 1.
SUM_TOLERANCE = 1e-4


@dataclass
class LoggedData:
    """Validated logged bandit feedback plus the target's action distribution.

    Build it with :func:`validate`, which checks every shape and range; the fields follow
    the module's table of shapes.

    Examples
    --------
    >>> import numpy as np
    >>> dist = np.zeros((2, 2, 2)); dist[:, 0, 0] = dist[:, 1, 1] = 1.0  # slot k plays action k
    >>> d = validate([1.0, 1.0], [1, 1], [0.5, 0.5], dist, position=[0, 1])
    >>> d.target_prob().tolist(), d.weights().tolist(), (d.n_actions, d.len_list)
    ([0.0, 1.0], [0.0, 2.0], (2, 2))
    """

    reward: np.ndarray
    action: np.ndarray
    position: np.ndarray
    pscore: np.ndarray
    action_dist: np.ndarray
    estimated_rewards: np.ndarray | None = None

    @property
    def n_rounds(self) -> int:
        return len(self.reward)

    @property
    def n_actions(self) -> int:
        return self.action_dist.shape[1]

    @property
    def len_list(self) -> int:
        return self.action_dist.shape[2]

    def target_prob(self) -> np.ndarray:
        """``pi(a_i | x_i, k_i)``: the target's probability of each logged action at its
        logged position, shape (n,)."""
        return self.action_dist[np.arange(self.n_rounds), self.action, self.position]

    def weights(self) -> np.ndarray:
        """Position-aware importance weights ``w_i = action_dist[i, a_i, k_i] / pscore_i``."""
        return self.target_prob() / self.pscore

    def subset(self, idx: np.ndarray, estimated_rewards: np.ndarray | None = None
               ) -> LoggedData:
        """Rounds ``idx`` (repeats allowed), with ``estimated_rewards`` for them if given
        (else the matching rows of this data's predictions)."""
        q = estimated_rewards
        if q is None and self.estimated_rewards is not None:
            q = self.estimated_rewards[idx]
        return LoggedData(self.reward[idx], self.action[idx], self.position[idx],
                          self.pscore[idx], self.action_dist[idx], q)

    def target_slice(self) -> np.ndarray:
        """``pi(. | x_i, k_i)`` at each round's logged position, shape (n, n_actions)."""
        return self.action_dist[np.arange(self.n_rounds), :, self.position]


def validate(reward: npt.ArrayLike, action: npt.ArrayLike, pscore: npt.ArrayLike,
             action_dist: npt.ArrayLike, position: npt.ArrayLike | None = None,
             estimated_rewards: npt.ArrayLike | None = None) -> LoggedData:
    """Check shapes, ranges and distributions; return :class:`LoggedData`.

    Raises :class:`OPEInputError` naming the input, the constraint and the offending value
    (and round) for: non-numeric or non-finite inputs, length mismatches, propensities
    outside (0, 1], non-integer or out-of-range actions and positions, an ``action_dist``
    that is not (n_rounds, n_actions, len_list), has negative entries or does not sum to 1
    over actions, and ``estimated_rewards`` of another shape.

    Examples
    --------
    >>> import numpy as np
    >>> d = validate([1.0, 0.0], [0, 1], [0.5, 0.5], np.full((2, 2, 1), 0.5))
    >>> d.weights().tolist()
    [1.0, 1.0]
    >>> validate([1.0], [0], [1.5], np.ones((1, 1, 1)))
    Traceback (most recent call last):
    ...
    experiments.ope.base.OPEInputError: pscore: propensities must lie in (0, 1]; round 0 has 1.5
    """
    reward = _vector(reward, "reward", float)
    n = len(reward)
    if n == 0:
        raise OPEInputError("reward", "the log has no rounds (got an empty array)")
    action = _index_vector(action, "action", n)
    pscore = _vector(pscore, "pscore", float, n)
    position = (np.zeros(n, dtype=np.int64) if position is None
                else _index_vector(position, "position", n))
    _finite(reward, "reward")
    bad = ~((pscore > 0) & (pscore <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise OPEInputError("pscore", f"propensities must lie in (0, 1]; round {i} has {pscore[i]}")
    dist = _array(action_dist, "action_dist")
    if dist.ndim != 3 or dist.shape[0] != n:
        raise OPEInputError("action_dist", f"must have shape (n_rounds={n}, n_actions, len_list) "
                            f"(got {dist.shape})")
    n_actions, len_list = dist.shape[1], dist.shape[2]
    if n_actions == 0 or len_list == 0:
        raise OPEInputError("action_dist", f"needs at least one action and one position "
                            f"(got shape {dist.shape})")
    _in_range(action, "action", n_actions, "the columns of action_dist")
    _in_range(position, "position", len_list, "action_dist's last axis")
    _finite(dist, "action_dist")
    if (dist < 0).any():
        i, a, k = np.argwhere(dist < 0)[0]
        raise OPEInputError("action_dist", f"probabilities must be >= 0; round {i}, action {a}, "
                            f"position {k} has {dist[i, a, k]:.6g}")
    sums = dist.sum(axis=1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        i, k = np.argwhere(off)[0]
        raise OPEInputError("action_dist", f"probabilities over actions must sum to 1 for every "
                            f"round and position; round {i}, position {k} sums to "
                            f"{sums[i, k]:.6g}")
    q = None
    if estimated_rewards is not None:
        q = _array(estimated_rewards, "estimated_rewards")
        if q.shape != dist.shape:
            raise OPEInputError("estimated_rewards", f"must have action_dist's shape {dist.shape} "
                                f"(got {q.shape})")
        _finite(q, "estimated_rewards")
    return LoggedData(reward, action, position, pscore, dist, q)


def _array(x, name: str, dtype=float) -> np.ndarray:
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise OPEInputError(name, f"must be numbers (got {type(x).__name__} that numpy "
                            f"cannot convert to {np.dtype(dtype).name})") from None


def _vector(x, name: str, dtype=float, n: int | None = None) -> np.ndarray:
    arr = _array(x, name, dtype)
    if arr.ndim != 1:
        raise OPEInputError(name, f"must be one-dimensional (got shape {arr.shape})")
    if n is not None and len(arr) != n:
        raise OPEInputError(name, f"has {len(arr)} rounds, reward has {n}")
    return arr


def _index_vector(x, name: str, n: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind in "USb":
        raise OPEInputError(name, f"must be integer indices (got dtype {arr.dtype})")
    arr = _vector(arr, name, None, n)
    if not np.issubdtype(arr.dtype, np.integer):
        ok = np.isfinite(arr) & (np.mod(arr, 1) == 0)
        if not ok.all():
            i = int(np.argmin(ok))
            raise OPEInputError(name, f"must be integer indices; round {i} has {arr[i]}")
    return arr.astype(np.int64)


def _in_range(arr: np.ndarray, name: str, size: int, what: str) -> None:
    bad = (arr < 0) | (arr >= size)
    if bad.any():
        i = int(np.argmax(bad))
        raise OPEInputError(name, f"indices must lie in [0, {size}) ({what}); "
                            f"round {i} has {arr[i]}")


def _finite(arr: np.ndarray, name: str) -> None:
    ok = np.isfinite(arr)
    if not ok.all():
        where = np.unravel_index(int(np.argmin(ok)), arr.shape)
        place = f"round {where[0]}" if arr.ndim == 1 else f"entry {tuple(map(int, where))}"
        raise OPEInputError(name, f"must be finite; {place} is {arr[where]}")


class Interval(NamedTuple):
    """A point estimate with its bootstrap interval ``[low, high]``.

    Examples
    --------
    >>> Interval(0.5, 0.4, 0.6).high
    0.6
    """

    estimate: float
    low: float
    high: float


@dataclass
class Estimate:
    """One estimator's answer: value, bootstrap interval and weight diagnostics.

    ``ess`` is the Kish effective sample size ``(sum v)^2 / sum v^2`` of the weights ``v``
    the estimator actually applies (clipped, switched or shrunk where it changes them; the
    number of rounds for DM, which weights every round alike). ``max_weight``,
    ``mean_weight`` and ``zero_target_share`` describe the raw weights ``w_i`` and are
    shared by every estimator on the same data.

    Examples
    --------
    >>> e = Estimate("IPS", 0.5, 0.4, 0.6, ess=80.0, max_weight=3.0, mean_weight=1.0,
    ...              zero_target_share=0.1, n_rounds=100)
    >>> e.to_json()["effective_sample_size"]
    80.0
    """

    name: str
    estimate: float
    low: float
    high: float
    ess: float
    max_weight: float
    mean_weight: float
    zero_target_share: float
    n_rounds: int
    confidence: float = 0.95
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """The machine-readable record (one JSON object per estimator)."""
        return {"name": self.name, "estimate": self.estimate, "low": self.low,
                "high": self.high, "confidence": self.confidence,
                "effective_sample_size": self.ess, "max_weight": self.max_weight,
                "mean_weight": self.mean_weight, "zero_target_share": self.zero_target_share,
                "n_rounds": self.n_rounds, **self.extra}
