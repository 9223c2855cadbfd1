"""Linear Thompson sampling that reports each candidate's probability of winning."""

from __future__ import annotations

import numpy as np

from policies.base import check_param
from policies.forgetting import DRIFT_FACTOR, HALF_LIFE
from policies.linear import LinearPolicy
from policies.thompson import psd_root, win_probabilities


class LinTS(LinearPolicy):
    """Linear Thompson sampling with honest propensities.

    Reports each candidate's probability of winning under the ridge posterior ``N(theta, v^2
    A^-1)``, estimated from ``n_draws`` draws (:func:`policies.thompson.win_probabilities`)
    with a uniform floor ``epsilon``; the caller samples from exactly those numbers.

    Parameters
    ----------
    l2, half_life, discount, drift_factor, drift_period
        Of the ridge model and its forgetting (see :class:`~policies.linear.LinearPolicy`).
    v
        Posterior scale (exploration strength).
    n_draws
        Posterior draws per decision (in antithetic pairs).
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

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float | None = None, half_life: float | None = HALF_LIFE,
                 drift_factor: float = DRIFT_FACTOR, drift_period: int | None = None,
                 v: float = 0.3, n_draws: int = 64, epsilon: float = 0.01):
        super().__init__(n_features, seed, l2, discount, half_life, drift_factor, drift_period)
        check_param("v", v, low=0.0, low_open=True)
        check_param("n_draws", n_draws, low=1, integer=True)
        check_param("epsilon", epsilon, low=0.0, high=1.0, low_open=True)
        self.v, self.n_draws, self.epsilon = v, n_draws, epsilon

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        # one decision draws its scores from A^-1 and b: theta is computed for batches only
        theta = self._model_theta() if phi.shape[0] > 1 else None
        return win_probabilities(phi, mask, self._a_inv, self._b, theta,
                                 self._posterior_root, self.v, self.n_draws, self.epsilon,
                                 self._rng)

    def _posterior_root(self) -> np.ndarray:
        """A square root of ``A^-1`` for a batch's draws, once per model version (``_root``:
        set by each resync of ``A^-1``, dropped by every other update)."""
        if self._root is None:
            self._root = psd_root(self._a_inv)
        return self._root
