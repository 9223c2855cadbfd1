"""Linear Thompson sampling that reports each candidate's probability of winning."""

from __future__ import annotations

import math

import numpy as np

from policies.base import check_param, mix_uniform
from policies.linear import LinearPolicy
from policies.thompson import cholesky_psd, win_probabilities_root


class LinTS(LinearPolicy):
    """Linear Thompson sampling with honest propensities.

    The posterior of the ridge model is ``N(theta, v^2 A^-1)``. Plain Thompson sampling shows
    the winner of one posterior draw, whose probability is unknown; here ``n_draws`` draws
    estimate each candidate's probability of winning (see
    :func:`policies.thompson.win_probabilities_root`), a floor ``epsilon`` mixes in uniform so
    no candidate that could win gets 0, and the caller samples from exactly those
    probabilities. That is still Thompson sampling (sampling by probability of being best),
    with a logged propensity that is the true one.

    Draws use a square root ``R`` of ``A^-1`` (``R R^T = A^-1``) kept current by Potter's
    rank-one update alongside Sherman-Morrison, and refactored whenever ``A^-1`` is
    recomputed, so a decision never factorizes a matrix.

    Parameters
    ----------
    l2
        Ridge penalty (prior precision).
    discount
        Forgetting factor per record for non-stationary rewards (1: none); see
        :class:`~policies.linear.LinearPolicy`.
    v
        Posterior scale (exploration strength).
    n_draws
        Posterior draws per decision used to estimate win probabilities (in antithetic
        pairs). 64 keeps one decision at tens of microseconds and a batch of 256 decisions
        near a millisecond; the estimate only needs to be good enough to explore well,
        since the caller samples from exactly the reported numbers.
    epsilon
        Uniform floor: every valid candidate gets at least ``epsilon / K``.

    Examples
    --------
    >>> import numpy as np
    >>> p = LinTS(n_features=2, seed=0)
    >>> x = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    >>> for _ in range(50):
    ...     _ = p.update(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, 0.0]), np.ones(2) / 2)
    >>> probs = p.act(x)
    >>> bool(probs[0, 0] > 0.9), bool(probs[0, 1] >= 0.01 / 2)
    (True, True)
    """

    _act_normalized = True
    _params = (*LinearPolicy._params, "v", "n_draws", "epsilon")
    _state = (*LinearPolicy._state, "_root")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float = 1.0, v: float = 0.3, n_draws: int = 64,
                 epsilon: float = 0.01):
        super().__init__(n_features, seed, l2, discount)
        check_param("v", v, low=0.0, low_open=True)
        check_param("n_draws", n_draws, low=1, integer=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.v = v
        self.n_draws = n_draws
        self.epsilon = epsilon
        self._root = np.eye(n_features) / math.sqrt(l2)

    def _update_one(self, x: np.ndarray, r: float) -> tuple[np.ndarray, float]:
        u = np.dot(x, self._root)  # R^T x before the update
        ax, s = super()._update_one(x, r)
        # Potter's square-root update: R (I - beta u u^T) with R u = A^-1 x and u.u = s keeps
        # R R^T = A^-1 after Sherman-Morrison, in O(D^2) and without any factorization
        beta = 1.0 / (1.0 + s + math.sqrt(1.0 + s))
        self._root -= (beta * ax)[:, None] * u
        return ax, s

    def _after_refit(self) -> None:
        self._root = cholesky_psd(self._a_inv)

    def load_state_dict(self, state: dict) -> LinTS:
        super().load_state_dict(state)
        if "_root" not in state["state"]:  # saved before the square root was kept
            self._root = cholesky_psd(self._a_inv)
        return self

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        wins = win_probabilities_root(phi, mask, self._theta, self._root, self.v, self.n_draws,
                                      self._rng)
        return mix_uniform(wins, mask, self.epsilon)
