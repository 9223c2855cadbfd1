"""Logged sessions for off-policy evaluation: the flat arrays of decisions described in
:mod:`experiments.ope.sessions`, checked once and arranged per session and step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from engine.checks import check_probability
from experiments.ope.base import OPEInputError, _finite, _vector


@dataclass
class SessionLog:
    """A validated session log (build it with :func:`validate_sessions`).

    Besides the flat inputs it holds each decision's session index (0 .. n_sessions - 1,
    in order of appearance) and step within its session, each session's length, and the
    cumulative weights ``rho`` (n,).

    Examples
    --------
    >>> log = validate_sessions(["a", "a", "b"], [1, 0, 1], [0.5, 0.5, 0.5], [1.0, 0.5, 0.0])
    >>> log.n_sessions, log.step.tolist(), log.rho.tolist(), log.final_weights().tolist()
    (2, [0, 1, 0], [2.0, 2.0, 0.0], [2.0, 0.0])
    """

    session: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    target_prob: np.ndarray
    gamma: float
    index: np.ndarray
    step: np.ndarray
    lengths: np.ndarray
    rho: np.ndarray

    @property
    def n_decisions(self) -> int:
        return len(self.reward)

    @property
    def n_sessions(self) -> int:
        return len(self.lengths)

    @property
    def horizon(self) -> int:
        """The longest session's number of decisions."""
        return int(self.lengths.max())

    def discounts(self) -> np.ndarray:
        """``gamma^t`` for t = 0 .. horizon - 1."""
        return self.gamma ** np.arange(self.horizon, dtype=float)

    def final_weights(self) -> np.ndarray:
        """Each session's final cumulative weight ``rho_{i, T_i - 1}``, shape (n_sessions,):
        the likelihood ratio of the whole session under target and logging policy."""
        return self.rho[np.cumsum(self.lengths) - 1]

    def by_step(self, values: np.ndarray) -> sparse.csr_matrix:
        """Per-decision ``values`` as a sparse (n_sessions, horizon) matrix at (session, step)."""
        return sparse.csr_matrix((values, (self.index, self.step)),
                                 shape=(self.n_sessions, self.horizon))


def validate_sessions(session: npt.ArrayLike, reward: npt.ArrayLike, pscore: npt.ArrayLike,
                      target_prob: npt.ArrayLike, gamma: float = 1.0) -> SessionLog:
    """Check the inputs of the module's table; return a :class:`SessionLog`.

    Raises :class:`~experiments.ope.base.OPEInputError` naming the input for: an empty log,
    length mismatches, non-finite values, ``pscore`` outside (0, 1], ``target_prob``
    outside [0, 1], a session whose decisions are not contiguous, and a ``gamma`` outside
    [0, 1].

    Examples
    --------
    >>> validate_sessions([1, 2, 1], [0, 0, 0], [0.5] * 3, [0.5] * 3)
    Traceback (most recent call last):
    ...
    experiments.ope.base.OPEInputError: session: the decisions of a session must be contiguous and in order; session 1 starts again at decision 2 after another session (sort the log by session, then by time)
    """
    reward = _vector(reward, "reward", float)
    n = len(reward)
    if n == 0:
        raise OPEInputError("reward", "the log has no decisions (got an empty array)")
    pscore = _vector(pscore, "pscore", float, n)
    target_prob = _vector(target_prob, "target_prob", float, n)
    ids = np.asarray(session)
    if ids.ndim != 1:
        raise OPEInputError("session", f"must be one-dimensional (got shape {ids.shape})")
    if len(ids) != n:
        raise OPEInputError("session", f"has {len(ids)} rounds, reward has {n}")
    if ids.dtype.kind == "f":
        _finite(ids, "session")
    gamma = check_probability("gamma", gamma, open_interval=False)
    _finite(reward, "reward")
    _finite(pscore, "pscore")
    _finite(target_prob, "target_prob")
    bad = ~((pscore > 0) & (pscore <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise OPEInputError("pscore", f"propensities must lie in (0, 1]; decision {i} has "
                            f"{pscore[i]}")
    bad = (target_prob < 0) | (target_prob > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise OPEInputError("target_prob", f"probabilities must lie in [0, 1]; decision {i} "
                            f"has {target_prob[i]}")
    starts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1]
    seen: set = set()
    for start, sid in zip(starts.tolist(), ids[starts].tolist(), strict=True):
        if sid in seen:
            raise OPEInputError("session", "the decisions of a session must be contiguous and "
                                f"in order; session {sid!r} starts again at decision {start} "
                                "after another session (sort the log by session, then by time)")
        seen.add(sid)
    lengths = np.diff(np.r_[starts, n])
    index = np.repeat(np.arange(len(starts)), lengths)
    step = np.arange(n) - starts[index]
    # Cumulative products within sessions, one step at a time across all sessions: the
    # decisions at step t take the weight of their predecessor (step t - 1, same session).
    rho = target_prob / pscore
    by_step = np.split(np.argsort(step, kind="stable"), np.cumsum(np.bincount(step))[:-1])
    for at in by_step[1:]:
        rho[at] *= rho[at - 1]
    return SessionLog(ids, reward, pscore, target_prob, gamma, index, step, lengths, rho)
