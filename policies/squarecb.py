"""SquareCB: inverse-gap weighting over an online regression oracle."""

from __future__ import annotations

import numpy as np

from policies import kernels
from policies.base import check_param
from policies.forgetting import DRIFT_FACTOR, HALF_LIFE
from policies.linear import LinearPolicy


class SquareCB(LinearPolicy):
    """Inverse-gap weighting (Foster and Rakhlin, 2020) over online ridge regression.

    With predictions ``y_a`` and the best ``y*`` among the K valid candidates, every other
    candidate gets ``p_a = 1 / (K + gamma * (y* - y_a))`` and the best gets the rest (at
    least ``1 / K``). ``gamma`` grows as ``gamma_scale * t ** gamma_exponent`` with the
    number of records learned t (VW's ``--squarecb`` schedule and defaults); with forgetting,
    t is their total weight, so a model that forgets keeps exploring as a young one does.

    Parameters
    ----------
    l2, half_life, discount, drift_factor, drift_period
        Of the ridge oracle (see :class:`~policies.linear.LinearPolicy`).
    gamma_scale, gamma_exponent
        The learning-rate schedule of the inverse-gap weighting.

    Examples
    --------
    >>> import numpy as np
    >>> p = SquareCB(n_features=1, gamma_scale=10.0)
    >>> p.act(np.array([[[1.0], [2.0]]])).tolist()   # untrained: no gap, uniform
    [[0.5, 0.5]]
    >>> _ = p.update(np.array([[2.0]]), np.array([1.0]), np.array([0.5]))
    >>> p.act(np.array([[[1.0], [2.0]]])).round(3).tolist()
    [[0.167, 0.833]]
    """

    _act_normalized = True
    _params = (*LinearPolicy._params, "gamma_scale", "gamma_exponent")
    _state = (*LinearPolicy._state, "_t")

    def __init__(self, n_features: int, seed: int | None = 0, l2: float = 1.0,
                 discount: float | None = None, half_life: float | None = HALF_LIFE,
                 drift_factor: float = DRIFT_FACTOR, drift_period: int | None = None,
                 gamma_scale: float = 10.0, gamma_exponent: float = 0.5):
        super().__init__(n_features, seed, l2, discount, half_life, drift_factor, drift_period)
        check_param("gamma_scale", gamma_scale, low=0.0, low_open=True)
        check_param("gamma_exponent", gamma_exponent, low=0.0)
        self.gamma_scale, self.gamma_exponent = gamma_scale, gamma_exponent
        self._t = 0

    def _update(self, phi, rewards, propensities) -> None:
        super()._update(phi, rewards, propensities)
        self._t += len(rewards)

    def _learn_one(self, x, reward, propensity) -> None:
        super()._learn_one(x, reward, propensity)
        self._t += 1

    def _act(self, phi: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        t = self._t if self._forget is None else self._forget.count
        gamma = self.gamma_scale * max(1, t) ** self.gamma_exponent
        y = self._predictions(phi)
        probs = np.empty(y.shape)
        kernels.inverse_gap(y, mask, gamma, probs)
        return probs
